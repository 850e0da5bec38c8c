"""The trust flows: asking, approving, rejecting, revoking, and the gate on the data plane.

Reference controlplane §5.3, with these choices:

* **Direct first, the relay close behind.**  A request goes to the peer's
  port 444 when the message fits one Go segment, and through the registry
  (``request_handshake``) too if the direct one has not been delivered after
  :data:`RELAY_HEAD_START` seconds or failed; the first delivered wins and the
  other is cancelled (:mod:`pilotnet.daemon.racing`).  A private node's
  endpoint cannot be resolved before trust, so for a private peer the relay is
  the way, and it is not kept waiting for a direct dial to time out.
* **Asking is consenting; mutual means both consented.**  The requester's
  consent reaches the registry with its request (relayed) or right after it
  (direct), so the approver's consent completes the registry's trust pair and
  the registry says so: both sides then list the peer as mutual.
* **Relayed answers arrive in seconds.**  The registry inbox is polled after
  every heartbeat, every :data:`FAST_POLL_INTERVAL` seconds while a request of
  ours is unanswered (for at most :data:`FAST_POLL_WINDOW`), and before
  ``pending`` is listed.  An approval also goes direct: once both sides
  consented the registry lets the approver resolve the requester, and the
  requester's gate lets port-444 messages in from a node it asked.
* **Answers we did not ask for create nothing.**  An accept counts only from a
  node we asked (``outgoing``, which is persisted) or already trust.
* **Revoke is felt at once on both sides.**  Our streams with the peer are
  reset, the gate closes, a ``handshake_revoke`` goes over the still-open
  tunnel, then the tunnel is dropped and our consent withdrawn at the
  registry; a relayed refusal (``respond_handshake`` with accept false) tells
  the peer even if the direct message was lost, and a refusal from a peer we
  trust is taken as its revocation.
* **The gate** (:meth:`TrustManager.admit`): a private node takes SYNs and
  datagrams only from peers it trusts, from members of a network it shares
  with them (:mod:`pilotnet.daemon.networks`) on the ports that network
  allows, from the registry's ``check_trust`` (trust pair; cached briefly and
  asked in the background, so the peer's retransmitted SYN gets in), and
  port-444 messages from nodes it is waiting to hear from.  Everything else
  is dropped silently and counted.
* **Network trust ends with the membership.**  A member's trust (with or
  without a ``same_network`` handshake) is the network's: when the network
  view shows it, or us, gone from every network we shared, its trust entry,
  registry consent, cached verdict and streams go.
* **Trust is bound to keys, not node IDs.**  We trust the key a peer had when
  we approved it (kept in ``trust.json``).  A peer presenting another key
  under a trusted ID (its ID taken over at a registry, say) is a stranger: the
  gate refuses it and its handshake request waits for the operator.  Entries
  of older files without a key get the registry's current key at the next
  registration.

Every change is a structured log event (``trust_event``, ``peer``, ``reason``).
"""

import functools

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pilotnet.crypto.identity import b64encode
from pilotnet.daemon.asked_names import AskedNames
from pilotnet.daemon.handshake import GO_SEGMENT, PORT
from pilotnet.daemon.networks import NetworkView
from pilotnet.daemon.racing import race_with_head_start
from pilotnet.ratelimit import RateLimiter
from pilotnet.errors import ALREADY_EXISTS, INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, PilotError
from pilotnet.interfaces import NO_EVENTS
from pilotnet.registry.validation import check_hostname
from pilotnet.wire import handshake
from pilotnet.wire.packet import PROTO_DATAGRAM

log = Logger()

FAST_POLL_INTERVAL = 1.0
FAST_POLL_WINDOW = 120.0
REVOKE_DELIVERY_TIMEOUT = 3.0
# The direct request's head start before the relayed one is sent too (first delivered wins).
RELAY_HEAD_START = 1.0
VERDICT_TRUSTED_TTL = 30.0
VERDICT_UNTRUSTED_TTL = 5.0
MAX_VERDICTS = 4096


def _already_relayed(failure):
    """A request of ours already waiting in the peer's relay inbox still counts as sent."""
    failure.trap(PilotError)
    if failure.value.code != ALREADY_EXISTS:
        return failure
    return None


def _b64_key(key):
    return b64encode(key) if key else ""


