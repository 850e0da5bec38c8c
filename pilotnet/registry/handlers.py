"""The registry's request handlers: one request and ``now`` in, one reply out.

No sockets and no clock here: the Twisted shell (:mod:`pilotnet.registry.server`)
feeds decoded requests with the peer's address and the time, writes the reply,
and persists the entities the request changed before it does so.

Where the reference trusts the caller more than it should, we ask for more
(see docs/registry.md, "Differences from the reference"):

* a trust pair -- which unlocks a private node's endpoint -- needs both nodes'
  signed consent (``report_trust``, or ``request_handshake`` on one side and an
  accepting ``respond_handshake`` on the other), not one side's word;
* ``punch`` applies the same visibility gate as ``resolve``;
* ``resolve_hostname`` hides private nodes from requesters who could not resolve them;
* owner-based recovery is off unless the operator enables it, and then only
  takes over a node ID whose node is offline;
* polo score updates are bounded and rate limited per source address;
* a re-registration of a known key that is not signed (Go clients never sign
  ``register``) may not take a live node from another address, and legacy
  signatures (which do not cover the values they authorise) are accepted only
  over TLS, where they cannot be captured, or where a replay changes nothing
  (see docs/security.md, "Registry").
"""

import base64
import binascii
import hmac

from twisted.logger import Logger

from pilotnet.errors import DecodeError, PilotError, NOT_FOUND, ALREADY_EXISTS, INTERNAL
from pilotnet.registry import requests as fields
from pilotnet.registry.audit import AuditLog
from pilotnet.registry.challenges import FRESH_FIELD, fresh_signature_valid, signature_valid
from pilotnet.registry.directory import (
    BACKBONE, Directory, HandshakeRequest, HandshakeResponse, Network, Node, address_text,
)
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.freshness import MAX_NONCE_LENGTH, ReplayCache
from pilotnet.registry.requests import RequestError
from pilotnet.registry.validation import check_hostname, check_network_name, normalize_tags
from pilotnet.wire.hostport import join_host_port, split_host_port

PROTOCOL_VERSION = 1
MAX_INBOX = 100
MAX_JUSTIFICATION = 1024
MAX_POLO = 1_000_000
BEACON_TTL = 60.0
# Two heartbeats of a daemon at its default interval (60 s): a stopped node shows offline
# within two intervals; one lost heartbeat does not make a live one flap.
DEFAULT_OFFLINE_AFTER = 120.0
JOIN_RULES = ("open", "token")
# What a standby answers (the reference's list); every other request is refused.
# beacon_register too: a beacon's announcement is soft local state, not replicated.
STANDBY_READS = frozenset({
    "lookup", "resolve", "resolve_hostname", "list_networks", "list_nodes", "heartbeat",
    "poll_handshakes", "beacon_list", "beacon_register", "get_polo_score", "check_trust",
})
STANDBY_REFUSAL = "standby mode: write operations not accepted (use primary)"
# Messages that accept the admin token in place of the node's signature.
ADMIN_OVERRIDABLE = frozenset({
    "set_visibility", "set_task_exec", "set_hostname", "set_tags", "deregister",
    "join_network", "leave_network",
})


def replay_harmless(kind, request):
    """May a legacy-signed ``kind`` request come over plaintext?  Only if a replay changes nothing.

    A heartbeat that sets no endpoint says only "node N is alive" again (what
    Go daemons send); a resolve reads what the requester is entitled to see
    at that moment.  Every other signed request sets a value or consumes
    state (a handshake inbox), so a captured one must not be replayable.
    """
    return kind == "resolve" or (kind == "heartbeat" and not request.get("listen_addr"))


def error_reply(error):
    """The wire form of a refused request: the reference's shape plus our stable code."""
    return {"type": "error", "error": error.message, "code": error.code}


def _not_found(node_id):
    return RequestError(f"node {node_id}: node not found", code=NOT_FOUND)


def _public_key(request, field):
    value = fields.text(request, field)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"invalid {field}: not valid base64") from None
    if len(raw) != 32:
        raise RequestError(f"invalid {field}: an Ed25519 public key is 32 bytes, not {len(raw)}")
    return value


def _split_port(listen_addr):
    """The port of a ``host:port`` / ``[v6]:port`` text, or None if it has none."""
    try:
        return split_host_port(listen_addr)[1]
    except DecodeError:
        return None


def observed_endpoint(listen_addr, peer):
    """The endpoint to publish for a node: the TCP source IP with the port it announced.

    A node cannot claim somebody else's IP this way.  An unparsable
    ``listen_addr`` falls back to the TCP source address itself; an empty one
    registers the node without an endpoint (identity only).
    """
    if not listen_addr:
        return ""
    host, source_port = peer
    port = _split_port(listen_addr)
    return join_host_port(host, port if port is not None else source_port)


