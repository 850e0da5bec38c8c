"""The registry: one request and ``now`` in, one reply out.

No sockets and no clock here: the Twisted shell (:mod:`pilotnet.registry.server`)
feeds decoded requests with the peer's address and the time, writes the reply,
and persists the entities the request changed before it does so.

:class:`Registry` holds the directory and the checks every concern shares
(signatures, freshness, the admin token, visibility) and composes the
concerns, each in its own module with its messages in the route table
(:mod:`pilotnet.registry.dispatch`): nodes, trust, polo, networks, beacons,
the audit log, identities and provisioning.

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

import hmac

from twisted.logger import Logger

from pilotnet.errors import PilotError, NOT_FOUND, INTERNAL
from pilotnet.registry import requests as fields
from pilotnet.registry.audit import AuditLog
from pilotnet.registry.beacons import BeaconHandlers
from pilotnet.registry.challenges import FRESH_FIELD, fresh_signature_valid, heartbeat_proof, signature_valid
from pilotnet.registry.directory import Directory
from pilotnet.registry.dispatch import RouteTable
from pilotnet.registry.freshness import MAX_NONCE_LENGTH, ReplayCache
from pilotnet.registry.identity import Identities
from pilotnet.registry.key_expiry import KeyExpiryHandlers
from pilotnet.registry.networks import NetworkHandlers
from pilotnet.registry.nodes import NodeHandlers
from pilotnet.registry.online import OnlineCount
from pilotnet.registry.polo import PoloHandlers
from pilotnet.registry.provisioning import Dispatch, Provisioning
from pilotnet.registry.requests import RequestError
from pilotnet.registry.trust import TrustHandlers

# Two heartbeats of a daemon at its default interval (60 s): a stopped node shows offline
# within two intervals; one lost heartbeat does not make a live one flap.
DEFAULT_OFFLINE_AFTER = 120.0
STANDBY_REFUSAL = "standby mode: write operations not accepted (use primary)"


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


class Registry:
    """The registry's shared checks, and the concerns that answer its messages."""

    log = Logger()

    def __init__(self, directory=None, *, admin_token="", stale_after=300.0,
                 offline_after=DEFAULT_OFFLINE_AFTER, register_limiter=None, polo_limiter=None,
                 replays=None, allow_legacy_signatures=False, allow_owner_recovery=False, audit=None):
        self.directory = directory if directory is not None else Directory()
        self.admin_token = admin_token
        # Silent for offline_after: shown offline; silent for stale_after: reaped.
        self.stale_after = stale_after
        self.offline_after = offline_after
        self._online = OnlineCount(self.directory)
        self.replays = replays if replays is not None else ReplayCache()
        # Compatibility options, both unsafe (docs/security.md says what they open).
        self.allow_legacy_signatures = allow_legacy_signatures
        self.allow_owner_recovery = allow_owner_recovery
        # Whether the request being handled came over TLS (set by handle()).
        self._over_tls = False
        # A standby (following a primary) answers only the routes marked on_standby.
        self.read_only = False
        # Of several registries on one database, only the lease holder reaps.
        self.reaps_nodes = True
        # Every mutation is audited (pilotnet.registry.audit), which also answers the audit admin messages.
        self.audit = audit if audit is not None else AuditLog()
        # The audit log's entries and settings are stored and replicated with the directory.
        self.directory.attach(self.audit)
        self.audit.shared_event_id = self.directory.allocate_event_id
        self.identities = Identities(self, allow_private=self.audit.allow_private_targets)
        self.nodes = NodeHandlers(self, register_limiter=register_limiter,
                                  stale_after=stale_after,
                                  allow_owner_recovery=allow_owner_recovery,
                                  external_id_of=self.identities.external_id)
        self.polo = PoloHandlers(self, limiter=polo_limiter)
        self._beacons = BeaconHandlers()
        self.provisioning = Provisioning(self, Dispatch(self), self.identities)
        self.routes = RouteTable()
        for concern in (self.nodes, TrustHandlers(self), self.polo, NetworkHandlers(self),
                        KeyExpiryHandlers(self), self._beacons, self.identities, self.provisioning):
            self.routes.add_all(concern.routes())
        self.routes.add_all(self.audit.routes(self.require_admin))
        self._standby_kinds = self.routes.standby_kinds()

    @property
    def message_types(self):
        return self.routes.kinds()

    @property
    def beacons(self):
        """Live beacon announcements: beacon ID -> (its address, when it expires)."""
        return self._beacons.beacons

    def handle(self, request, peer, now, *, over_tls=False):
        """The reply to one decoded request from ``peer`` = ``(host, port)``.

        ``over_tls`` tells that the request came over TLS, where a legacy
        signature cannot have been captured by an eavesdropper.  Every refusal
        comes back as an error reply; an unexpected exception is logged and
        answered ``internal error`` so one bad request never takes the
        connection, let alone the process, down with it.
        """
        kind = request.get("type")
        route = self.routes.get(kind)
        self._over_tls = over_tls
        try:
            if route is None:
                shown = kind if isinstance(kind, str) else ""
                raise RequestError(f'unknown message type: "{shown}"')
            if self.read_only and kind not in self._standby_kinds:
                raise RequestError(STANDBY_REFUSAL)
            return self.audit.run(kind, route.handler, request, peer, now, self)
        except PilotError as error:
            return error_reply(error)
        except Exception:
            self.log.failure("registry: {kind} request failed", kind=kind)
            return error_reply(PilotError("internal error", code=INTERNAL))

    # -- shared checks (the RegistryCore every concern uses) -------------------

    def node(self, node_id):
        node = self.directory.nodes.get(node_id)
        if node is None:
            raise RequestError(f"node {node_id}: node not found", code=NOT_FOUND)
        return node

    def is_admin(self, request):
        token = request.get("admin_token")
        if not self.admin_token or not isinstance(token, str) or not token:
            return False
        return hmac.compare_digest(token.encode("utf-8"), self.admin_token.encode("utf-8"))

    def require_admin(self, request):
        if not self.admin_token:
            raise RequestError("network creation is disabled (the registry has no admin token)")
        if not self.is_admin(request):
            raise RequestError("invalid admin token")

    def authenticate(self, request, kind, values, signer_id, now):
        """The signing node, after checking its signature (fresh form, or legacy where allowed)."""
        node = self.node(signer_id)
        route = self.routes.get(kind)
        if route is not None and route.admin_override and self.is_admin(request):
            return node
        if FRESH_FIELD in request:
            self.check_fresh(node.public_key, request, now)
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
        node.proven_at = self.directory.second(now)
        return node

    def check_fresh(self, public_key, request, now):
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
        """Verify, remembering a digest of each node's last good heartbeat signature on its record.

        A heartbeat's challenge never changes for a node, so its signature
        repeats; Ed25519 verification is deterministic, so the same key,
        challenge and signature that verified once verify again.  Skipping
        the repeat makes a heartbeat cost a BLAKE2b digest instead of ~100 µs.
        """
        if kind != "heartbeat":
            return signature_valid(node.public_key, kind, values, signature)
        proof = heartbeat_proof(node.public_key, values["listen_addr"], signature)
        if node.heartbeat_proof == proof:
            return True
        if not signature_valid(node.public_key, kind, values, signature):
            return False
        node.heartbeat_proof = proof
        return True

    def visible_to(self, target, requester_id):
        """May ``requester_id`` learn ``target``'s endpoint?  (reference §1.10)"""
        return (target.public or target.id == requester_id
                or self.directory.trust_pair(target.id, requester_id)
                or self.directory.share_network(target.id, requester_id))

    # -- housekeeping ---------------------------------------------------------------

    def reap(self, now, budget=None):
        """Remove nodes silent for longer than ``stale_after``; returns their IDs.

        A reaped node keeps its key (same ID when it comes back), its
        non-backbone memberships, trust consents and inbox; its hostname is freed.
        With a ``budget``, only that many nodes are looked at, the sweep going
        on at the next call (:meth:`Directory.stale_nodes`).
        """
        reaped = (self.directory.stale_nodes(now, self.stale_after, budget)
                  if self.reaps_nodes else [])
        for node_id in reaped:
            self.directory.remove_node(node_id)
        self.audit.reaped(reaped, now)
        self.nodes.register_limiter.purge(now)
        self.replays.purge(now)
        self.polo.limiter.purge(now)
        self._beacons.expire(now)
        if reaped:
            self.log.info("registry: reaped {count} stale nodes", count=len(reaped))
        return reaped

    def online_count(self, now):
        """Nodes heard from within ``offline_after``; a bounded part of the directory checked per call."""
        return self._online(now - self.offline_after)
