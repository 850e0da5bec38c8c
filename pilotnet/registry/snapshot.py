"""Import of a Go registry's snapshot file (controlplane §1.12), so an operator can migrate.

The Go registry keeps its whole state in one JSON object (``-store`` file):
``next_node``, ``next_net``, ``nodes``, ``networks``, ``trust_pairs``,
``pub_key_idx``, ``handshake_inbox``, ``handshake_responses``; the FK line
adds fields we either map (``lan_addrs``, ``version``, key lifecycle, network
roles, member tags, admin tokens, policies, managed rules, expression
policies, the enterprise flag, ``invite_inbox``) or have no use for (dashboard
history, audit log, identity settings, ``checksum``), which are ignored.  The import turns it into our :class:`Directory` and writes that to
an *empty* SQLite store in one transaction, so a failed import leaves nothing
half done and an import can never overwrite live state.

Mapping decisions:

* a reference trust pair was created by one side's word; it was nonetheless a
  working pair, so it becomes both nodes' consent (the pair keeps working);
* the backbone (network 0) is implicit here and skipped;
* a network without roles (written before the reference had them) gets the
  reference's backfill: its lowest member ID is the owner;
* the owner index is rebuilt from the nodes, as the reference does on load.
"""

import base64
import binascii
import json
import secrets

from pilotnet.errors import DecodeError, PilotError, INVALID_ARGUMENT
from pilotnet.registry import network_rules
from pilotnet.registry.directory import (
    ADMIN, BACKBONE, MEMBER, OWNER, Directory, HandshakeRequest, HandshakeResponse, Invite,
    Network, Node,
)
from pilotnet.registry.requests import RequestError
from pilotnet.registry.validation import normalize_tags
from pilotnet.wire.rfc3339 import parse_rfc3339


class SnapshotError(PilotError):
    code = INVALID_ARGUMENT


def _time(text, where):
    """RFC 3339 (Go writes nanoseconds) as Unix seconds; Go's zero time is 0."""
    if not text or str(text).startswith("0001-01-01"):
        return 0.0
    try:
        return parse_rfc3339(text, where)
    except DecodeError:
        raise SnapshotError(f"{where}: invalid time {text!r}") from None


def _int(value, where):
    if type(value) is not int or value < 0:
        raise SnapshotError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _key(value, where):
    try:
        if len(base64.b64decode(value, validate=True)) == 32:
            return value
    except (TypeError, ValueError, binascii.Error):
        pass
    raise SnapshotError(f"{where}: not a base64 Ed25519 public key")


def _node(raw, where):
    return Node(
        id=_int(raw.get("id"), f"{where}.id"),
        public_key=_key(raw.get("public_key"), f"{where}.public_key"),
        owner=raw.get("owner") or "", real_addr=raw.get("real_addr") or "",
        public=bool(raw.get("public")), hostname=raw.get("hostname") or "",
        tags=tuple(raw.get("tags") or ()), polo_score=int(raw.get("polo_score") or 0),
        task_exec=bool(raw.get("task_exec")),
        last_seen=_time(raw.get("last_seen"), f"{where}.last_seen"),
        lan_addrs=tuple(raw.get("lan_addrs") or ()), version=raw.get("version") or "",
        key_created=_time(raw.get("key_created"), f"{where}.key_created"),
        key_rotated=_time(raw.get("key_rotated"), f"{where}.key_rotated"),
        key_rotations=int(raw.get("key_rot_count") or 0),
        key_expires=_time(raw.get("key_expires"), f"{where}.key_expires"))


def _network(raw, where):
    join_rule, token = raw.get("join_rule") or "open", raw.get("token") or ""
    if join_rule not in ("open", "token", "invite"):
        # A rule we do not know: closed to newcomers (a token nobody holds), members stay.
        join_rule, token = "token", secrets.token_urlsafe(32)
    policy = raw.get("policy") or {}
    try:
        return Network(
            id=_int(raw.get("id"), f"{where}.id"), name=raw.get("name") or "",
            join_rule=join_rule, token=token,
            members={_int(m, f"{where}.members") for m in raw.get("members") or []},
            created=_time(raw.get("created"), f"{where}.created"),
            enterprise=bool(raw.get("enterprise")), admin_token=raw.get("admin_token") or "",
            max_members=network_rules.parse_max_members(policy.get("max_members") or 0),
            allowed_ports=network_rules.parse_allowed_ports(policy.get("allowed_ports") or []),
            description=network_rules.parse_description(policy.get("description") or ""),
            rules=network_rules.parse_rules(raw.get("rules")),
            expr_policy=network_rules.parse_expr_policy(raw.get("expr_policy")))
    except RequestError as error:
        raise SnapshotError(f"{where}: {error.message}") from None


