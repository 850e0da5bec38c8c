"""A network's expression policy: the document, its validation, and the evaluation of its rules.

The document is the reference's (``pkg/policy`` of the Go implementation)::

    {"version": 1,
     "default_verdict": "allow",            # or "deny"; optional, "allow" by default
     "config": {"cycle": "24h", "max_peers": 50},   # optional
     "rules": [{"name": "allow-echo", "on": "connect", "match": "port == 7",
                "actions": [{"type": "allow"}]}, ...]}

A rule fires on one event (``connect`` an inbound stream, ``dial`` an
outbound one, ``datagram``, ``cycle`` a periodic tick, ``join``, ``leave``)
when its ``match`` expression is true, and yields one directive per action.
The first three are *gate* events: rules are tried in order, side effects
(score, tag, log, webhook) accumulate, and the first matching rule with an
``allow`` or ``deny`` decides; if none does, ``default_verdict`` decides
(directive rule ``_default``).  For the others every matching rule fires.

Validation is the reference's (same messages) plus bounds of our own on
sizes: :data:`MAX_DOCUMENT` bytes of JSON, :data:`MAX_RULES` rules,
:data:`MAX_ACTIONS` actions a rule, names up to :data:`MAX_NAME` characters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pilotnet.errors import INVALID_ARGUMENT, PilotError
from pilotnet.policy.expr import Expression, ExpressionError, compile_expression
from pilotnet.wire.goduration import parse_go_duration

VERSION = 1
MAX_DOCUMENT = 64 * 1024
MAX_RULES = 256
MAX_ACTIONS = 16
MAX_NAME = 64

GATE_EVENTS = ("connect", "dial", "datagram")
EVENTS = GATE_EVENTS + ("cycle", "join", "leave")
VERDICTS = ("allow", "deny")

#: Each action type and the parameters it requires (a tuple of alternatives means "one of these").
ACTIONS: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "allow": (), "deny": (), "evict": (),
    "score": ("delta",), "tag": (("add", "remove"),), "evict_where": ("match",),
    "prune": ("count",), "fill": ("count",), "prune_trust": ("percent", "min"), "fill_trust": ("target",),
    "webhook": ("event",), "log": ("message",),
}

_PEER = {"peer_id": 0, "peer_score": 0, "peer_tags": [], "peer_age_s": 0.0}
#: The variables each event declares, with the zero value a missing one takes (the reference's typed
#: environment: a declared variable the event leaves out is its type's zero value; an undeclared one is nil).
VARIABLES: dict[str, dict[str, object]] = {
    "connect": {**_PEER, "port": 0, "network_id": 0, "members": 0, "sender_rating": 0.0},
    "dial": {**_PEER, "port": 0, "network_id": 0, "members": 0, "sender_rating": 0.0},
    "datagram": {**_PEER, "port": 0, "network_id": 0, "members": 0, "size": 0, "direction": "",
                 "sender_rating": 0.0},
    "cycle": {**_PEER, "network_id": 0, "members": 0, "peer_count": 0, "cycle_num": 0, "trusted_count": 0},
    "join": {"peer_id": 0, "network_id": 0, "members": 0},
    "leave": {"peer_id": 0, "network_id": 0},
}
#: What ``evict_where``'s own expression sees: one managed peer at a time.
PEER_VARIABLES: dict[str, object] = {**_PEER, "last_seen": 0.0}


class PolicyError(PilotError):
    """A policy document that is not valid, or a rule that failed while evaluated."""

    code = INVALID_ARGUMENT


def _invalid(message: str) -> PolicyError:
    return PolicyError(f"policy: {message}", hint="see docs/networks.md for the policy document format")


class Action:
    __slots__ = ("type", "params", "peer_match")

    def __init__(self, type: str, params: dict[str, Any], peer_match: Expression | None) -> None:
        self.type = type
        self.params = params
        self.peer_match = peer_match


class Rule:
    __slots__ = ("name", "on", "match", "actions")

    def __init__(self, name: str, on: str, match: Expression, actions: list[Action]) -> None:
        self.name = name
        self.on = on
        self.match = match
        self.actions = actions


class Directive:
    """One action a matching rule asks for: its type, the rule's name, the action's params."""

    __slots__ = ("type", "rule", "params", "action")

    def __init__(self, type: str, rule: str, params: dict[str, Any], action: Action | None = None) -> None:
        self.type = type
        self.rule = rule
        self.params = params
        self.action = action

    def __repr__(self) -> str:
        return f"<Directive {self.type} from {self.rule!r}>"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "rule": self.rule, "params": self.params or None}


class Policy:
    """A validated document with every expression compiled."""

    __slots__ = ("document", "source", "rules", "default_verdict", "cycle", "max_peers", "gate_events")

    def __init__(self, document: dict[str, Any], rules: list[Rule], default_verdict: str,
                 cycle: float | None, max_peers: int, source: str = "") -> None:
        self.document = document
        #: The JSON text it was loaded from (the daemon re-compiles a policy only when this changes).
        self.source = source
        self.rules = rules
        self.default_verdict = default_verdict
        self.cycle = cycle
        self.max_peers = max_peers
        #: The gate events the policy can deny (the daemon evaluates only these): every one under a default
        #: of deny, else those it has rules for.
        self.gate_events = frozenset(GATE_EVENTS) if default_verdict == "deny" else \
            frozenset(rule.on for rule in rules if rule.on in GATE_EVENTS)

    def events(self) -> list[str]:
        """The events the policy has rules for, in the reference's order."""
        return [event for event in EVENTS if any(rule.on == event for rule in self.rules)]

    def evaluate(self, event: str, variables: Mapping[str, object], now: float) -> list[Directive]:
        """The directives of the rules ``event`` fires, given the event's ``variables``, at ``now``.

        A gate event's list always ends with its verdict (``allow`` or ``deny``).
        A rule whose expression fails raises :class:`PolicyError` naming the rule.
        """
        if event not in EVENTS:
            raise _invalid(f"unknown event type {event!r} (one of {', '.join(EVENTS)})")
        scope = {**VARIABLES[event], **variables}
        directives: list[Directive] = []
        for rule in self.rules:
            if rule.on != event or not _fires(rule, scope, now):
                continue
            produced = [Directive(action.type, rule.name, action.params, action) for action in rule.actions]
            directives += produced
            if event in GATE_EVENTS and any(d.type in VERDICTS for d in produced):
                return directives
        if event in GATE_EVENTS:
            directives.append(Directive(self.default_verdict, "_default", {}))
        return directives

    def peer_matches(self, directive: Directive, peer: Mapping[str, object], now: float) -> bool:
        """Whether ``evict_where``'s expression holds for one peer."""
        action = directive.action
        if action is None or action.peer_match is None:
            return False
        try:
            return action.peer_match.test({**PEER_VARIABLES, **peer}, now)
        except ExpressionError as error:
            raise PolicyError(f"policy: rule {directive.rule!r} evict_where: {error.message}") from None


