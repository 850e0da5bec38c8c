"""The settings a network carries, checked before the registry stores them (controlplane §1.9.2).

* **managed rules**: how daemons of a managed network fill and prune their
  trust links (``links``, ``cycle``, ``prune``, ``prune_by``, ``fill``,
  ``fill_how``, ``grace``), with the reference's rules and messages;
* **expression policy**: a JSON document ``{"version": 1, "rules": [...]}``
  the daemons evaluate; the registry checks its shape and size only (the
  expressions are the daemon's business);
* **network policy**: ``max_members``, ``allowed_ports`` and ``description``.

Both JSON settings arrive either as an object or as a string holding one (the
reference's clients send either).  Everything here is pure: values in, values
or :class:`RequestError` out.
"""

import json
from typing import Any

from pilotnet.errors import DecodeError
from pilotnet.registry.requests import RequestError
from pilotnet.wire.goduration import parse_go_duration

MAX_MEMBERS = 10_000
MAX_ALLOWED_PORTS = 100
MAX_DESCRIPTION = 256
# Bounds of our own: the reference stores whatever fits its 4 MiB frame.
MAX_RULES_BYTES = 4096
MAX_EXPR_POLICY_BYTES = 64 * 1024
MAX_EXPR_RULES = 256
MAX_LINKS = 10_000
PRUNE_STRATEGIES = ("score", "age", "activity")
FILL_STRATEGIES = ("random",)
MIN_CYCLE = 60.0
# The managed-rules fields and the JSON types they take.
_RULE_FIELDS: dict[str, type] = {"links": int, "cycle": str, "prune": int, "prune_by": str,
                                 "fill": int, "fill_how": str, "grace": str}


def _document(value: Any, field: str, max_bytes: int) -> Any:
    """A JSON setting as a Python value: an object as is, a string parsed; ``None`` when cleared."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in ("", "null"):
            return None
        if len(value.encode("utf-8", "replace")) > max_bytes:
            raise RequestError(f"{field} too long (max {max_bytes} bytes)")
        try:
            value = json.loads(value)
        except ValueError as error:
            raise RequestError(f"{field}: invalid JSON: {error}") from None
        except RecursionError:
            raise RequestError(f"{field}: invalid JSON: nested too deeply") from None
        if value is None:
            return None
    elif len(json.dumps(value, separators=(",", ":"))) > max_bytes:
        raise RequestError(f"{field} too long (max {max_bytes} bytes)")
    return value


def _duration(text: str, what: str) -> float:
    try:
        return parse_go_duration(text)
    except DecodeError:
        raise RequestError(f"rules: invalid {what} duration {text!r}") from None


def parse_rules(value: Any) -> dict | None:
    """The managed rules to store (``None``: the network is not managed)."""
    rules = _document(value, "rules", MAX_RULES_BYTES)
    if rules is None:
        return None
    if not isinstance(rules, dict):
        raise RequestError("rules: invalid JSON: expected an object")
    checked: dict[str, Any] = {}
    for name, kind in _RULE_FIELDS.items():
        item = rules.get(name)
        if item is None:
            continue
        if kind is int and type(item) is float and item.is_integer():
            item = int(item)
        if type(item) is not kind:
            raise RequestError(f"rules: invalid {name}: expected {'an integer' if kind is int else 'a string'}")
        checked[name] = item
    links, prune, fill = (checked.get(name, 0) for name in ("links", "prune", "fill"))
    if not 1 <= links <= MAX_LINKS:
        raise RequestError(f"rules: links must be >= 1 (got {links})" if links < 1
                           else f"rules: links must be <= {MAX_LINKS} (got {links})")
    cycle = checked.get("cycle", "")
    if not cycle:
        raise RequestError("rules: cycle is required")
    if _duration(cycle, "cycle") < MIN_CYCLE:
        raise RequestError(f"rules: cycle must be >= 1m (got {cycle})")
    if prune < 0:
        raise RequestError(f"rules: prune must be >= 0 (got {prune})")
    if fill < 0:
        raise RequestError(f"rules: fill must be >= 0 (got {fill})")
    if prune > links:
        raise RequestError(f"rules: prune ({prune}) cannot exceed links ({links})")
    if fill > links:
        raise RequestError(f"rules: fill ({fill}) cannot exceed links ({links})")
    for name, allowed in (("prune_by", PRUNE_STRATEGIES), ("fill_how", FILL_STRATEGIES)):
        strategy = checked.get(name, "")
        if not strategy:
            raise RequestError(f"rules: {name} is required")
        if strategy not in allowed:
            raise RequestError(f"rules: unknown {name} strategy {strategy!r} (want {'|'.join(allowed)})")
    grace = checked.get("grace", "")
    if grace and _duration(grace, "grace") < 0:
        raise RequestError("rules: grace must be >= 0")
    stored = {"links": links, "cycle": cycle, "prune": prune, "prune_by": checked["prune_by"],
              "fill": fill, "fill_how": checked["fill_how"]}
    if grace:
        stored["grace"] = grace
    return stored


def parse_expr_policy(value: Any) -> dict | None:
    """The expression policy document to store (``None`` clears it)."""
    document = _document(value, "expr_policy", MAX_EXPR_POLICY_BYTES)
    if document is None:
        return None
    if not isinstance(document, dict):
        raise RequestError("invalid expr_policy: expected a JSON object")
    version = document.get("version")
    if type(version) is float and version.is_integer():
        version = int(version)
    if type(version) is not int or version != 1:
        raise RequestError(f"invalid expr_policy: unsupported version {version!r} (want 1)")
    rules = document.get("rules")
    if not isinstance(rules, list) or not rules:
        raise RequestError("invalid expr_policy: rules required (a non-empty list)")
    if len(rules) > MAX_EXPR_RULES:
        raise RequestError(f"invalid expr_policy: too many rules (max {MAX_EXPR_RULES})")
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise RequestError(f"invalid expr_policy: rule {index} is not an object")
    return document


def _whole(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def parse_max_members(value: Any) -> int:
    number = _whole(value)
    if number is None or not 0 <= number <= MAX_MEMBERS:
        raise RequestError(f"invalid max_members (must be integer 0-{MAX_MEMBERS})")
    return number


def parse_allowed_ports(value: Any) -> tuple[int, ...]:
    """Distinct ports in the order given; at most :data:`MAX_ALLOWED_PORTS` entries."""
    if not isinstance(value, list):
        raise RequestError("invalid allowed_ports: expected a list of port numbers")
    if len(value) > MAX_ALLOWED_PORTS:
        raise RequestError(f"too many allowed_ports (max {MAX_ALLOWED_PORTS})")
    ports: list[int] = []
    for item in value:
        port = _whole(item)
        if port is None or not 1 <= port <= 0xFFFF:
            raise RequestError("invalid port number in allowed_ports (must be integer 1-65535)")
        if port not in ports:
            ports.append(port)
    return tuple(ports)


def parse_description(value: Any) -> str:
    if not isinstance(value, str):
        raise RequestError("invalid description: expected a string")
    if len(value) > MAX_DESCRIPTION:
        raise RequestError(f"policy description too long (max {MAX_DESCRIPTION} chars)")
    return value
