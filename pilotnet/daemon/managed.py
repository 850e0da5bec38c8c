"""The daemon's shell around managed networks and network policies (controlplane §3.6).

:class:`ManagedNetworks` runs one :class:`~pilotnet.policy.managed.ManagedEngine`
per managed network this node belongs to: a cycle every ``rules.cycle`` on
the injected clock, the member list from the registry's ``list_nodes``, trust
links made for the peers a cycle adds (a handshake request, which members of
a shared network approve) and ended for the peers it prunes, the state kept
in ``<home>/managed_<network>.json`` (0600), and the ``managed.cycle`` webhook
event.  It also answers the control socket's policy and member-tag commands,
which go to the registry (``get/set_expr_policy``, ``get/set_member_tags``),
signed by this node, and keeps each joined network's compiled expression
policy for :meth:`policy_for`.

Networks are found at start (the node's networks from ``lookup``, their rules
from ``list_networks``) and when :meth:`joined` / :meth:`left` are called.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from pilotnet.daemon.networks import JoinedNetwork, NetworkView
from pilotnet.daemon.handshake import PORT as HANDSHAKE_PORT
from pilotnet.daemon.policy_actions import PolicyActions
from pilotnet.errors import INVALID_ARGUMENT, NOT_FOUND, REFUSED, PilotError
from pilotnet.policy import document as policy_document
from pilotnet.policy.managed import ManagedEngine, ManagedRules
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.network_rules import parse_rules
from pilotnet.services.storage import FileWriter, SnapshotFile
from pilotnet.wire.packet import PROTO_DATAGRAM

log = Logger()

#: Seconds between fetches of the joined networks' expression policies and member tags, so a change an
#: admin makes elsewhere reaches this node's gate.
POLICY_REFRESH = 60.0
#: The most managed networks one node runs engines for.
MAX_ENGINES = 64
#: Member tags kept per network (the registry allows 10 a member).
MAX_TAGGED_MEMBERS = 100_000
MAX_MEMBER_TAGS = 10
#: ``join`` / ``leave`` events one view change evaluates per network (the rest are not judged).
MAX_MEMBERSHIP_EVENTS = 256


def _not_managed(network_id: int) -> PilotError:
    where = f"network {network_id}" if network_id else "any network"
    return PilotError(f"this node is not in a managed network ({where})", code=NOT_FOUND,
                      hint="managed networks are created with rules: pilotctl network create --rules ...")


class ManagedNetworks(service.Service):
    def __init__(self, clock, registry, home: Path, own_id: Callable[[], int | None],
                 link: Callable[[int, int], Any], unlink: Callable[[int], Any],
                 emit: Callable[..., None], rng: random.Random | None = None,
                 shared_with: Callable[[int], list[JoinedNetwork]] = lambda node: [],
                 writer: FileWriter | None = None) -> None:
        self.clock = clock
        self.registry = registry
        self.home = home
        self.own_id = own_id
        self.link = link
        self.unlink = unlink
        self.emit = emit
        self.rng = rng or random.Random()
        #: The networks a node shares with us (the network view's answer), for the policy checks.
        self.shared_with = shared_with
        self.engines: dict[int, ManagedEngine] = {}
        self.policies: dict[int, policy_document.Policy] = {}
        self.member_tags: dict[int, dict[int, list[str]]] = {}
        #: Gate decisions the policies made, and rules that failed (and so let the event through).
        self.policy_refused = {"connect": 0, "dial": 0, "datagram": 0}
        self.policy_errors = 0
        self._refusal_log = RateLimiter(burst=1, window=60.0, max_keys=4096)
        self._loops: dict[int, task.LoopingCall] = {}
        self._joined: set[int] = set()
        self._refresher: task.LoopingCall | None = None
        #: The last network view (members for the ``fill`` actions and the ``join``/``leave`` events).
        self.view = NetworkView()
        self.actions = PolicyActions(engines=self.engines, members=self._view_members, link=link, unlink=unlink,
                                     emit=emit, save=self._save)
        #: Each network's ``config.cycle`` runner and its count of cycles.
        self._policy_loops: dict[int, task.LoopingCall] = {}
        self.policy_cycles: dict[int, int] = {}
        #: Where each network's state is written, off the reactor thread by ``writer`` (None: inline).
        self._writer = writer
        self._files: dict[int, SnapshotFile] = {}

    # -- lifecycle ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._refresher = task.LoopingCall(_logging_failures(self.refresh, "policy refresh"))
        self._refresher.clock = self.clock
        self._refresher.start(POLICY_REFRESH, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._refresher is not None and self._refresher.running:
            self._refresher.stop()
        for network_id in list(self._loops):
            self._stop(network_id)
        for network_id in list(self._policy_loops):
            self._stop_policy_cycle(network_id)

    @defer.inlineCallbacks
    def refresh(self):
        """Fetch again the policy and member tags of every network we are in (an admin may have changed them)."""
        for network_id in sorted(self._joined):
            reply = yield self._optional({"type": "get_expr_policy", "network_id": network_id})
            if network_id in self._joined:
                self._apply_policy(network_id, reply.get("expr_policy"))
                yield self.refresh_member_tags(network_id)

    def view_changed(self, old: NetworkView, new: NetworkView) -> None:
        """The node's networks changed (:class:`~pilotnet.daemon.networks.Networks` refreshed its view)."""
        self.view = new
        for network_id in set(old.networks) - set(new.networks):
            self.left(network_id)
        self._membership_events(old, new)
        for network_id, engine in self.engines.items():
            if network_id in new.networks:
                gone = [node for node in engine.peers if node not in new.networks[network_id].members]
                for node in gone:
                    engine.forget(node)
                if gone:
                    self._save(engine)
        added = sorted(set(new.networks) - set(old.networks))
        if added:
            self._learn(added).addErrback(lambda failure: log.warn(
                "networks {networks}: rules and policies not fetched: {error}", networks=added,
                error=failure.getErrorMessage()))

    @defer.inlineCallbacks
    def _learn(self, network_ids: list[int]):
        """Fetch the rules, expression policy and member tags of newly joined networks, then apply them."""
        listing = yield self.registry.request({"type": "list_networks"})
        rules = {n.get("id"): n.get("rules") for n in listing.get("networks") or [] if isinstance(n, dict)}
        for network_id in network_ids:
            policy = yield self._optional({"type": "get_expr_policy", "network_id": network_id})
            yield self.refresh_member_tags(network_id)
            self.joined(network_id, rules.get(network_id), policy.get("expr_policy"))

    def _optional(self, request: dict[str, Any]):
        """A request whose refusal (an older registry, no such setting) means "nothing set"."""
        def nothing_set(failure):
            failure.trap(PilotError)
            return {}
        return self.registry.request(request).addErrback(nothing_set)

    @defer.inlineCallbacks
    def refresh_member_tags(self, network_id: int):
        reply = yield self._optional({"type": "get_member_tags", "network_id": network_id, "target_node_id": 0})
        members = reply.get("members")
        tags: dict[int, list[str]] = {}
        for node, listed in (members.items() if isinstance(members, dict) else ()):
            if str(node).isdigit() and isinstance(listed, list) and len(tags) < MAX_TAGGED_MEMBERS:
                tags[int(node)] = [t for t in listed[:MAX_MEMBER_TAGS] if isinstance(t, str)]
        self.member_tags[network_id] = tags

    def joined(self, network_id: int, rules: object, expr_policy: object) -> None:
        """This node is in ``network_id`` with these ``rules`` (managed when present) and ``expr_policy``."""
        self._joined.add(network_id)
        self._apply_policy(network_id, expr_policy)
        if rules in (None, "", "null", {}) or network_id in self.engines:
            return
        if len(self.engines) >= MAX_ENGINES:
            log.warn("network {network}: not managed, {most} managed networks already", network=network_id,
                     most=MAX_ENGINES)
            return
        try:
            checked = parse_rules(rules)
            if checked is None:
                return
            parsed = ManagedRules.from_checked(checked)
        except PilotError as error:
            log.warn("network {network}: managed rules not applied: {error}", network=network_id,
                     error=error.message)
            return
        engine = ManagedEngine(network_id, parsed, self.own_id() or 0, self.clock.seconds(), self.rng)
        self._load(engine)
        self.engines[network_id] = engine
        loop = task.LoopingCall(_logging_failures(self.run_cycle, f"managed cycle of network {network_id}"),
                                network_id)
        loop.clock = self.clock
        self._loops[network_id] = loop
        loop.start(parsed.cycle, now=False)
        if not engine.peers:
            self._bootstrap(engine)

    def _apply_policy(self, network_id: int, expr_policy: object) -> None:
        """Compile and keep a network's policy (none: the network has none); one that fails is not applied."""
        if expr_policy in (None, "", "null"):
            self._install_policy(network_id, None)
            return
        source = expr_policy if isinstance(expr_policy, str) else json.dumps(expr_policy)
        current = self.policies.get(network_id)
        if current is not None and current.source == source:
            return
        try:
            self._install_policy(network_id, policy_document.load(source))
        except PilotError as error:
            log.warn("network {network}: expression policy not applied: {error}", network=network_id,
                     error=error.message)

    def left(self, network_id: int) -> None:
        """This node left ``network_id``: its engine stops and its policy is dropped."""
        self._joined.discard(network_id)
        self._install_policy(network_id, None)
        self.actions.forget_network(network_id)
        self.member_tags.pop(network_id, None)
        self._stop(network_id)
        self.engines.pop(network_id, None)

    def _stop(self, network_id: int) -> None:
        loop = self._loops.pop(network_id, None)
        if loop is not None and loop.running:
            loop.stop()

    def policy_for(self, network_id: int) -> policy_document.Policy | None:
        return self.policies.get(network_id)

    # -- the expression-policy gate ---------------------------------------------------------

    def gate(self, inner: Callable[[Any], bool]):
        """``inner`` (the trust gate) followed by the policies of the networks the sender shares with us.

        Inbound SYNs are ``connect`` events and datagrams ``datagram`` events
        (``direction`` ``"in"``), evaluated per network with a policy, lowest
        network first; a ``deny`` drops the packet silently, counted.  A rule
        that fails lets the packet through (the reference fails open),
        counted and logged.  Without any policy the cost is one dict test.
        The handshake port is exempt (see :meth:`check_outbound`).
        """
        def admit(packet: Any) -> bool:
            if not inner(packet):
                return False
            if not self.policies or packet.dst_port == HANDSHAKE_PORT:
                return True
            event = "datagram" if packet.protocol == PROTO_DATAGRAM else "connect"
            return self._denied_by(event, packet.src.node, packet.dst_port, len(packet.payload), "in") is None
        return admit

    def check_outbound(self, node: int, port: int, size: int | None = None) -> None:
        """Refuse (``refused``) a dial (``size`` None) or a datagram of ``size`` bytes a policy denies.

        The handshake port is exempt, so a policy cannot stop members from
        negotiating trust (which the managed links and the network need).
        """
        if not self.policies or port == HANDSHAKE_PORT:
            return
        event = "dial" if size is None else "datagram"
        network_id = self._denied_by(event, node, port, size or 0, "out")
        if network_id is not None:
            what = "dialing" if size is None else "a datagram to"
            raise PilotError(f"the policy of network {network_id} denies {what} node {node} port {port}",
                             code=REFUSED, hint=f"see the policy with: pilotctl policy get --net {network_id}")

    def _denied_by(self, event: str, node: int, port: int, size: int, direction: str) -> int | None:
        """The first network whose policy denies this event, or None."""
        for network in self.shared_with(node):
            policy = self.policies.get(network.network_id)
            if policy is None or event not in policy.gate_events:
                continue
            now = self.clock.seconds()
            variables = self._variables(network, node, port, now)
            if event == "datagram":
                variables.update(size=size, direction=direction)
            try:
                directives = policy.evaluate(event, variables, now)
            except PilotError as error:
                self.policy_errors += 1
                if self._refusal_log.allow(("error", network.network_id), now):
                    log.warn("network {network}: policy let a packet through: {error}",
                             network=network.network_id, error=error.message)
                continue
            self._side_effects(network.network_id, node, directives, now)
            if policy_document.verdict(directives) == "deny":
                self.policy_refused[event] += 1
                if self._refusal_log.allow(node, now):
                    log.info("network {network}: policy denied {event} ({direction}) node {peer} port {port}",
                             network=network.network_id, event=event, direction=direction, peer=node, port=port)
                return network.network_id
        return None

    def _variables(self, network: JoinedNetwork, node: int, port: int, now: float) -> dict[str, Any]:
        tags = self.member_tags.get(network.network_id, {})
        variables: dict[str, Any] = {
            "peer_id": node, "port": port, "network_id": network.network_id,
            "members": len(network.members),
            "peer_tags": tags.get(node, []) + self.actions.tags(network.network_id, node),
            "local_tags": tags.get(self.own_id() or 0, []),
        }
        engine = self.engines.get(network.network_id)
        peer = engine.peers.get(node) if engine is not None else None
        if peer is not None:
            variables.update(peer_score=peer.score, peer_age_s=max(0.0, now - peer.added_at))
        return variables

    def _side_effects(self, network_id: int, node: int, directives: list[policy_document.Directive],
                      now: float) -> None:
        """What a gate rule asks besides its verdict (score, tag, webhook, evict, ...): see PolicyActions."""
        policy = self.policies.get(network_id)
        if policy is not None and any(d.type not in policy_document.VERDICTS for d in directives):
            self.actions.act(policy, network_id, node, directives, "gate", now)

    # -- the policy's own events: join, leave and its config.cycle ----------------------

    def _install_policy(self, network_id: int, policy: policy_document.Policy | None) -> None:
        """Keep ``policy`` (None: none) for ``network_id`` and run its ``config.cycle`` when it has cycle rules."""
        old = self.policies.pop(network_id, None)
        if policy is not None:
            self.policies[network_id] = policy
        wanted = policy.cycle if policy is not None and "cycle" in policy.events() else None
        if old is not None and policy is not None and old.cycle == wanted and network_id in self._policy_loops:
            return
        self._stop_policy_cycle(network_id)
        self.policy_cycles.pop(network_id, None)
        if wanted is not None:
            loop = task.LoopingCall(_logging_failures(self.run_policy_cycle, f"policy cycle of network {network_id}"),
                                    network_id)
            loop.clock = self.clock
            self._policy_loops[network_id] = loop
            loop.start(wanted, now=False)

    def _stop_policy_cycle(self, network_id: int) -> None:
        loop = self._policy_loops.pop(network_id, None)
        if loop is not None and loop.running:
            loop.stop()

    def _view_members(self, network_id: int) -> frozenset[int]:
        network = self.view.networks.get(network_id)
        return network.members if network is not None else frozenset()

    def run_policy_cycle(self, network_id: int) -> int:
        """One ``cycle`` event of ``network_id``'s policy; the number of actions it took."""
        policy = self.policies.get(network_id)
        if policy is None:
            return 0
        now = self.clock.seconds()
        cycle_num = self.policy_cycles[network_id] = self.policy_cycles.get(network_id, 0) + 1
        engine = self.engines.get(network_id)
        peers = len(engine.peers) if engine is not None else 0
        variables = {"network_id": network_id, "members": len(self._view_members(network_id)),
                     "peer_count": peers, "trusted_count": peers, "cycle_num": cycle_num}
        taken = self._fire(policy, "cycle", network_id, None, variables, now)
        self.emit("policy.cycle", network_id=network_id, cycle_num=cycle_num, actions=taken)
        return taken

    def _membership_events(self, old: NetworkView, new: NetworkView) -> None:
        """``join`` and ``leave`` events for the members that came and went in networks we stay in."""
        me, now = self.own_id(), self.clock.seconds()
        for network_id, network in new.networks.items():
            policy = self.policies.get(network_id)
            before = old.networks.get(network_id)
            if policy is None or before is None or not {"join", "leave"} & set(policy.events()):
                continue
            came = sorted(network.members - before.members - {me})[:MAX_MEMBERSHIP_EVENTS]
            went = sorted(before.members - network.members - {me})[:MAX_MEMBERSHIP_EVENTS]
            for node in came:
                self._fire(policy, "join", network_id, node,
                           {"peer_id": node, "network_id": network_id, "members": len(network.members)}, now)
            for node in went:
                self._fire(policy, "leave", network_id, node, {"peer_id": node, "network_id": network_id}, now)

    def _fire(self, policy: policy_document.Policy, event: str, network_id: int, node: int | None,
              variables: dict[str, Any], now: float) -> int:
        """Evaluate one action event and carry out its directives; a failing rule is counted and logged."""
        try:
            directives = policy.evaluate(event, variables, now)
        except PilotError as error:
            self.policy_errors += 1
            if self._refusal_log.allow(("error", network_id), now):
                log.warn("network {network}: policy {event} event failed: {error}", network=network_id,
                         event=event, error=error.message)
            return 0
        return self.actions.act(policy, network_id, node, directives, event, now)

    # -- the cycle -----------------------------------------------------------------

    def _members(self, network_id: int):
        request = self.registry.request({"type": "list_nodes", "network_id": network_id})

        def ids(reply):
            return [n["node_id"] for n in reply.get("nodes") or []
                    if isinstance(n, dict) and isinstance(n.get("node_id"), int) and not n.get("offline")]
        return request.addCallback(ids)

    @defer.inlineCallbacks
    def _bootstrap(self, engine: ManagedEngine):
        try:
            members = yield self._members(engine.network_id)
        except PilotError as error:
            log.warn("managed network {network}: bootstrap failed: {error}", network=engine.network_id,
                     error=error.message)
            return
        added = engine.bootstrap(members, self.clock.seconds())
        yield self._apply(engine, [], added)

    @defer.inlineCallbacks
    def run_cycle(self, network_id: int):
        """One prune/fill cycle of ``network_id``; its result as the reference reports it."""
        engine = self.engines.get(network_id)
        if engine is None:
            raise _not_managed(network_id)
        members = None
        try:
            members = yield self._members(network_id)
        except PilotError as error:
            log.warn("managed network {network}: member list failed, pruning only: {error}", network=network_id,
                     error=error.message)
        result = engine.cycle(members, self.clock.seconds())
        yield self._apply(engine, result.pruned, result.filled)
        report = result.to_json()
        if members is None:
            report["error"] = "member list unavailable"
        self.emit("managed.cycle", **{k: report[k] for k in ("network_id", "pruned", "filled", "peers")})
        return report

    @defer.inlineCallbacks
    def _apply(self, engine: ManagedEngine, pruned: list[int], filled: list[int]):
        for node in pruned:
            yield self._quietly(self.unlink, node, engine.network_id)
        for node in filled:
            yield self._quietly(self.link, node, engine.network_id)
        self._save(engine)

    def _quietly(self, action: Callable[..., Any], node: int, network_id: int):
        """Run one trust change; a failure is logged (the next cycle goes on) rather than raised."""
        arguments = (node, network_id) if action is self.link else (node,)
        result = defer.maybeDeferred(action, *arguments)
        return result.addErrback(lambda failure: log.warn(
            "managed network {network}: trust change for {node} failed: {error}", network=network_id,
            node=node, error=failure.getErrorMessage()))

    # -- persistence ---------------------------------------------------------------

    def _path(self, network_id: int) -> Path:
        return self.home / f"managed_{network_id}.json"

    def _save(self, engine: ManagedEngine) -> None:
        """Hand the engine's state to its file's writer (the newest wins; a failure is logged there)."""
        file = self._files.get(engine.network_id)
        if file is None:
            file = self._files[engine.network_id] = SnapshotFile(self._path(engine.network_id), self._writer)
        file.write(json.dumps(engine.snapshot(), indent=2).encode("utf-8") + b"\n")

    def _load(self, engine: ManagedEngine) -> None:
        path = self._path(engine.network_id)
        try:
            if path.stat().st_size > 4 * 1024 * 1024:
                raise ValueError("larger than 4 MiB")
            snapshot = json.loads(path.read_text())
            if isinstance(snapshot, dict):
                engine.restore(snapshot)
        except FileNotFoundError:
            return
        except (OSError, ValueError, RecursionError) as error:
            log.warn("managed network {network}: saved state ignored: {error}", network=engine.network_id,
                     error=error)

    # -- the control commands ------------------------------------------------------

    def engine(self, network_id: int) -> ManagedEngine:
        """The engine of ``network_id``; 0 means the first (or only) one, as in the reference."""
        if network_id == 0 and self.engines:
            return self.engines[min(self.engines)]
        engine = self.engines.get(network_id)
        if engine is None:
            raise _not_managed(network_id)
        return engine

    def score(self, network_id: int, node_id: int, delta: int, topic: str) -> dict[str, Any]:
        engine = self.engine(network_id)
        engine.score(node_id, delta, topic, self.clock.seconds())
        self._save(engine)
        return {"type": "managed_score_ok", "network_id": engine.network_id, "node_id": node_id, "delta": delta,
                "topic": topic}

    def status(self, network_id: int) -> dict[str, Any]:
        return self.engine(network_id).status()

    def rankings(self, network_id: int) -> dict[str, Any]:
        engine = self.engine(network_id)
        return {"network_id": engine.network_id, "rankings": engine.rankings()}

    def force_cycle(self, network_id: int):
        return self.run_cycle(self.engine(network_id).network_id)

    @defer.inlineCallbacks
    def get_policy(self, network_id: int):
        reply = yield self.registry.request({"type": "get_expr_policy", "network_id": _network(network_id)})
        return reply

    def _store(self, request: dict[str, Any], admin_token: str | None):
        """Send a change the registry authorises: with the admin token, else signed as this node."""
        if admin_token:
            return self.registry.request(dict(request, admin_token=admin_token))
        return self.registry.signed(dict(request, node_id=self.own_id()))

    @defer.inlineCallbacks
    def set_policy(self, network_id: int, text: str, admin_token: str | None = None):
        """Validate ``text`` here, store it at the registry (which checks who may), then apply it."""
        network_id = _network(network_id)
        cleared = text.strip() in ("", "null")
        compiled = None if cleared else policy_document.load(text)
        reply = yield self._store({"type": "set_expr_policy", "network_id": network_id,
                                   "expr_policy": "" if cleared else text}, admin_token)
        self._install_policy(network_id, compiled)
        return dict(reply, applied=True, rules=0 if compiled is None else len(compiled.rules))

    def get_member_tags(self, network_id: int, node_id: int):
        return self.registry.request({"type": "get_member_tags", "network_id": _network(network_id),
                                      "target_node_id": node_id})

    @defer.inlineCallbacks
    def set_member_tags(self, network_id: int, node_id: int, tags: list[str], admin_token: str | None = None):
        reply = yield self._store({"type": "set_member_tags", "network_id": _network(network_id),
                                   "target_node_id": node_id, "tags": tags}, admin_token)
        if network_id in self.member_tags:
            yield self.refresh_member_tags(network_id)
        return reply


def _logging_failures(function: Callable[..., Any], what: str) -> Callable[..., Any]:
    """``function`` for a LoopingCall: a failure is logged and the loop goes on (a raised one would stop it)."""
    def run(*args: Any) -> Any:
        return defer.maybeDeferred(function, *args).addErrback(lambda failure: log.failure(what, failure))
    return run


def _network(network_id: int) -> int:
    if not 0 < network_id < 0x10000:
        raise PilotError(f"invalid network {network_id}: expected 1 to 65535", code=INVALID_ARGUMENT)
    return network_id