def verdict(directives: list[Directive]) -> str | None:
    """``allow`` or ``deny`` from a gate event's directives; None for an action event's."""
    for directive in directives:
        if directive.type in VERDICTS:
            return directive.type
    return None


def _fires(rule: Rule, variables: Mapping[str, object], now: float) -> bool:
    try:
        return rule.match.test(variables, now)
    except ExpressionError as error:
        raise PolicyError(f"policy: rule {rule.name!r} eval: {error.message}",
                          hint="a rule that fails on a live event lets the event through (fail open)") from None


def load(source: str | bytes | Mapping[str, Any]) -> Policy:
    """A :class:`Policy` from JSON text or an already-decoded document; :class:`PolicyError` if invalid."""
    if isinstance(source, bytes):
        source = source.decode("utf-8", "replace")
    if not isinstance(source, str):
        source = json.dumps(dict(source))
    if len(source) > MAX_DOCUMENT:
        raise _invalid(f"document larger than {MAX_DOCUMENT} bytes")
    try:
        document = json.loads(source)
    except (ValueError, RecursionError) as error:
        raise _invalid(f"invalid JSON: {error}") from None
    if not isinstance(document, dict):
        raise _invalid("the document must be a JSON object")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version != VERSION:
        raise _invalid(f"unsupported version {_show(version)} (want {VERSION})")
    default_verdict = document.get("default_verdict") or "allow"
    if default_verdict not in VERDICTS:
        raise _invalid(f'default_verdict must be "allow" or "deny" (got {_show(default_verdict)})')
    rules_json = document.get("rules")
    if not isinstance(rules_json, list) or not rules_json:
        raise _invalid("at least one rule is required")
    if len(rules_json) > MAX_RULES:
        raise _invalid(f"more than {MAX_RULES} rules")
    rules, names = [], set()
    for index, rule_json in enumerate(rules_json):
        rule = _rule(index, rule_json)
        if rule.name in names:
            raise _invalid(f"duplicate rule name {rule.name!r}")
        names.add(rule.name)
        rules.append(rule)
    cycle, max_peers = _config(document.get("config"))
    return Policy(document, rules, default_verdict, cycle, max_peers, source)