def _memberships(directory, network, raw, where):
    """The network's roles (backfilled as the reference does) and member tags."""
    roles = {int(node_id): role for node_id, role in (raw.get("member_roles") or {}).items()}
    if not roles and network.members:
        roles = {min(network.members): OWNER}
    for node_id, role in roles.items():
        if role not in (OWNER, ADMIN, MEMBER):
            raise SnapshotError(f"{where}.member_roles: unknown role {role!r}")
        if node_id in network.members and role != MEMBER:
            directory.member_roles[network.id, node_id] = role
    for node_id, tags in (raw.get("member_tags") or {}).items():
        try:
            checked = normalize_tags(list(tags))
        except (RequestError, TypeError, AttributeError):
            raise SnapshotError(f"{where}.member_tags: invalid tags for node {node_id}") from None
        if checked and int(node_id) in network.members:
            directory.member_tags[network.id, int(node_id)] = tuple(checked)


def read_go_snapshot(data):
    """The :class:`Directory` described by a Go snapshot's bytes."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:
        raise SnapshotError(f"not a JSON snapshot: {error}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes", {}), dict):
        raise SnapshotError("not a Go registry snapshot (expected an object with \"nodes\")")
    directory = Directory()
    try:
        for node_id, item in (raw.get("nodes") or {}).items():
            node = _node(item, f"nodes[{node_id}]")
            directory.nodes[node.id] = node
            if node.hostname:
                directory.hostname_index[node.hostname] = node.id
            if node.owner:
                directory.owner_index[node.owner] = node.id
            directory.key_index[node.public_key] = node.id
        for public_key, node_id in (raw.get("pub_key_idx") or {}).items():
            directory.key_index[_key(public_key, "pub_key_idx")] = _int(node_id, "pub_key_idx")
        for network_id, item in (raw.get("networks") or {}).items():
            network = _network(item, f"networks[{network_id}]")
            if network.id != BACKBONE:
                directory.networks[network.id] = network
                _memberships(directory, network, item, f"networks[{network_id}]")
        for target, items in (raw.get("invite_inbox") or {}).items():
            for i in items:
                directory.invites.setdefault(_int(int(target), "invite_inbox"), {})[
                    _int(i["network_id"], "invite_inbox")] = Invite(
                        _int(i["inviter_id"], "invite_inbox"), _time(i.get("timestamp"), "invite_inbox"))
        for pair in raw.get("trust_pairs") or []:
            a, b = (int(part) for part in pair.split(":"))
            directory.consents.update({(a, b), (b, a)})
        for node_id, items in (raw.get("handshake_inbox") or {}).items():
            directory.handshake_requests[int(node_id)] = [HandshakeRequest(
                _int(i["from_node_id"], "handshake_inbox"), i.get("justification") or "",
                _time(i.get("timestamp"), "handshake_inbox")) for i in items]
        for node_id, items in (raw.get("handshake_responses") or {}).items():
            directory.handshake_responses[int(node_id)] = [HandshakeResponse(
                _int(i["from_node_id"], "handshake_responses"), bool(i.get("accept")),
                _time(i.get("timestamp"), "handshake_responses")) for i in items]
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise SnapshotError(f"malformed snapshot: {error!r}") from None
    highest_node = max(directory.key_index.values(), default=0)
    directory.next_node = max(_int(raw.get("next_node", 1), "next_node"), highest_node + 1)
    directory.next_net = max(_int(raw.get("next_net", 1), "next_net"),
                             max(directory.networks, default=0) + 1)
    return directory


def import_go_snapshot(path, store):
    """Write the Go snapshot at ``path`` into the empty ``store``; returns the directory."""
    if store.count():
        raise SnapshotError(f"the store {store.path} already holds registry state",
                            hint="import into a new --store, or drop --import-snapshot "
                                 "(it was probably imported already)")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise SnapshotError(f"cannot read {path}: {error.strerror}") from None
    directory = read_go_snapshot(data)
    store.replace_all(directory.entities())
    return directory