class Registry:
    """Directory, trust and relay logic of the registry, driven by requests."""

    log = Logger()

    def __init__(self, directory=None, *, admin_token="", stale_after=300.0,
                 offline_after=DEFAULT_OFFLINE_AFTER, register_limiter=None, polo_limiter=None,
                 replays=None, allow_legacy_signatures=False, allow_owner_recovery=False, audit=None):
        self.directory = directory if directory is not None else Directory()
        self.admin_token = admin_token
        # Silent for offline_after: shown offline; silent for stale_after: reaped.
        self.stale_after = stale_after
        self.offline_after = offline_after
        self.replays = replays if replays is not None else ReplayCache()
        # Compatibility options, both unsafe (docs/security.md says what they open).
        self.allow_legacy_signatures = allow_legacy_signatures
        self.allow_owner_recovery = allow_owner_recovery
        # Per node: when it last proved possession of its key (a verified
        # signature, or the first registration of a key nobody held), and the
        # source IP of its last accepted registration.  In memory only: after a
        # restart the next heartbeat proves the node again.
        self._proven_at = {}
        self._registered_from = {}
        # Whether the request being handled came over TLS (set by handle()).
        self._over_tls = False
        if register_limiter is None:
            register_limiter = RateLimiter(burst=10, window=60.0)
        if polo_limiter is None:
            polo_limiter = RateLimiter(burst=30, window=60.0)
        self.register_limiter = register_limiter
        self.polo_limiter = polo_limiter
        self.beacons = {}
        # A standby (following a primary) answers only STANDBY_READS.
        self.read_only = False
        # Of several registries on one database, only the lease holder reaps.
        self.reaps_nodes = True
        self._heartbeats_verified = {}
        self._handlers = {
            "register": self._register,
            "heartbeat": self._heartbeat,
            "lookup": self._lookup,
            "resolve": self._resolve,
            "resolve_hostname": self._resolve_hostname,
            "set_hostname": self._set_hostname,
            "set_tags": self._set_tags,
            "set_visibility": self._set_visibility,
            "set_task_exec": self._set_task_exec,
            "deregister": self._deregister,
            "report_trust": self._report_trust,
            "revoke_trust": self._revoke_trust,
            "check_trust": self._check_trust,
            "request_handshake": self._request_handshake,
            "request_handshake_by_name": self._request_handshake_by_name,
            "poll_handshakes": self._poll_handshakes,
            "respond_handshake": self._respond_handshake,
            "punch": self._punch,
            "rotate_key": self._rotate_key,
            "get_polo_score": self._get_polo_score,
            "update_polo_score": self._update_polo_score,
            "set_polo_score": self._set_polo_score,
            "list_nodes": self._list_nodes,
            "list_networks": self._list_networks,
            "create_network": self._create_network,
            "join_network": self._join_network,
            "leave_network": self._leave_network,
            "beacon_register": self._beacon_register,
            "beacon_list": self._beacon_list,
        }
        # Every mutation is audited (pilotnet.registry.audit), which also answers the audit admin messages.
        self.audit = audit if audit is not None else AuditLog()
        self._handlers.update(self.audit.handlers(self._require_admin))

    @property
    def message_types(self):
        return tuple(self._handlers)

    def handle(self, request, peer, now, *, over_tls=False):
        """The reply to one decoded request from ``peer`` = ``(host, port)``.

        ``over_tls`` tells that the request came over TLS, where a legacy
        signature cannot have been captured by an eavesdropper.  Every refusal
        comes back as an error reply; an unexpected exception is logged and
        answered ``internal error`` so one bad request never takes the
        connection, let alone the process, down with it.
        """
        kind = request.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        self._over_tls = over_tls
        try:
            if handler is None:
                shown = kind if isinstance(kind, str) else ""
                raise RequestError(f'unknown message type: "{shown}"')
            if self.read_only and kind not in STANDBY_READS:
                raise RequestError(STANDBY_REFUSAL)
            return self.audit.run(kind, handler, request, peer, now, self)
        except PilotError as error:
            return error_reply(error)
        except Exception:
            self.log.failure("registry: {kind} request failed", kind=kind)
            return error_reply(PilotError("internal error", code=INTERNAL))

    # -- shared checks -------------------------------------------------------

    def _node(self, node_id):
        node = self.directory.nodes.get(node_id)
        if node is None:
            raise _not_found(node_id)
        return node

    def _is_admin(self, request):
        token = request.get("admin_token")
        if not self.admin_token or not isinstance(token, str) or not token:
            return False
        return hmac.compare_digest(token.encode("utf-8"), self.admin_token.encode("utf-8"))

    def _require_admin(self, request):
        if not self.admin_token:
            raise RequestError("network creation is disabled (the registry has no admin token)")
        if not self._is_admin(request):
            raise RequestError("invalid admin token")

    def _authenticate(self, request, kind, values, signer_id, now):
        """The signing node, after checking its signature (fresh form, or legacy where allowed)."""
        node = self._node(signer_id)
        if kind in ADMIN_OVERRIDABLE and self._is_admin(request):
            return node
        if FRESH_FIELD in request:
            self._check_fresh(node.public_key, request, now)
        else:
            signature = request.get("signature")
            if not signature:
                raise RequestError("signature required for authenticated node")
            if not isinstance(signature, str):
                raise RequestError("signature verification failed")
            if not (self._over_tls or self.allow_legacy_signatures
                    or replay_harmless(kind, request)):
                raise RequestError(
                    f"{kind} refused: a signature without timestamp and nonce can be replayed "
                    "with other values, so it is accepted only over TLS (registry --tls, the "
                    "client pinning its fingerprint) or with --allow-legacy-signatures",
                    hint="pilotnet clients sign with timestamp and nonce; see docs/security.md")
            if not self._signature_ok(node, kind, values, signature):
                raise RequestError("signature verification failed")
        self._proven_at[node.id] = now
        return node

    def _check_fresh(self, public_key, request, now):
        """A fresh-form signature: in the time window, valid over every field, never seen before."""
        timestamp = fields.uint(request, "timestamp")
        nonce = fields.text(request, "nonce", max_length=MAX_NONCE_LENGTH)
        if not nonce:
            raise RequestError("invalid nonce: empty")
        # The clock check is free; the signature check costs ~100 µs: clock first.
        self.replays.check_timestamp(timestamp, now)
        if not fresh_signature_valid(public_key, request):
            raise RequestError("signature verification failed")
        self.replays.admit(public_key, nonce, timestamp, now)

    def _signature_ok(self, node, kind, values, signature):
        """Verify, remembering each node's last good heartbeat signature.

        A heartbeat's challenge never changes for a node, so its signature
        repeats; Ed25519 verification is deterministic, so the same key,
        challenge and signature that verified once verify again.  Skipping
        the repeat makes a heartbeat cost a comparison instead of ~100 µs.
        """
        if kind != "heartbeat":
            return signature_valid(node.public_key, kind, values, signature)
        verified = (node.public_key, values["listen_addr"], signature)
        if self._heartbeats_verified.get(node.id) == verified:
            return True
        if not signature_valid(node.public_key, kind, values, signature):
            return False
        self._heartbeats_verified[node.id] = verified
        return True

    def visible_to(self, target, requester_id):
        """May ``requester_id`` learn ``target``'s endpoint?  (reference §1.10)"""
        return (target.public or target.id == requester_id
                or self.directory.trust_pair(target.id, requester_id)
                or self.directory.share_network(target.id, requester_id))

    def _attach_hostname(self, node, hostname):
        """Register-time hostname: attached if valid and free, else reported, never fatal."""
        try:
            check_hostname(hostname)
            holder = self.directory.hostname_holder(hostname)
            if holder is not None and holder != node.id:
                raise RequestError(f'hostname "{hostname}" already in use')
            self.directory.set_hostname(node, hostname)
        except RequestError as error:
            return error.message
        return None

    # -- registration and liveness -------------------------------------------

    def _register(self, request, peer, now):
        if not request.get("public_key"):
            raise RequestError("registration requires public_key")
        public_key = _public_key(request, "public_key")
        listen_addr = fields.text(request, "listen_addr", max_length=262)
        owner = fields.text(request, "owner", max_length=256)
        hostname = fields.text(request, "hostname", max_length=256)
        lan_addrs = fields.strings(request, "lan_addrs", max_items=16, max_length=262)
        version = fields.text(request, "version", max_length=64)
        directory = self.directory
        host = peer[0]
        proven = self._register_signed(request, public_key, now)
        known_id = directory.key_index.get(public_key)
        if known_id is None and not self.register_limiter.allow(host, now):
            raise RequestError(f"rate limited: too many registrations from {host}")
        if known_id is not None and not proven:
            self._check_unsigned_reregistration(known_id, host, now)
        # A key nobody held before is proven by being first: nobody else knew it.
        proven = proven or known_id is None

        node = directory.nodes.get(known_id) if known_id is not None else None
        if known_id is None and owner and owner in directory.owner_index \
                and not self.allow_owner_recovery:
            # The owner string is no credential: the new key gets a new node
            # and the owner stays with the node that holds it.
            self.log.info("registry: owner {owner} already belongs to node {node_id}; "
                          "a new key registers as a new node", owner=owner,
                          node_id=directory.owner_index[owner])
            owner = ""
        if known_id is None and owner and owner in directory.owner_index:
            known_id = directory.owner_index[owner]
            node = directory.nodes.get(known_id)
            if node is not None:
                raise RequestError(
                    f"owner {owner} belongs to node {known_id}, which is online with another key",
                    hint="use rotate_key signed with the current key, or wait until the node is reaped",
                    code=ALREADY_EXISTS)
            self.log.info("registry: owner {owner} recovers node {node_id} with a new key",
                          owner=owner, node_id=known_id)
            # The lost key must not come back as a second key of the same node.
            for stale_key in [k for k, v in directory.key_index.items() if v == known_id]:
                directory.unindex_key(stale_key)
        if known_id is None:
            known_id = directory.allocate_node_id()
        if node is None:
            node = Node(id=known_id, public_key=public_key)
        if directory.key_index.get(public_key) != known_id:
            directory.index_key(public_key, known_id)
        if owner and not node.owner:
            node.owner = owner
            directory.index_owner(owner, known_id)
        node.real_addr = observed_endpoint(listen_addr, peer)
        node.lan_addrs = tuple(lan_addrs)
        node.version = version
        node.last_seen = now
        directory.save_node(node)
        self._registered_from[node.id] = host
        if proven:
            self._proven_at[node.id] = now

        reply = {
            "type": "register_ok", "node_id": node.id, "network_id": BACKBONE,
            "address": address_text(BACKBONE, node.id), "public_key": public_key,
            "observed_addr": node.real_addr, "protocol_version": PROTOCOL_VERSION,
            # The registry's clock, as heartbeat_ok has it: clients sign fresh requests on it.
            "time": int(now),
        }
        if hostname:
            hostname_error = self._attach_hostname(node, hostname)
            if hostname_error:
                reply["hostname_error"] = hostname_error
        if node.hostname:
            reply["hostname"] = node.hostname
        return reply

    def _register_signed(self, request, public_key, now):
        """Whether ``register`` proves possession of its key (a valid fresh-form signature).

        Go clients never sign ``register`` (the reference has no challenge
        for it): unsigned is allowed, and then limited by
        :meth:`_check_unsigned_reregistration`; a fresh signature that is
        there must be valid.
        """
        if FRESH_FIELD not in request:
            return False
        self._check_fresh(public_key, request, now)
        return True

    def _check_unsigned_reregistration(self, node_id, host, now):
        """An unsigned ``register`` of a known key may not take over a live node.

        Allowed when the node is offline (reaped, deregistered, or it has not
        proved its key for ``stale_after`` seconds: nothing live is moved), or
        when it comes from the source IP of the node's last registration (a
        Go daemon re-registering after failed heartbeats).  Refused otherwise:
        the public key is public, so an unsigned registration proves nothing.
        """
        if node_id not in self.directory.nodes:
            return
        proven_at = self._proven_at.get(node_id)
        if proven_at is None or now - proven_at > self.stale_after:
            return
        if self._registered_from.get(node_id) == host:
            return
        raise RequestError(
            f"register refused: node {node_id} is online; an unsigned re-registration of its key "
            "is accepted only from the address it registered from",
            hint="sign the registration (pilotnet daemons do), or wait until the node is stale")

    def _forget_node(self, node_id):
        self._heartbeats_verified.pop(node_id, None)
        self._proven_at.pop(node_id, None)
        self._registered_from.pop(node_id, None)

    def _heartbeat(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        listen_addr = fields.text(request, "listen_addr", max_length=262)
        node = self._authenticate(request, "heartbeat",
                                  {"node_id": node_id, "listen_addr": listen_addr}, node_id, now)
        if listen_addr:
            node.real_addr = observed_endpoint(listen_addr, peer)
            self.directory.save_node(node)
        self.directory.touch(node, now)
        return {"type": "heartbeat_ok", "time": int(now)}

    def reap(self, now):
        """Remove nodes silent for longer than ``stale_after``; returns their IDs.

        A reaped node keeps its key (same ID when it comes back), its
        non-backbone memberships, trust consents and inbox; its hostname is freed.
        """
        reaped = self.directory.stale_nodes(now, self.stale_after) if self.reaps_nodes else []
        for node_id in reaped:
            self.directory.remove_node(node_id)
            self._forget_node(node_id)
        self.audit.reaped(reaped, now)
        self.register_limiter.purge(now)
        self.replays.purge(now)
        self.polo_limiter.purge(now)
        for beacon_id in [b for b, (_, expires) in self.beacons.items() if expires <= now]:
            del self.beacons[beacon_id]
        if reaped:
            self.log.info("registry: reaped {count} stale nodes", count=len(reaped))
        return reaped

    def online_count(self, now):
        cutoff = now - self.offline_after
        return sum(1 for node in self.directory.nodes.values() if node.last_seen >= cutoff)

    def _deregister(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        if node_id not in self.directory.nodes:
            return {"type": "deregister_ok"}
        self._authenticate(request, "deregister", {"node_id": node_id}, node_id, now)
        self.directory.leave_all_networks(node_id)
        self.directory.remove_node(node_id)
        self._forget_node(node_id)
        return {"type": "deregister_ok"}

    def _rotate_key(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        node = self._node(node_id)
        if not isinstance(request.get("signature"), str) or not request["signature"]:
            raise RequestError("rotate_key requires a valid signature")
        new_key = _public_key(request, "new_public_key")
        try:
            self._authenticate(request, "rotate_key", {"node_id": node_id}, node_id, now)
        except RequestError as error:
            if error.message != "signature verification failed":
                raise
            raise RequestError("rotate_key requires a valid signature") from None
        holder = self.directory.key_index.get(new_key)
        if holder is not None and holder != node_id:
            raise RequestError(f"public key already registered to node {holder}",
                               code=ALREADY_EXISTS)
        self.directory.unindex_key(node.public_key)
        node.public_key = new_key
        self.directory.index_key(new_key, node_id)
        self.directory.save_node(node)
        return {"type": "rotate_key_ok", "node_id": node_id,
                "address": address_text(BACKBONE, node_id), "public_key": new_key}

    # -- reading the directory ------------------------------------------------

    def _lookup(self, request, peer, now):
        node = self._node(fields.uint(request, "node_id"))
        reply = {
            "type": "lookup_ok", "node_id": node.id, "address": address_text(BACKBONE, node.id),
            "networks": self.directory.networks_of(node.id), "public_key": node.public_key,
            "public": node.public, "polo_score": node.polo_score,
        }
        if node.hostname:
            reply["hostname"] = node.hostname
        if node.tags:
            reply["tags"] = list(node.tags)
        if node.task_exec:
            reply["task_exec"] = True
        if node.public and node.real_addr:
            reply["real_addr"] = node.real_addr
        if node.version:
            reply["version"] = node.version
        return reply

    def _resolve(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        requester_id = fields.uint(request, "requester_id")
        if requester_id not in self.directory.nodes:
            raise RequestError(f"resolve denied: requester node {requester_id} is not registered",
                               code=NOT_FOUND)
        self._authenticate(request, "resolve",
                           {"node_id": node_id, "requester_id": requester_id}, requester_id, now)
        target = self._node(node_id)
        if not self.visible_to(target, requester_id):
            raise RequestError(
                f"resolve denied: node {node_id} is private (establish mutual trust first)")
        reply = {"type": "resolve_ok", "node_id": node_id, "real_addr": target.real_addr,
                 "public_key": target.public_key}
        if target.lan_addrs:
            reply["lan_addrs"] = list(target.lan_addrs)
        return reply

    def _resolve_hostname(self, request, peer, now):
        hostname = fields.text(request, "hostname", max_length=256)
        if not hostname:
            raise RequestError("hostname required")
        requester_id = fields.uint(request, "requester_id", default=0)
        node_id = self.directory.hostname_holder(hostname)
        node = self.directory.nodes.get(node_id) if node_id is not None else None
        # A private node's name is as unknown to strangers as a name nobody holds.
        if node is None or not self.visible_to(node, requester_id):
            raise RequestError(f'hostname "{hostname}" not found', code=NOT_FOUND)
        return {"type": "resolve_hostname_ok", "node_id": node.id,
                "address": address_text(BACKBONE, node.id), "public": node.public,
                "hostname": node.hostname}

    def _list_nodes(self, request, peer, now):
        network_id = fields.uint(request, "network_id", fields.MAX_U16, default=0)
        directory = self.directory
        if network_id == BACKBONE:
            if not self._is_admin(request):
                raise RequestError("listing backbone nodes is not permitted "
                                   "(use lookup with a specific node_id)")
            members = sorted(directory.nodes)
        else:
            network = directory.networks.get(network_id)
            if network is None:
                raise RequestError(f"network {network_id}: network not found", code=NOT_FOUND)
            members = sorted(network.members)
        listed = []
        for node_id in members:
            entry = {"node_id": node_id, "address": address_text(network_id, node_id)}
            node = directory.nodes.get(node_id)
            if node is None:
                entry["offline"] = True
            else:
                entry.update(public=node.public, polo_score=node.polo_score)
                if node.hostname:
                    entry["hostname"] = node.hostname
                if node.tags:
                    entry["tags"] = list(node.tags)
                if node.task_exec:
                    entry["task_exec"] = True
                if node.public and node.real_addr:
                    entry["real_addr"] = node.real_addr
            listed.append(entry)
        return {"type": "list_nodes_ok", "network_id": network_id, "nodes": listed}

    # -- node settings -----------------------------------------------------------

    def _set_hostname(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        hostname = fields.text(request, "hostname", max_length=256)
        node = self._authenticate(request, "set_hostname", {"node_id": node_id}, node_id, now)
        try:
            check_hostname(hostname)
        except RequestError as error:
            raise RequestError(f"invalid hostname: {error.message}") from None
        self.directory.set_hostname(node, hostname)
        return {"type": "set_hostname_ok", "node_id": node_id, "hostname": hostname}

    def _set_tags(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        raw_tags = fields.strings(request, "tags", max_items=64, max_length=64)
        node = self._authenticate(request, "set_tags", {"node_id": node_id}, node_id, now)
        node.tags = tuple(normalize_tags(raw_tags))
        self.directory.save_node(node)
        return {"type": "set_tags_ok", "node_id": node_id, "tags": list(node.tags)}

    def _set_visibility(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        public = fields.flag(request, "public")
        node = self._authenticate(request, "set_visibility", {"node_id": node_id}, node_id, now)
        node.public = public
        self.directory.save_node(node)
        return {"type": "set_visibility_ok", "node_id": node_id,
                "visibility": "public" if public else "private"}

    def _set_task_exec(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        enabled = fields.flag(request, "enabled")
        node = self._authenticate(request, "set_task_exec", {"node_id": node_id}, node_id, now)
        node.task_exec = enabled
        self.directory.save_node(node)
        return {"type": "set_task_exec_ok", "node_id": node_id, "task_exec": enabled}

    # -- trust ------------------------------------------------------------------

    def _pair(self, request, kind, now):
        node_id = fields.uint(request, "node_id")
        peer_id = fields.uint(request, "peer_id")
        self._authenticate(request, kind, {"node_id": node_id, "peer_id": peer_id}, node_id, now)
        return node_id, peer_id

    def _report_trust(self, request, peer, now):
        node_id, peer_id = self._pair(request, "report_trust", now)
        if peer_id == node_id:
            raise RequestError("cannot report trust in yourself")
        self._node(peer_id)
        self.directory.consent(node_id, peer_id)
        return {"type": "report_trust_ok",
                "mutual": self.directory.trust_pair(node_id, peer_id)}

    def _revoke_trust(self, request, peer, now):
        node_id, peer_id = self._pair(request, "revoke_trust", now)
        directory = self.directory
        if (node_id, peer_id) not in directory.consents:
            raise RequestError(f"no trust pair between {node_id} and {peer_id}", code=NOT_FOUND)
        directory.withdraw(node_id, peer_id)
        return {"type": "revoke_trust_ok"}

    def _check_trust(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        peer_id = fields.uint(request, "peer_id")
        trusted = (self.directory.trust_pair(node_id, peer_id)
                   or self.directory.share_network(node_id, peer_id))
        return {"type": "check_trust_ok", "trusted": trusted}

    def _inbox_room(self, node_id, pending):
        if len(pending) >= MAX_INBOX:
            raise RequestError(f"handshake inbox full for node {node_id}")

    def _request_handshake(self, request, peer, now):
        from_id = fields.uint(request, "from_node_id")
        to_id = fields.uint(request, "to_node_id")
        justification = fields.text(request, "justification", max_length=MAX_JUSTIFICATION)
        self._authenticate(request, "request_handshake",
                           {"from_node_id": from_id, "to_node_id": to_id}, from_id, now)
        if to_id == from_id:
            raise RequestError("cannot request a handshake with yourself")
        self._node(to_id)
        pending = self.directory.pending_requests(to_id)
        self._inbox_room(to_id, pending)
        if any(item.from_node_id == from_id for item in pending):
            raise RequestError(f"handshake request already pending from node {from_id}",
                               code=ALREADY_EXISTS)
        self.directory.add_request(to_id, HandshakeRequest(from_id, justification, now))
        self.directory.consent(from_id, to_id)
        return {"type": "request_handshake_ok", "status": "delivered"}

    def _request_handshake_by_name(self, request, peer, now):
        """A request to whoever holds ``to_hostname``: how to ask a private node whose name is hidden from us.

        The reply is the same whether a node holds the name, its inbox is full
        or our request already waits there, so the name stays as unknown to a
        stranger as ``resolve_hostname`` keeps it; the requester learns the
        node's ID when the node approves (its answer names itself).
        """
        from_id = fields.uint(request, "from_node_id")
        hostname = fields.text(request, "to_hostname", max_length=256)
        justification = fields.text(request, "justification", max_length=MAX_JUSTIFICATION)
        self._authenticate(request, "request_handshake_by_name",
                           {"from_node_id": from_id, "to_hostname": hostname}, from_id, now)
        directory = self.directory
        to_id = directory.hostname_holder(hostname) if hostname else None
        if to_id is not None and to_id != from_id and to_id in directory.nodes:
            pending = directory.pending_requests(to_id)
            if len(pending) < MAX_INBOX and all(item.from_node_id != from_id for item in pending):
                directory.add_request(to_id, HandshakeRequest(from_id, justification, now))
                directory.consent(from_id, to_id)
        return {"type": "request_handshake_by_name_ok", "status": "delivered"}

    def _poll_handshakes(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        self._authenticate(request, "poll_handshakes", {"node_id": node_id}, node_id, now)
        pending, responses = self.directory.drain_inbox(node_id)
        nodes = self.directory.nodes
        listed = []
        for item in pending:
            entry = {"from_node_id": item.from_node_id, "justification": item.justification,
                     "timestamp": int(item.timestamp)}
            sender = nodes.get(item.from_node_id)
            if sender is not None:
                entry["public_key"] = sender.public_key
            listed.append(entry)
        return {"type": "poll_handshakes_ok", "requests": listed,
                "responses": [{"from_node_id": r.from_node_id, "accept": r.accept,
                               "timestamp": int(r.timestamp)} for r in responses]}

    def _respond_handshake(self, request, peer, now):
        node_id, peer_id = self._pair(request, "respond_handshake", now)
        accept = fields.flag(request, "accept")
        if peer_id == node_id:
            raise RequestError("cannot respond to a handshake with yourself")
        self._node(peer_id)
        self._inbox_room(peer_id, self.directory.handshake_responses.get(peer_id, []))
        if accept:
            self.directory.consent(node_id, peer_id)
        elif (node_id, peer_id) in self.directory.consents:
            self.directory.withdraw(node_id, peer_id)
        self.directory.add_response(peer_id, HandshakeResponse(node_id, accept, now))
        return {"type": "respond_handshake_ok", "accept": accept, "peer_id": peer_id}

    def _punch(self, request, peer, now):
        requester_id = fields.uint(request, "requester_id")
        node_a = fields.uint(request, "node_a")
        node_b = fields.uint(request, "node_b")
        if requester_id not in (node_a, node_b):
            raise RequestError("punch denied: requester must be participant")
        self._authenticate(request, "punch", {"node_a": node_a, "node_b": node_b}, requester_id,
                           now)
        a, b = self._node(node_a), self._node(node_b)
        other = b if requester_id == node_a else a
        if not self.visible_to(other, requester_id):
            raise RequestError(
                f"punch denied: node {other.id} is private (establish mutual trust first)")
        return {"type": "punch_ok", "node_a": node_a, "node_a_addr": a.real_addr,
                "node_b": node_b, "node_b_addr": b.real_addr}

    # -- polo score ---------------------------------------------------------------

    def _polo_reply(self, kind, node):
        return {"type": kind, "node_id": node.id, "address": address_text(BACKBONE, node.id),
                "polo_score": node.polo_score}

    def _get_polo_score(self, request, peer, now):
        return self._polo_reply("get_polo_score_ok", self._node(fields.uint(request, "node_id")))

    def _change_polo(self, request, peer, now, kind, compute):
        """Unauthenticated, as in the reference, so bounded, rate limited and logged."""
        node = self._node(fields.uint(request, "node_id"))
        value = compute(node)
        if not self.polo_limiter.allow(peer[0], now):
            raise RequestError(f"rate limited: too many polo score changes from {peer[0]}")
        old, node.polo_score = node.polo_score, max(-MAX_POLO, min(MAX_POLO, value))
        self.directory.save_node(node)
        self.log.info("registry: {kind} node {node_id} {old} -> {new} from {source}",
                      kind=kind, node_id=node.id, old=old, new=node.polo_score, source=peer[0])
        return self._polo_reply(f"{kind}_ok", node)

    def _update_polo_score(self, request, peer, now):
        delta = fields.integer(request, "delta", MAX_POLO)
        return self._change_polo(request, peer, now, "update_polo_score",
                                 lambda node: node.polo_score + delta)

    def _set_polo_score(self, request, peer, now):
        score = fields.integer(request, "polo_score", MAX_POLO)
        return self._change_polo(request, peer, now, "set_polo_score", lambda node: score)

    # -- networks -------------------------------------------------------------------

    def _network(self, network_id):
        network = self.directory.networks.get(network_id)
        if network is None:
            raise RequestError(f"network {network_id}: network not found", code=NOT_FOUND)
        return network

    def _list_networks(self, request, peer, now):
        directory = self.directory
        listed = [{"id": BACKBONE, "name": "backbone", "members": len(directory.nodes),
                   "join_rule": "open", "created": int(directory.started)}]
        for network in sorted(directory.networks.values(), key=lambda n: n.id):
            listed.append({"id": network.id, "name": network.name,
                           "members": len(network.members), "join_rule": network.join_rule,
                           "created": int(network.created)})
        return {"type": "list_networks_ok", "networks": listed}

    def _create_network(self, request, peer, now):
        self._require_admin(request)
        node_id = fields.uint(request, "node_id")
        name = fields.text(request, "name", max_length=256)
        join_rule = fields.text(request, "join_rule", default="open") or "open"
        token = fields.text(request, "token", max_length=256)
        self._node(node_id)
        check_network_name(name)
        if join_rule not in JOIN_RULES:
            raise RequestError(f'invalid join_rule "{join_rule}" (this registry supports '
                               f'{" and ".join(JOIN_RULES)})')
        if join_rule == "token" and not token:
            raise RequestError("token required for a network with join_rule token")
        if self.directory.network_by_name(name) is not None:
            raise RequestError(f'network name "{name}" already exists', code=ALREADY_EXISTS)
        network = Network(id=self.directory.allocate_network_id(), name=name,
                          join_rule=join_rule, token=token, members={node_id}, created=now)
        self.directory.save_network(network)
        return {"type": "create_network_ok", "network_id": network.id, "name": name,
                "join_rule": join_rule}

    def _membership(self, request, kind, now):
        node_id = fields.uint(request, "node_id")
        network_id = fields.uint(request, "network_id", fields.MAX_U16)
        self._authenticate(request, kind, {"node_id": node_id, "network_id": network_id},
                           node_id, now)
        return node_id, network_id

    def _join_network(self, request, peer, now):
        node_id, network_id = self._membership(request, "join_network", now)
        if network_id == BACKBONE:
            raise RequestError("cannot join the backbone network")
        network = self._network(network_id)
        if node_id in network.members:
            raise RequestError(f"node {node_id} is already a member of network {network_id}",
                               code=ALREADY_EXISTS)
        if network.join_rule == "token" and not self._is_admin(request):
            token = fields.text(request, "token", max_length=256)
            if not hmac.compare_digest(token.encode("utf-8"), network.token.encode("utf-8")):
                raise RequestError(f"invalid token for network {network_id}")
        network.members.add(node_id)
        self.directory.save_network(network)
        return {"type": "join_network_ok", "network_id": network_id,
                "address": address_text(network_id, node_id)}

    def _leave_network(self, request, peer, now):
        node_id, network_id = self._membership(request, "leave_network", now)
        if network_id == BACKBONE:
            raise RequestError("cannot leave the backbone network")
        network = self._network(network_id)
        if node_id not in network.members:
            raise RequestError(f"node {node_id} is not a member of network {network_id}",
                               code=NOT_FOUND)
        network.members.discard(node_id)
        self.directory.save_network(network)
        return {"type": "leave_network_ok", "network_id": network_id}

    # -- beacons ----------------------------------------------------------------------

    def _beacon_register(self, request, peer, now):
        beacon_id = fields.uint(request, "beacon_id")
        if beacon_id == 0:
            raise RequestError("beacon_id required")
        addr = fields.text(request, "addr", max_length=262)
        if _split_port(addr) is None:
            raise RequestError(f'invalid addr "{addr}": expected host:port')
        self.beacons[beacon_id] = (addr, now + BEACON_TTL)
        return {"type": "beacon_register_ok", "beacon_id": beacon_id}

    def _beacon_list(self, request, peer, now):
        beacons = [{"id": beacon_id, "addr": addr}
                   for beacon_id, (addr, expires) in sorted(self.beacons.items())
                   if expires > now]
        return {"type": "beacon_list_ok", "beacons": beacons}