def _show(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _rule(index: int, rule_json: object) -> Rule:
    if not isinstance(rule_json, dict):
        raise _invalid(f"rule[{index}]: must be an object")
    name = rule_json.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid(f"rule[{index}]: name is required")
    if len(name) > MAX_NAME:
        raise _invalid(f"rule[{index}]: name longer than {MAX_NAME} characters")
    on = rule_json.get("on")
    if on not in EVENTS:
        raise _invalid(f"rule {name!r}: unknown event type {_show(on)}")
    source = rule_json.get("match")
    if not isinstance(source, str) or not source:
        raise _invalid(f"rule {name!r}: match expression is required")
    actions_json = rule_json.get("actions")
    if not isinstance(actions_json, list) or not actions_json:
        raise _invalid(f"rule {name!r}: at least one action is required")
    if len(actions_json) > MAX_ACTIONS:
        raise _invalid(f"rule {name!r}: more than {MAX_ACTIONS} actions")
    actions = [_action(name, position, action) for position, action in enumerate(actions_json)]
    try:
        match = compile_expression(source)
    except ExpressionError as error:
        raise _invalid(f"rule {name!r} match: {error.message}") from None
    return Rule(name, on, match, actions)


def _action(rule: str, index: int, action_json: object) -> Action:
    if not isinstance(action_json, dict):
        raise _invalid(f"rule {rule!r} action[{index}]: must be an object")
    kind = action_json.get("type")
    if not isinstance(kind, str) or kind not in ACTIONS:
        raise _invalid(f"rule {rule!r} action[{index}]: unknown action type {_show(kind)}")
    params = action_json.get("params") or {}
    if not isinstance(params, dict):
        raise _invalid(f"rule {rule!r} action[{index}]: params must be an object")
    for required in ACTIONS[kind]:
        alternatives = required if isinstance(required, tuple) else (required,)
        if not any(name in params for name in alternatives):
            wanted = " or ".join(f"'{name}'" for name in alternatives)
            raise _invalid(f"rule {rule!r} action[{index}]: {kind} requires {wanted} param")
    peer_match = None
    if kind == "evict_where":
        source = params.get("match")
        if not isinstance(source, str) or not source:
            raise _invalid(f"rule {rule!r} action[{index}]: evict_where match must be a string")
        try:
            peer_match = compile_expression(source)
        except ExpressionError as error:
            raise _invalid(f"rule {rule!r} action[{index}] evict_where match: {error.message}") from None
    return Action(kind, params, peer_match)


def _config(config: object) -> tuple[float | None, int]:
    if config is None:
        return None, 0
    if not isinstance(config, dict):
        raise _invalid("config must be an object")
    cycle = None
    if "cycle" in config:
        text = config["cycle"]
        if not isinstance(text, str):
            raise _invalid("config.cycle must be a string")
        try:
            cycle = parse_go_duration(text)
        except PilotError as error:
            raise _invalid(f"config.cycle: {error.message}") from None
        if cycle < 1:
            raise _invalid("config.cycle must be >= 1s")
    max_peers = config.get("max_peers", 0)
    if not isinstance(max_peers, (int, float)) or isinstance(max_peers, bool) or not 0 <= max_peers <= 10_000:
        raise _invalid("config.max_peers must be a number from 0 to 10000")
    return cycle, int(max_peers)