def _answered_once_saved(command):
    """The operator's answer waits until the trust file holds what ``command`` changed."""
    @functools.wraps(command)
    def answering(self, *args, **kwargs):
        return command(self, *args, **kwargs).addCallback(
            lambda answer: self.state.flushed().addCallback(lambda _: answer))
    return answering


class TrustManager:
    """Trust for one node.

    Collaborators: ``state`` (:class:`pilotnet.daemon.trust.TrustState`),
    ``registry`` (``request``/``signed`` returning Deferreds of replies),
    ``courier`` (:class:`pilotnet.daemon.handshake.HandshakeCourier`),
    ``peer_keys`` (registry keys), ``tunnel_key(node)`` (the key the
    tunnel verified for a node's session, see
    :meth:`pilotnet.daemon.tunnel.Tunnel.verified_key`), ``abort_streams(node)``
    and ``drop_tunnel(node)``; ``settings`` has ``public``, ``encrypt`` and
    ``trust_auto_approve`` (read live: visibility can change at run time);
    ``networks`` (:class:`pilotnet.daemon.networks.Networks`, optional) holds
    the view of our networks.
    """

    emitter = NO_EVENTS

    def __init__(self, *, clock, state, identity, registry, courier, peer_keys, tunnel_key, settings,
                 abort_streams, drop_tunnel, networks=None):
        self.clock = clock
        self.state = state
        self.identity = identity
        self.registry = registry
        self.courier = courier
        self.peer_keys = peer_keys
        self.tunnel_key = tunnel_key
        self.settings = settings
        self.abort_streams = abort_streams
        self.drop_tunnel = drop_tunnel
        self.networks = networks
        self.node_id = None
        self.refused = {"syn": 0, "datagram": 0}
        #: SYNs and datagrams from members refused by their network's allowed ports.
        self.port_refused = {"syn": 0, "datagram": 0}
        self._port_refusal_log = RateLimiter(burst=1, window=60.0)
        self.unsolicited = 0
        self.key_mismatches = 0
        self._mismatch_log = RateLimiter(burst=1, window=60.0)
        self._verdicts = {}
        self._asking = set()
        self._polling = None
        self._poll_again = False
        self._fast_until = 0.0
        self._fast_timer = None
        self.asked_names = AskedNames(clock, self._holder_of)

    # -- helpers -------------------------------------------------------------------

    def _event(self, event, node, **fields):
        log.info("trust: {trust_event} node {peer}", trust_event=event, peer=node, **fields)
        self.emitter.emit(event, peer_node_id=node, **fields)

    def _now(self):
        return self.clock.seconds()

    def _check_peer(self, node):
        if self.node_id is None:
            raise PilotError("the daemon is not registered with the registry yet", code=NOT_RUNNING)
        if node == self.node_id:
            raise PilotError("cannot handshake with our own node", code=INVALID_ARGUMENT)

    def _message(self, kind, node, justification="", reason=""):
        message = handshake.build_message(kind, self.identity, self.node_id, node, int(self._now()),
                                          justification=justification, reason=reason)
        while reason and len(handshake.encode_message(message)) > GO_SEGMENT:
            reason = reason[:-max(1, (len(handshake.encode_message(message)) - GO_SEGMENT) // 6)]
            message = message._replace(reason=reason)
        return message

    def _send_quietly(self, node, kind, reason=""):
        """A best-effort direct message (the relay carries the same news); fires once it is settled."""
        sending = self.courier.send(node, self._message(kind, node, reason=reason))
        sending.addErrback(lambda failure: log.debug(
            "direct {kind} to node {peer} not delivered: {why}", kind=kind, peer=node,
            why=failure.getErrorMessage()))
        return sending

    @defer.inlineCallbacks
    def _registry(self, what, request):
        """A signed registry request whose failure is logged, not raised: the flows carry on."""
        try:
            reply = yield self.registry.signed(request)
        except PilotError as error:
            log.warn("{what} for node {peer} failed: {reason}", what=what, peer=request.get("peer_id"),
                     reason=error.message)
            return None
        return reply

    @defer.inlineCallbacks
    def _consent(self, node):
        """Our consent at the registry, and the relayed answer for a request that came that way.

        When the registry answers that both consents are in (``mutual``), the
        trust is marked mutual here too: the requester marks it so on our answer.
        """
        me = self.node_id
        reported, _ = yield defer.gatherResults([
            self._registry("report_trust", {"type": "report_trust", "node_id": me, "peer_id": node}),
            self._registry("respond_handshake",
                           {"type": "respond_handshake", "node_id": me, "peer_id": node, "accept": True}),
        ])
        peer = self.state.trusted.get(node)
        if reported and reported.get("mutual") and peer is not None and not peer.mutual:
            self.state.trust(node, peer.public_key, self._now(), mutual=True)

    def _withdraw(self, node, notify):
        me = self.node_id
        steps = [self._registry("revoke_trust", {"type": "revoke_trust", "node_id": me, "peer_id": node})]
        if notify:
            steps.append(self._registry(
                "respond_handshake", {"type": "respond_handshake", "node_id": me, "peer_id": node, "accept": False}))
        return defer.gatherResults(steps)

    @defer.inlineCallbacks
    def _key_of(self, node, offered=""):
        if offered:
            return offered
        try:
            key = yield self.peer_keys.public_key(node)
        except PilotError:
            return ""
        return _b64_key(key)

    def _trusted_with(self, node, key):
        """Is ``node`` trusted with the base64 ``key``?  (An entry without a key: by ID, until migrated.)"""
        peer = self.state.trusted.get(node)
        if peer is None:
            return False
        if peer.public_key and key and peer.public_key != key:
            self.key_mismatches += 1
            # Keyed by trusted node (a bounded table): one line a minute per node, not per packet.
            if self._mismatch_log.allow(node, self._now()):
                log.warn("trust: node {peer} presents another key than the one we trusted; "
                         "treated as untrusted", peer=node, trust_event="trust.key_mismatch")
            return False
        return True

    # -- operator commands ---------------------------------------------------------------

    @_answered_once_saved
    @defer.inlineCallbacks
    def request(self, node, justification=""):
        """Ask ``node`` for mutual trust; the reply's ``status`` says what really happened.

        ``sent`` (``path`` direct or relay: now ``node`` must approve),
        ``approved`` (``node`` had asked us first: asking back approved it) or
        ``trusted`` (nothing to do).  The registry's inbox is read first, so a
        request of theirs still waiting there counts as asking first.
        """
        self._check_peer(node)
        if not self.state.is_trusted(node) and node not in self.state.pending:
            yield self.poll()
        if self.state.is_trusted(node):
            return self._answer("trusted", node)
        if node in self.state.pending:
            return (yield self.approve(node))  # they asked first: asking back is consenting
        self.state.ask(node)
        message = self._message(handshake.REQUEST, node, justification=justification)
        try:
            path = yield self._deliver_request(node, message, justification)
        except PilotError as error:
            self.state.answered(node)
            raise PilotError(f"handshake request: {error.message}", code=error.code, hint=error.hint) from None
        if path == "direct":
            # Asking is consenting: the registry records ours now (the relay does so itself), so the
            # approver's consent completes the pair and both sides see the trust as mutual at once.
            yield self._registry("report_trust", {"type": "report_trust", "node_id": self.node_id, "peer_id": node})
        self._event("handshake.sent", node, path=path)
        self._poll_fast()
        return {**self._answer("sent", node), "path": path}

    def _deliver_request(self, node, message, justification):
        """``"direct"`` or ``"relay"``: port 444 first, the registry's relay after a head start, first wins.

        A private peer's port 444 cannot be reached before trust, and a dial
        that will not be answered takes seconds to give up: the relay does not
        wait for it.
        """
        def relay():
            relaying = self.registry.signed({"type": "request_handshake", "from_node_id": self.node_id,
                                             "to_node_id": node, "justification": justification})
            return relaying.addErrback(_already_relayed)

        if len(handshake.encode_message(message)) > GO_SEGMENT:
            return relay().addCallback(lambda _: "relay")
        racing = race_with_head_start(self.clock, lambda: self.courier.send(node, message), relay,
                                      RELAY_HEAD_START)
        return racing.addCallback(lambda won: ("direct", "relay")[won[0]])

    @defer.inlineCallbacks
    def request_by_name(self, hostname, justification=""):
        """Ask the node holding ``hostname`` for trust when the name does not resolve (a private node).

        The registry relays it without telling us whether or which node holds
        the name; the holder's answer names itself, and we take it as the
        answer to this request once the name resolves to that node
        (:mod:`pilotnet.daemon.asked_names`).  ``{"status": "sent", "hostname",
        "path": "relay"}``.
        """
        if self.node_id is None:
            raise PilotError("the daemon is not registered with the registry yet", code=NOT_RUNNING)
        if not hostname:
            raise PilotError("handshake: missing hostname", code=INVALID_ARGUMENT)
        check_hostname(hostname)
        try:
            yield self.registry.signed({"type": "request_handshake_by_name", "from_node_id": self.node_id,
                                        "to_hostname": hostname, "justification": justification})
        except PilotError as error:
            if "unknown message type" in error.message:
                raise PilotError(f"the registry cannot relay a handshake to the name {hostname!r}",
                                 code=error.code,
                                 hint='ask its operator for its node ID (pilotctl info) and run '
                                      'pilotctl handshake <node_id> "reason"') from None
            raise PilotError(f"handshake request: {error.message}", code=error.code, hint=error.hint) from None
        self.asked_names.add(hostname)
        log.info("trust: {trust_event} name {hostname}", trust_event="handshake.sent_by_name", hostname=hostname)
        self._poll_fast()
        return {"status": "sent", "hostname": hostname, "path": "relay"}

    def _holder_of(self, hostname):
        """The node ID ``hostname`` resolves to for us (fails while it is hidden from us)."""
        resolving = self.registry.request({"type": "resolve_hostname", "hostname": hostname,
                                           "requester_id": self.node_id})
        return resolving.addCallback(lambda reply: reply.get("node_id"))

    def _answer(self, status, node):
        answer = {"status": status, "node_id": node}
        peer = self.state.trusted.get(node)
        if peer is not None:
            answer["mutual"] = peer.mutual
        return answer

    @_answered_once_saved
    @defer.inlineCallbacks
    def approve(self, node):
        """Trust a node that asked us: ``{"status": "approved", "node_id", "mutual"}``.

        ``mutual`` is the registry's word that both consents are in (the
        requester's came with its request), the state the requester records
        when our answer reaches it; ``not_found`` when nothing is pending.
        """
        self._check_peer(node)
        if node not in self.state.pending and not self.state.is_trusted(node):
            yield self.poll()  # the request may still wait in the registry's relay inbox
        request = self.state.take_pending(node)
        if request is None:
            if self.state.is_trusted(node):
                return self._answer("approved", node)
            raise PilotError(f"no pending handshake request from node {node}", code=NOT_FOUND,
                             hint="requests waiting for approval are listed by: pilotctl pending")
        self.state.trust(node, request.public_key, self._now(), mutual=False)
        self._event("handshake.approved", node)
        yield self.state.flushed()  # on disk before the registry and the requester hear of it
        yield self._consent(node)
        # Wait (up to the courier's timeout) for the requester to read our answer: then it trusts
        # us by the time approve returns, as what a user does next assumes (the README's quickstart
        # does). A requester that cannot be reached learns it from the registry's relay instead.
        yield self._send_quietly(node, handshake.ACCEPT)
        return self._answer("approved", node)

    @_answered_once_saved
    @defer.inlineCallbacks
    def reject(self, node, reason=""):
        self._check_peer(node)
        request = self.state.take_pending(node)
        if request is not None:
            self._event("handshake.rejected", node, reason=reason)
            yield self._registry("respond_handshake", {"type": "respond_handshake", "node_id": self.node_id,
                                                       "peer_id": node, "accept": False})
            self._send_quietly(node, handshake.REJECT, reason=reason)
        return {"status": "rejected", "node_id": node}

    @_answered_once_saved
    @defer.inlineCallbacks
    def revoke(self, node):
        self._check_peer(node)
        if not self.state.is_trusted(node):
            raise PilotError(f"handshake revoke: node {node} was not trusted", code=NOT_FOUND)
        self._close_gate(node)
        self._event("trust.revoked", node)
        self.abort_streams(node)
        sending = self.courier.send(node, self._message(handshake.REVOKE, node), REVOKE_DELIVERY_TIMEOUT)
        delivered = yield sending.addCallbacks(lambda _: True, lambda _: False)
        self.drop_tunnel(node)
        yield self._withdraw(node, notify=True)
        return {"status": "revoked", "node_id": node, "notified": delivered}

    @defer.inlineCallbacks
    def pending(self):
        """The pending list, after fetching what the registry relayed since the last poll."""
        yield self.poll()
        return {"pending": self.state.pending_list()}

    def trusted(self):
        return {"trusted": self.state.trusted_list()}

    def _close_gate(self, node):
        self.state.forget(node)
        self._verdicts[node] = (False, self._now() + VERDICT_TRUSTED_TTL)

    # -- what peers send -------------------------------------------------------------------

    def received(self, message):
        """A verified port-444 message."""
        node = message.node_id
        key = _b64_key(message.public_key)
        if message.kind == handshake.REQUEST:
            return self._incoming_request(node, key, message.justification, "direct")
        if message.kind == handshake.ACCEPT:
            return self._accepted(node, key, "direct")
        if message.kind == handshake.REJECT:
            return self._refused(node, message.reason, "direct")
        return self._revoked_by_peer(node, "direct")

    @defer.inlineCallbacks
    def _incoming_request(self, node, key, justification, path):
        self._event("handshake.received", node, path=path, justification=justification)
        state = self.state
        key = yield self._key_of(node, key)
        if self._trusted_with(node, key):
            reason = "already_trusted"
        elif node in state.outgoing or (yield self.asked_names.answered_by(node)):
            reason = "mutual"
        else:
            network = yield self._shared_network(node)
            if network:
                reason = "same_network"
            elif self.settings.trust_auto_approve:
                reason = "auto_approve"
            else:
                if state.add_pending(node, key, justification, self._now()):
                    self._event("handshake.pending", node, path=path, justification=justification)
                else:
                    log.warn("pending handshake table full; request from node {peer} dropped", peer=node)
                return
        if reason != "already_trusted":
            key = yield self._key_of(node, key)
            state.trust(node, key, self._now(), mutual=reason == "mutual",
                        network=network if reason == "same_network" else 0)
            self._event("handshake.auto_approved", node, reason=reason, path=path)
            yield state.flushed()  # the requester trusts us on our ACCEPT: we must not forget it in a crash
        yield self._consent(node)
        self._send_quietly(node, handshake.ACCEPT)

    @defer.inlineCallbacks
    def _accepted(self, node, key, path):
        key = yield self._key_of(node, key)
        if (node not in self.state.outgoing and not self._trusted_with(node, key)
                and not (yield self.asked_names.answered_by(node))):
            self.unsolicited += 1
            log.warn("accept from node {peer} we did not ask; ignored", peer=node, trust_event="handshake.unsolicited")
            return
        if self.state.trust(node, key, self._now(), mutual=True):
            self._event("handshake.accepted", node, path=path)
            yield self._registry("report_trust", {"type": "report_trust", "node_id": self.node_id, "peer_id": node})

    def _refused(self, node, reason, path):
        if node in self.state.outgoing:
            self.state.answered(node)
            self._event("handshake.rejected_by_peer", node, reason=reason, path=path)
            return self._withdraw(node, notify=False)  # the consent our request gave
        if self.state.is_trusted(node) and path == "relay":
            return self._revoked_by_peer(node, path)
        return None

    @defer.inlineCallbacks
    def _revoked_by_peer(self, node, path):
        was_trusted = self.state.is_trusted(node)
        self._close_gate(node)
        if was_trusted:
            self._event("trust.revoked_by_peer", node, path=path)
            self.abort_streams(node)
            self.drop_tunnel(node)
            yield self._withdraw(node, notify=False)

    @defer.inlineCallbacks
    def _shared_network(self, node):
        """The lowest non-backbone network both nodes are in, else 0."""
        try:
            ours, theirs = yield defer.gatherResults([
                self.registry.request({"type": "lookup", "node_id": self.node_id}),
                self.registry.request({"type": "lookup", "node_id": node}),
            ], consumeErrors=True)
        except defer.FirstError:
            return 0
        shared = set(ours.get("networks") or ()) & set(theirs.get("networks") or ()) - {0}
        return min(shared) if shared else 0

    # -- the relay -----------------------------------------------------------------------

    def poll(self):
        """Fetch and handle what the registry relayed; concurrent calls share one poll."""
        if self.node_id is None:
            return defer.succeed(None)
        if self._polling is not None:
            self._poll_again = True
            waiting = defer.Deferred()
            self._polling.addBoth(lambda result: waiting.callback(None) or result)
            return waiting
        polling = self._polling = defer.Deferred()
        self._poll_once().addBoth(self._polled, polling)
        return polling

    def _polled(self, result, polling):
        if isinstance(result, Failure):
            log.failure("handling relayed handshakes failed", result)
        self._polling = None
        polling.callback(None)
        if self._poll_again:
            self._poll_again = False
            self.poll()

    @defer.inlineCallbacks
    def _poll_once(self):
        reply = yield self._registry("poll_handshakes", {"type": "poll_handshakes", "node_id": self.node_id})
        if not reply:
            return
        for entry in reply.get("requests") or ():
            try:
                yield self._incoming_request(int(entry["from_node_id"]), str(entry.get("public_key") or ""),
                                             str(entry.get("justification") or ""), "relay")
            except (KeyError, TypeError, ValueError):
                log.warn("malformed relayed handshake request ignored: {entry!r}", entry=entry)
        for entry in reply.get("responses") or ():
            try:
                node = int(entry["from_node_id"])
                accept = bool(entry["accept"])
            except (KeyError, TypeError, ValueError):
                log.warn("malformed relayed handshake response ignored: {entry!r}", entry=entry)
                continue
            if accept:
                yield self._accepted(node, "", "relay")
            else:
                yield self._refused(node, "", "relay")

    def _poll_fast(self):
        """Poll every second for a while: the answer to our request may come through the relay."""
        self._fast_until = self._now() + FAST_POLL_WINDOW
        if self._fast_timer is None or not self._fast_timer.active():
            self._fast_timer = self.clock.callLater(FAST_POLL_INTERVAL, self._fast_tick)

    def _fast_tick(self):
        self._fast_timer = None
        if not self._awaiting_answers() or self._now() >= self._fast_until:
            return
        self.poll().addBoth(lambda _: self._rearm())

    def _rearm(self):
        if self._fast_timer is None and self._awaiting_answers() and self._now() < self._fast_until:
            self._fast_timer = self.clock.callLater(FAST_POLL_INTERVAL, self._fast_tick)

    def _awaiting_answers(self):
        return bool(self.state.outgoing or self.asked_names)

    def stop(self):
        if self._fast_timer is not None and self._fast_timer.active():
            self._fast_timer.cancel()
        self._fast_timer = None

    # -- registration ---------------------------------------------------------------------

    def registered(self, node_id):
        """(Re-)registered: re-report every trusted peer (the registry may have lost our consents)."""
        self.node_id = node_id
        reports = [self._registry("report_trust", {"type": "report_trust", "node_id": node_id, "peer_id": node})
                   for node in sorted(self.state.trusted)]
        reports.extend(self._bind_key(peer) for peer in self.state.trusted.values() if not peer.public_key)
        if self.state.outgoing:
            self._poll_fast()
        return defer.gatherResults(reports)

    @defer.inlineCallbacks
    def _bind_key(self, peer):
        """Migrate an entry of an older trust.json: bind it to the key the registry holds now."""
        key = yield self._key_of(peer.node_id)
        if key and peer.node_id in self.state.trusted and not self.state.trusted[peer.node_id].public_key:
            self.state.trust(peer.node_id, key, self._now(), mutual=peer.mutual, network=peer.network)
            self._event("trust.key_bound", peer.node_id)

    # -- the gate ----------------------------------------------------------------------------

    def admit(self, packet):
        """May this SYN or datagram in?  Refusals are dropped silently and counted."""
        if self.settings.public:
            return True
        node = packet.src.node
        peer = self.state.trusted.get(node)
        if peer is not None and not peer.network:
            if self._gate_key_matches(node):
                return True
        elif packet.dst_port == PORT and node in self.state.outgoing:
            return True
        else:
            shared = self.networks.view.shared_with(node) if self.networks is not None else ()
            if shared:
                return self._network_admits(packet, shared)
            if self._registry_trusts(node):
                return True
        kind = "datagram" if packet.protocol == PROTO_DATAGRAM else "syn"
        self.refused[kind] += 1
        log.info("trust: {trust_event} node {peer} port {port}", trust_event=f"{kind}.rejected", peer=node,
                 port=packet.dst_port)
        self.emitter.emit(f"{kind}.rejected", src_node_id=node, src_addr=packet.src, dst_port=packet.dst_port)
        return False

    def _network_admits(self, packet, shared):
        """A member's SYN or datagram: in if any network we share with it allows the port."""
        port = packet.dst_port
        for network in shared:
            if network.allows(port):
                return True
        node = packet.src.node
        network = shared[0].network_id
        kind = "datagram" if packet.protocol == PROTO_DATAGRAM else "syn"
        self.port_refused[kind] += 1
        if self._port_refusal_log.allow(node, self._now()):
            log.info("trust: {trust_event} node {peer} port {port} network {network}",
                     trust_event=f"{kind}.port_rejected", peer=node, port=port, network=network)
        self.emitter.emit(f"{kind}.port_rejected", src_node_id=node, dst_port=port, network=network)
        return False

    def _gate_key_matches(self, node):
        """The key the tunnel verified for ``node``'s session is the one we trusted.

        Not the registry's current key: the cache may have been refreshed since
        the session was keyed (the ID taken over, then given back), and the
        frames come from whoever keyed the session.  With encryption off
        (debugging only) no frame is authenticated, so there is no key to check.
        """
        trusted_key = self.state.trusted[node].public_key
        if not trusted_key or not self.settings.encrypt:
            return True
        verified = self.tunnel_key(node)
        if verified is None:
            return False
        return self._trusted_with(node, _b64_key(verified))

    def _registry_trusts(self, node):
        verdict = self._verdicts.get(node)
        now = self._now()
        if verdict is not None and verdict[1] > now:
            return verdict[0]
        if node not in self._asking and self.node_id is not None:
            self._asking.add(node)
            asking = self.registry.request({"type": "check_trust", "node_id": self.node_id, "peer_id": node})
            asking.addCallbacks(lambda reply: bool(reply.get("trusted")), lambda failure: False)
            asking.addCallback(self._networks_first)
            asking.addCallback(self._remember_verdict, node)
        return False

    def _networks_first(self, trusted):
        """Before a "trusted" from the registry is believed, let the network view catch up.

        The registry counts shared networks as trust; if the view has not seen
        that network yet, the verdict alone would let a member past its
        network's allowed ports.  With the view refreshed, the gate sees the
        membership and checks the port first.
        """
        if not trusted or self.networks is None:
            return trusted
        return self.networks.refresh_soon().addBoth(lambda _: trusted)

    def network_changed(self, old: NetworkView, new: NetworkView) -> None:
        """The network view changed: end the trust that only the old one implied.

        Members gone from every network we share lose their cached verdict and
        their streams with us; a trust entry a ``same_network`` approval made
        goes too (with its registry consent and tunnel), or moves to another
        network we still share.  Directly trusted peers keep everything.
        """
        gone = old.members() - new.members() - {self.node_id}
        entries = {node: peer.network for node, peer in self.state.trusted.items() if peer.network}
        for node, network in entries.items():
            shared = [n.network_id for n in new.shared_with(node)]
            if shared and network not in shared:
                self.state.rehome(node, shared[0])
        lost_entries = [node for node in entries if not new.shared_with(node)]
        for node in gone | set(lost_entries):
            self._verdicts.pop(node, None)
            if node in self.state.trusted and node not in entries:
                continue  # trusted directly: the network never was its reason
            if node in entries:
                self.state.forget(node)
                self._event("trust.revoked", node, reason="network_left", network=entries[node])
            self.abort_streams(node)
            if node in entries:
                self.drop_tunnel(node)
                # The same_network approval gave our consent at the registry; it goes with the membership.
                self._withdraw(node, notify=False)

    def _remember_verdict(self, trusted, node):
        self._asking.discard(node)
        verdicts = self._verdicts
        if len(verdicts) >= MAX_VERDICTS:
            now = self._now()
            for key in [k for k, (_, expiry) in verdicts.items() if expiry <= now]:
                del verdicts[key]
            if len(verdicts) >= MAX_VERDICTS:
                verdicts.clear()
        current = verdicts.get(node)
        if current is not None and current[0] is False and current[1] > self._now():
            return  # we just revoked: the registry may not know yet
        ttl = VERDICT_TRUSTED_TTL if trusted else VERDICT_UNTRUSTED_TTL
        verdicts[node] = (trusted, self._now() + ttl)

    # -- observation --------------------------------------------------------------------------

    def describe(self):
        return {"trusted": len(self.state.trusted), "pending": len(self.state.pending),
                "outgoing": len(self.state.outgoing), "refused_syns": self.refused["syn"],
                "refused_datagrams": self.refused["datagram"],
                "port_refused_syns": self.port_refused["syn"],
                "port_refused_datagrams": self.port_refused["datagram"], "unsolicited_accepts": self.unsolicited,
                "key_mismatches": self.key_mismatches}
