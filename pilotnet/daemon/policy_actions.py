"""What a network's expression policy does besides allow and deny, applied by the daemon.

:class:`PolicyActions` carries out the directives a policy yields
(:meth:`pilotnet.policy.document.Policy.evaluate`) for the ``connect``,
``dial``, ``datagram``, ``join``, ``leave`` and ``cycle`` events:

* ``evict`` drops the event's peer from the network's managed set and ends its
  trust link; ``evict_where`` does so for every peer of the set its own
  expression holds for;
* ``prune`` / ``fill`` drop the ``count`` lowest ranked peers / add ``count``
  members at random; ``prune_trust`` drops ``percent`` % of the set but keeps
  ``min`` peers; ``fill_trust`` adds members until the set has ``target``;
* ``tag`` adds or removes tags on the event's peer, seen as ``peer_tags`` by
  later evaluations on this node only (the registry's member tags are the
  owners' to set);
* ``webhook`` sends ``policy.<event>`` through the node's webhook emitter;
* ``score`` scores a peer of the managed set, ``log`` logs (once a rule per
  ten minutes).

The peer-set actions need the network's managed set (a network created with
managed rules); elsewhere they do nothing, logged once.  Every trust change,
every webhook and every ``evict_where`` (which judges the whole set) costs
one token of the network's bucket (:data:`ACTION_BURST`, refilled at that
many a :data:`ACTION_WINDOW`), so a policy that fires on every packet cannot
churn trust or flood a webhook: the actions past the budget are skipped and
counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from pilotnet.errors import PilotError
from pilotnet.policy.document import Directive, Policy
from pilotnet.policy.managed import ManagedEngine
from pilotnet.ratelimit import RateLimiter, TokenBucket
from pilotnet.registry.requests import RequestError
from pilotnet.registry.validation import normalize_tags

log = Logger()

#: Trust changes and webhooks one network's policy may make at once, refilled at this many a window.
ACTION_BURST = 32
ACTION_WINDOW = 60.0
#: Tags this node keeps from ``tag`` actions: per peer, and peers per network.
MAX_LOCAL_TAGS = 10
MAX_TAGGED_PEERS = 1024
#: A policy's webhook event names (sent as ``policy.<name>``).
WEBHOOK_EVENT = re.compile(r"[a-z0-9][a-z0-9_.-]{0,47}")
SET_ACTIONS = frozenset({"evict", "evict_where", "prune", "fill", "prune_trust", "fill_trust"})


class PolicyActions:
    """The side effects of one node's network policies; the trust changes go through ``link``/``unlink``."""

    def __init__(self, *, engines: dict[int, ManagedEngine], members: Callable[[int], Iterable[int]],
                 link: Callable[[int, int], Any], unlink: Callable[[int], Any], emit: Callable[..., None],
                 save: Callable[[ManagedEngine], None]) -> None:
        self.engines = engines
        self.members = members
        self.link = link
        self.unlink = unlink
        self.emit = emit
        self.save = save
        #: Tags ``tag`` actions set: network -> peer -> tags.
        self.local_tags: dict[int, dict[int, list[str]]] = {}
        #: Actions skipped: over the budget, or with nothing to act on (no managed set, a bad parameter).
        self.skipped = {"budget": 0, "unmanaged": 0, "invalid": 0}
        self._budgets: dict[int, TokenBucket] = {}
        self._warnings = RateLimiter(burst=1, window=600.0, max_keys=1024)

    def forget_network(self, network_id: int) -> None:
        self.local_tags.pop(network_id, None)
        self._budgets.pop(network_id, None)

    def tags(self, network_id: int, node: int) -> list[str]:
        return self.local_tags.get(network_id, {}).get(node, [])

    def act(self, policy: Policy, network_id: int, node: int | None, directives: list[Directive],
            trigger: str, now: float) -> int:
        """Carry out ``directives`` (from ``trigger``, about ``node`` if any); the number of actions taken."""
        taken = 0
        dropped: set[int] = set()  # a peer one directive drops, a later one of the same event does not re-add
        for directive in directives:
            try:
                taken += self._one(policy, network_id, node, directive, trigger, now, dropped)
            except PilotError as error:
                self._warn(("error", network_id, directive.rule), now,
                           "network {network} policy rule {rule}: {error}", error=error.message,
                           network=network_id, rule=directive.rule)
        return taken

    def _one(self, policy: Policy, network_id: int, node: int | None, directive: Directive, trigger: str,
             now: float, dropped: set[int]) -> int:
        kind, params = directive.type, directive.params
        if kind == "score":
            engine = self.engines.get(network_id)
            delta = params.get("delta")
            if engine is None or node is None or node not in engine.peers or not isinstance(delta, int) \
                    or isinstance(delta, bool):
                return 0
            engine.score(node, delta, str(params.get("topic") or ""), now)
            return 1
        if kind == "log":
            if self._warnings.allow(("log", network_id, directive.rule), now):
                log.info("network {network} policy rule {rule}: {message}", network=network_id,
                         rule=directive.rule, message=str(params.get("message"))[:200])
            return 1
        if kind == "tag":
            return self._tag(network_id, node, params)
        if kind == "webhook":
            return self._webhook(network_id, node, directive, trigger, now)
        if kind in SET_ACTIONS:
            return self._change_set(policy, network_id, node, directive, now, dropped)
        return 0  # allow and deny: the gate's own business

    def _tag(self, network_id: int, node: int | None, params: dict[str, Any]) -> int:
        if not node:
            return 0
        tagged = self.local_tags.setdefault(network_id, {})
        if node not in tagged and len(tagged) >= MAX_TAGGED_PEERS:
            self.skipped["budget"] += 1
            return 0
        tags = [t for t in tagged.get(node, []) if t not in _tag_list(params.get("remove"))]
        for tag in _tag_list(params.get("add")):
            if tag not in tags and len(tags) < MAX_LOCAL_TAGS:
                tags.append(tag)
        if tags:
            tagged[node] = tags
        else:
            tagged.pop(node, None)
        return 1

    def _webhook(self, network_id: int, node: int | None, directive: Directive, trigger: str, now: float) -> int:
        name = directive.params.get("event")
        if not isinstance(name, str) or not WEBHOOK_EVENT.fullmatch(name):
            self.skipped["invalid"] += 1
            self._warn(("webhook", network_id, directive.rule), now,
                       "network {network} policy rule {rule}: webhook event must match {pattern}",
                       network=network_id, rule=directive.rule, pattern=WEBHOOK_EVENT.pattern)
            return 0
        if not self._grant(network_id, 1, now):
            return 0
        self.emit(f"policy.{name}", network_id=network_id, rule=directive.rule, trigger=trigger,
                  peer_id=node or 0)
        return 1

    def _change_set(self, policy: Policy, network_id: int, node: int | None, directive: Directive,
                    now: float, dropped: set[int]) -> int:
        engine = self.engines.get(network_id)
        if engine is None:
            self.skipped["unmanaged"] += 1
            self._warn(("unmanaged", network_id, directive.rule), now,
                       "network {network} policy rule {rule}: {kind} needs a managed network, skipped",
                       network=network_id, rule=directive.rule, kind=directive.type)
            return 0
        kind, params = directive.type, directive.params
        pruned: list[int] = []
        filled: list[int] = []
        if kind == "evict":
            chosen = [node] if node in engine.peers else []
            pruned = [peer for peer in chosen[:self._grant(network_id, len(chosen), now)] if engine.forget(peer)]
        elif kind == "evict_where":
            if not self._grant(network_id, 1, now):  # judging every peer is work: one token, so it is bounded too
                return 0
            chosen = [peer.node_id for peer in list(engine.peers.values()) if policy.peer_matches(
                directive, _peer_variables(peer, self.tags(network_id, peer.node_id), now), now)]
            pruned = [peer for peer in chosen[:self._grant(network_id, len(chosen), now)] if engine.forget(peer)]
        elif kind in ("prune", "prune_trust"):
            wanted = _count(params.get("count"), ACTION_BURST) if kind == "prune" else min(
                len(engine.peers) * _count(params.get("percent"), 100) // 100,
                len(engine.peers) - _count(params.get("min"), engine.rules.links))
            pruned = engine.prune_lowest(self._grant(network_id, wanted, now), now)
        else:
            wanted = _count(params.get("count"), ACTION_BURST) if kind == "fill" else \
                _count(params.get("target"), engine.rules.links) - len(engine.peers)
            filled = engine.fill_random(self.members(network_id), self._grant(network_id, wanted, now), now,
                                        exclude=dropped)
        dropped.update(pruned)
        for peer in pruned:
            _quietly(self.unlink, peer, network_id=network_id)
        for peer in filled:
            _quietly(self.link, peer, network_id, network_id=network_id)
        if pruned or filled:
            self.save(engine)
            if kind in ("prune_trust", "fill_trust"):
                self.emit(f"policy.{kind}", network_id=network_id, rule=directive.rule,
                          changed=len(pruned) + len(filled), peers=len(engine.peers))
        return len(pruned) + len(filled)

    def _grant(self, network_id: int, wanted: int, now: float) -> int:
        """How many of ``wanted`` actions the network's budget allows now (the rest counted and logged)."""
        if wanted <= 0:
            return 0
        bucket = self._budgets.get(network_id)
        if bucket is None:
            bucket = self._budgets[network_id] = TokenBucket(ACTION_BURST, ACTION_BURST / ACTION_WINDOW)
        granted = bucket.take(wanted, now)
        if granted < wanted:
            self.skipped["budget"] += wanted - granted
            self._warn(("budget", network_id), now,
                       "network {network}: policy actions over budget ({burst} a {window:.0f}s), some skipped",
                       network=network_id, burst=ACTION_BURST, window=ACTION_WINDOW)
        return granted

    def _warn(self, key: object, now: float, text: str, **fields: Any) -> None:
        if self._warnings.allow(key, now):
            log.warn(text, **fields)


def _count(value: object, most: int) -> int:
    """A count parameter, clamped to 0..``most`` (anything not a number counts as 0)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, min(most, value))
    if isinstance(value, float) and math.isfinite(value):
        return max(0, min(most, int(value)))
    return 0


def _tag_list(value: object) -> list[str]:
    """``add``/``remove``: one tag or a list; tags the registry would refuse are ignored."""
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    tags: list[str] = []
    for value in values[:MAX_LOCAL_TAGS]:
        try:
            tags += normalize_tags([value]) if isinstance(value, str) else []
        except RequestError:
            continue
    return tags


def _peer_variables(peer, tags: list[str], now: float) -> dict[str, Any]:
    return {"peer_id": peer.node_id, "peer_score": peer.score, "peer_tags": tags,
            "peer_age_s": max(0.0, now - peer.added_at), "last_seen": peer.last_seen}


def _quietly(action: Callable[..., Any], *arguments: Any, network_id: int) -> defer.Deferred:
    """One trust change; a failure is logged rather than raised (the next event goes on)."""
    return defer.maybeDeferred(action, *arguments).addErrback(lambda failure: log.warn(
        "network {network}: policy trust change for {node} failed: {error}", network=network_id,
        node=arguments[0], error=failure.getErrorMessage()))
