"""The tunnel: one UDP socket carrying every frame to and from every peer.

Outbound, :meth:`Tunnel.send` seals a packet for a peer (PILS) and writes it
to the peer's direct endpoint or, when the peer is reached through the relay,
to the beacon in a relay envelope.  Packets for a peer whose key exchange has
not finished wait in a small per-peer queue; with encryption on nothing is
ever sent in clear.

Inbound, :meth:`Tunnel.datagramReceived` demultiplexes beacon messages (first
byte below 0x10, accepted only from the beacon's address) and tunnel frames:

- PILA: the peer's X25519 key signed by its Ed25519 identity, checked against
  the key the registry holds for that node (:class:`IPeerKeys`); a new or
  changed key makes a new session and we answer with our own PILA;
- PILS: opened with the peer's session; the inner packet must claim the
  sender's own node as its source (the reference does not check this);
- PILT: accepted only when encryption is off (in clear anyone could forge it);
- PILK: answered with our PILA, so a peer that offers an unauthenticated key
  moves to the authenticated exchange;
- PILP: punches only open NAT mappings; nothing to do (a punch is followed
  by our PILA, which is what the peer can authenticate and answer).

A sealed frame from a node we hold no session for (we restarted, or our PILA
was lost) is answered with a PILA flagged "request", which is what makes both
sides re-key after either one restarts.  Unauthenticated frames cost work
(a signature check, a registry lookup, a reply), so before any of it each
source address spends a token (:class:`~pilotnet.daemon.source_limits.SourceLimits`),
and the tunnel is no reflector: our 138-byte PILA goes back to where a frame
came from only when that frame was at least as large, or came through the
beacon's relay; a smaller one (a keepalive after we restarted) has our key
offered at the endpoint the registry holds for its node (``on_unknown_session``).
Punch commands are budgeted too, and bound to our beacon: their source
address can be forged, so once the beacon has echoed our cookie (the random
bytes in our Discover's padding, see :mod:`pilotnet.wire.beacon`) only a
command carrying it makes us send our PILA to the address it names; one
without it (a forgery, or the answer to a Go node's unpadded request) gets no
more bytes of PILPs than it has, and one with another cookie nothing.

Paths follow authenticated ingress: a frame that opened correctly from a
direct address makes that address the peer's endpoint; a frame that arrived
through the relay moves the peer to the relay only if nothing came directly
recently, so one racing relayed frame does not demote a working direct path.
"""

import os
from collections import OrderedDict, deque

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import Interface

from pilotnet.crypto.tunnel import ReplayedFrame, TunnelSession, build_auth_key_offer, check_auth_key_offer
from pilotnet.daemon.source_limits import SourceLimits
from pilotnet.daemon.udp_batch import BatchSender, enlarge_buffers
from pilotnet.errors import CryptoError, DecodeError, PilotError
from pilotnet.interfaces import NO_EVENTS
from pilotnet.ratelimit import TokenBucket
from pilotnet.wire import beacon
from pilotnet.wire.hostport import join_host_port
from pilotnet.wire.packet import Packet
from pilotnet.wire.tunnel import (
    FLAG_REQUEST, FLAG_RESPONSE, MAGIC_AUTH_KEY, MAGIC_KEY, MAGIC_PLAINTEXT, MAGIC_PUNCH, MAGIC_SEALED,
    decode_auth_key_offer, decode_key_offer, plaintext_frame,
)

log = Logger()

# Packets waiting for a key exchange: per peer, and how many peers may wait.
QUEUE_PER_PEER = 64
MAX_WAITING_PEERS = 256
# How often we re-send our PILA to a peer that has not answered yet.
KEY_EXCHANGE_RETRY = 1.0
# Answers to "request" PILAs and recovery PILAs for unknown sessions, per node.
KEY_REPLY_INTERVAL = 2.0
# A relayed frame moves a peer to the relay only after this long without direct traffic.
DIRECT_PATH_GRACE = 5.0
# Concurrent registry key lookups triggered by inbound PILAs (a flood must not flood the registry).
MAX_KEY_LOOKUPS = 64
# Remembered rate-limit entries for nodes we have no peer state for.
MAX_RATE_ENTRIES = 4096
SOCKET_BUFFER = 8 * 1024 * 1024
#: Largest datagram we read: the UDP maximum, since a segment may be up to 65 535
#: bytes (Twisted reads 8192 unless told, which would truncate larger frames).
MAX_DATAGRAM = 65535
PUNCH_BURST = 3
# Punch commands obeyed per second (and at once): each sends PUNCH_BURST PILPs and a PILA.
PUNCH_RATE = 5.0
PUNCH_BUDGET = 10
# Refused key exchanges logged per second (and at once); the rest are counted and summed up.
REFUSAL_LOG_RATE = 1.0
REFUSAL_LOG_BURST = 5


class IPeerKeys(Interface):
    """Where the tunnel learns which Ed25519 key a node really has (the registry)."""

    def public_key(node):
        """Deferred firing with the node's 32-byte Ed25519 public key."""

    def forget(node):
        """Drop a cached key, so the next :meth:`public_key` asks again."""


class Peer:
    """What the tunnel knows about one remote node."""

    __slots__ = (
        "node", "endpoint", "via_relay", "session", "authenticated", "queue", "last_direct",
        "last_heard", "offer_sent_at", "frames_sent", "frames_received", "verified_key",
    )

    def __init__(self, node, endpoint=None):
        self.node = node
        self.endpoint = endpoint
        self.via_relay = False
        self.session = None
        self.authenticated = False
        self.queue = None
        self.last_direct = float("-inf")
        self.last_heard = float("-inf")
        self.offer_sent_at = float("-inf")
        self.frames_sent = 0
        self.frames_received = 0
        #: The Ed25519 key the PILA that made :attr:`session` was verified against (None without one).
        self.verified_key = None

    @property
    def path(self):
        return "relay" if self.via_relay else "direct"

    def describe(self):
        host_port = None
        if self.endpoint is not None:
            host, port = self.endpoint[:2]
            host_port = join_host_port(host, port)
        return {
            "node_id": self.node,
            "endpoint": host_port,
            "path": self.path,
            "encrypted": self.session is not None,
            "authenticated": self.authenticated,
            "frames_sent": self.frames_sent,
            "frames_received": self.frames_received,
        }


class TunnelCounters:
    __slots__ = (
        "pkts_sent", "pkts_recv", "bytes_sent", "bytes_recv", "auth_failures", "replays",
        "malformed", "no_session", "queue_drops", "send_errors", "plaintext_refused",
        "spoofed_source", "key_exchanges", "rate_limited", "forged_beacon",
    )

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}


class Tunnel(DatagramProtocol):
    """The daemon's UDP endpoint for frames and beacon messages.

    ``on_packet(packet, peer)`` receives every authenticated inbound packet;
    ``on_beacon(message)`` every beacon message that came from the beacon;
    ``on_unknown_session(node)`` is asked to offer our key to a node whose
    frame we could not open and must not answer where it came from (see above).
    The local node ID is set (:attr:`node_id`) once the registry assigned it:
    until then there is nothing we could sign a PILA for.
    """

    emitter = NO_EVENTS

    def __init__(self, *, identity, key_pair, peer_keys, clock, on_packet, on_beacon=None, encrypt=True,
                 limits=None, on_unknown_session=None):
        self.identity = identity
        self.key_pair = key_pair
        self.peer_keys = peer_keys
        self.clock = clock
        self.on_packet = on_packet
        self.on_beacon = on_beacon
        self.encrypt = encrypt
        self.node_id = None
        self.beacon_address = None
        #: Sent in our Discovers; our beacon echoes it in what it sends us (see the module's docstring).
        self.beacon_cookie = os.urandom(beacon.COOKIE_SIZE)
        #: The beacon has echoed our cookie: from now on what it sends us must carry it.
        self.beacon_binds_punches = False
        #: Told of each burst of reads (see :class:`~pilotnet.daemon.udp_batch.BurstPort`), or None.
        self.burst_listener = None
        self._batch = None
        self.counters = TunnelCounters()
        self._peers = {}
        self._waiting_peers = 0
        self._key_lookups = 0
        self._reply_times = OrderedDict()
        self._own_offers = {}
        self.limits = limits if limits is not None else SourceLimits()
        self.on_unknown_session = on_unknown_session
        self._punch_budget = TokenBucket(PUNCH_BUDGET, PUNCH_RATE)
        self._refusal_log = TokenBucket(REFUSAL_LOG_BURST, REFUSAL_LOG_RATE)
        self._refusals_unlogged = 0

    # -- setup -----------------------------------------------------------

    def startProtocol(self):
        handle = self.transport.getHandle()
        # The per-packet path writes straight to the socket: Twisted's write()
        # re-validates the address text on every call, which costs more than
        # the encryption.  A full buffer or an ICMP error surfaces as OSError.
        self._sendto = getattr(handle, "sendto", self.transport.write)
        self._batch = BatchSender(handle) if hasattr(handle, "sendmsg") else None
        enlarge_buffers(handle, SOCKET_BUFFER)

    def local_port(self):
        return self.transport.getHost().port

    # -- peers -------------------------------------------------------------

    def peer(self, node):
        return self._peers.get(node)

    def direct_endpoint(self, node):
        """Where frames for ``node`` go when they go straight to it; None if unknown or relayed."""
        peer = self._peers.get(node)
        if peer is None or peer.via_relay:
            return None
        return peer.endpoint

    def peers(self):
        return list(self._peers.values())

    def add_peer(self, node, endpoint, *, ask_back=False):
        """Learn (or refresh) a peer's direct endpoint and start the key exchange.

        ``ask_back``: the peer sealed a frame for a session we do not hold, so it
        believes it is keyed and would not offer its key again by itself; our
        offer asks it to answer with its own.
        """
        peer = self._peers.get(node)
        if peer is None:
            peer = self._peers[node] = Peer(node, endpoint)
        elif endpoint is not None and peer.endpoint is None:
            peer.endpoint = endpoint
        if self.encrypt and peer.session is None:
            self._offer_key(peer, flags=FLAG_REQUEST if ask_back else 0)
        return peer

    def use_relay(self, node):
        """Reach ``node`` through the beacon from now on (the direct path failed)."""
        peer = self._peers.get(node)
        if peer is not None and self.beacon_address is not None:
            if not peer.via_relay:
                self.emitter.emit("tunnel.relay_activated", peer_node_id=node)
            peer.via_relay = True
            if self.encrypt and peer.session is None:
                self._offer_key(peer, force=True)

    def probe_relay(self, node):
        """Offer our key to ``node`` through the beacon, asking for its own back the same way.

        Only an answer proves that the relay reaches the peer (a beacon relays to
        nodes it knows, and drops the rest); when it arrives, relayed, the peer
        moves to the relay by the ingress rule (see the module's docstring).
        """
        if self.node_id is not None and self.beacon_address is not None:
            self.counters.key_exchanges += 1
            self.send_to_address(beacon.relay_envelope(self.node_id, node, self._our_offer(FLAG_REQUEST)),
                                 self.beacon_address)

    def try_direct(self, node):
        """Go back to the direct endpoint (a probe will tell whether it works)."""
        peer = self._peers.get(node)
        if peer is not None and peer.endpoint is not None:
            peer.via_relay = False

    def verified_key(self, node):
        """The Ed25519 key that signed the key offer behind ``node``'s current session, or None.

        This, not whatever the registry's key cache holds now, is who sent the
        frames that session opens: the trust gate checks it.
        """
        peer = self._peers.get(node)
        if peer is None or peer.session is None:
            return None
        return peer.verified_key

    def drop_peer(self, node):
        """Forget a peer's session and path (trust revoked, or the peer is gone)."""
        peer = self._peers.pop(node, None)
        if peer is not None and peer.queue:
            self._waiting_peers -= 1

    # -- sending -------------------------------------------------------------

    def send(self, node, packet_bytes):
        """Send one marshalled packet to ``node`` (queued while its key exchange runs)."""
        peer = self._peers.get(node)
        if peer is None:
            peer = self._peers[node] = Peer(node)
        if not self.encrypt:
            self._transmit(peer, plaintext_frame(packet_bytes))
            return
        session = peer.session
        if session is None:
            self._enqueue(peer, packet_bytes)
            self._offer_key(peer)
            return
        try:
            frame = session.seal(packet_bytes)
        except CryptoError:
            # Counter exhausted: start over with a fresh exchange.
            peer.session = None
            self._enqueue(peer, packet_bytes)
            self._offer_key(peer, force=True)
            return
        self._transmit(peer, frame)

    def send_burst(self, node, packets):
        """Send one stream's burst of marshalled packets to ``node``: one system call where GSO allows."""
        peer = self._peers.get(node)
        if (len(packets) == 1 or self._batch is None or peer is None or peer.session is None
                or peer.via_relay or peer.endpoint is None or not self.encrypt):
            for packet_bytes in packets:
                self.send(node, packet_bytes)
            return
        seal = peer.session.seal
        try:
            frames = [seal(packet_bytes) for packet_bytes in packets]
        except CryptoError:
            for packet_bytes in packets:  # counter exhausted: send() starts the new exchange
                self.send(node, packet_bytes)
            return
        try:
            self._batch.send(frames, peer.endpoint)
        except OSError:
            self.counters.send_errors += 1
            return
        self._count_sent(peer, len(frames), sum(map(len, frames)))

    def _transmit(self, peer, frame):
        if peer.via_relay:
            destination = self.beacon_address
            frame = beacon.relay_envelope(self.node_id or 0, peer.node, frame)
        else:
            destination = peer.endpoint
        if destination is None:
            self.counters.send_errors += 1
            return
        try:
            self._sendto(frame, destination)
        except OSError:
            self.counters.send_errors += 1
            return
        self._count_sent(peer, 1, len(frame))

    def _count_sent(self, peer, frames, size):
        counters = self.counters
        counters.pkts_sent += frames
        counters.bytes_sent += size
        peer.frames_sent += frames

    def _enqueue(self, peer, packet_bytes):
        queue = peer.queue
        if queue is None:
            if self._waiting_peers >= MAX_WAITING_PEERS:
                self.counters.queue_drops += 1
                return
            queue = peer.queue = deque(maxlen=QUEUE_PER_PEER)
            self._waiting_peers += 1
        if len(queue) == QUEUE_PER_PEER:
            self.counters.queue_drops += 1
        queue.append(packet_bytes)

    def _flush(self, peer):
        queue = peer.queue
        if not queue:
            return
        peer.queue = None
        self._waiting_peers -= 1
        for packet_bytes in queue:
            self.send(peer.node, packet_bytes)

    def send_to_address(self, data, address):
        """Raw datagram to a real address (beacon messages, punches)."""
        try:
            self.transport.write(data, address)
        except OSError:
            self.counters.send_errors += 1

    def punch(self, address, *, punches=PUNCH_BURST, offer=True):
        """A burst of PILP frames toward ``address`` to open our NAT mapping for it, then our PILA.

        The PILA is what lets a punch that gets through be used: the peer
        authenticates it and learns the address it really came from (behind a
        symmetric NAT that is a port nobody could have predicted), so its
        replies, and the path, follow.  A PILP alone carries no identity, but
        it opens our NAT for the peer's own PILA.
        """
        for _ in range(punches):
            self.send_to_address(MAGIC_PUNCH, address)
        if offer and self.encrypt and self.node_id is not None:
            self.send_to_address(self._our_offer(0), address)

    def _obey_punch(self, command, size):
        """Punch where the beacon says, as far as we can tell the command is the beacon's."""
        host, port = command.endpoint
        if host in ("0.0.0.0", "::") or not port:
            return
        punches, offer = PUNCH_BURST, True
        if self.beacon_binds_punches and command.cookie != self.beacon_cookie:
            if command.cookie:
                self.counters.forged_beacon += 1
                return
            punches, offer = min(PUNCH_BURST, size // len(MAGIC_PUNCH)), False
        if self._punch_budget.take(1, self.clock.seconds()):
            self.punch((host, port), punches=punches, offer=offer)
        else:
            self.counters.rate_limited += 1

    def _from_our_beacon(self, cookie):
        """Does a discover reply carrying ``cookie`` come from the beacon we asked?"""
        if cookie == self.beacon_cookie:
            self.beacon_binds_punches = True
            return True
        if self.beacon_binds_punches:
            self.counters.forged_beacon += 1
            return False
        return True

    # -- key exchange ----------------------------------------------------------

    def _our_offer(self, flags):
        offer = self._own_offers.get(flags)
        if offer is None:
            offer = self._own_offers[flags] = build_auth_key_offer(
                self.identity, self.node_id, self.key_pair, flags=flags).encode()
        return offer

    def _offer_key(self, peer, *, force=False, flags=0):
        if self.node_id is None:
            return
        now = self.clock.seconds()
        if not force and now - peer.offer_sent_at < KEY_EXCHANGE_RETRY:
            return
        peer.offer_sent_at = now
        self.counters.key_exchanges += 1
        self._transmit(peer, self._our_offer(flags))

    def _reply_allowed(self, node):
        """At most one unsolicited key reply per node per interval (bounded memory)."""
        now = self.clock.seconds()
        last = self._reply_times.get(node)
        if last is not None and now - last < KEY_REPLY_INTERVAL:
            return False
        self._reply_times[node] = now
        self._reply_times.move_to_end(node)
        while len(self._reply_times) > MAX_RATE_ENTRIES:
            self._reply_times.popitem(last=False)
        return True

    def _answer_with_offer(self, node, address, via_relay, flags):
        """Send our PILA back the way the triggering frame came."""
        if self.node_id is None:
            return
        frame = self._our_offer(flags)
        if via_relay:
            if self.beacon_address is not None:
                self.send_to_address(beacon.relay_envelope(self.node_id, node, frame), self.beacon_address)
        else:
            self.send_to_address(frame, address)

    def _on_auth_offer(self, data, address, via_relay, relay_sender):
        try:
            offer = decode_auth_key_offer(data)
        except DecodeError:
            self.counters.malformed += 1
            return
        if relay_sender is not None and relay_sender != offer.node:
            self.counters.spoofed_source += 1
            return
        if offer.node == self.node_id or not self._work_allowed(address, relay_sender):
            return
        if self._key_lookups >= MAX_KEY_LOOKUPS:
            return
        self._key_lookups += 1
        lookup = self.peer_keys.public_key(offer.node)

        def retry_if_changed(registered):
            if registered != offer.ed25519_public:
                # The node may have rotated its key since we cached it: ask once more.
                self.peer_keys.forget(offer.node)
                return self.peer_keys.public_key(offer.node)
            return registered

        def finished(result):
            self._key_lookups -= 1
            return result

        lookup.addCallback(retry_if_changed)
        lookup.addBoth(finished)
        lookup.addCallback(self._accept_offer, offer, address, via_relay)
        lookup.addErrback(self._offer_refused, offer)

    def _offer_refused(self, failure, offer):
        self.counters.auth_failures += 1
        failure.trap(PilotError)
        if self._refusal_log.take(1, self.clock.seconds()) == 0:
            self._refusals_unlogged += 1
            return
        log.info("refused key exchange from node {node}: {reason} ({unlogged} more refusals not logged)",
                 node=offer.node, reason=failure.value.message, unlogged=self._refusals_unlogged)
        self._refusals_unlogged = 0

    def _work_allowed(self, address, relay_sender):
        """Spend the source's token for one unauthenticated frame's work; False (counted) if it has none.

        Relayed frames all come from the beacon's address, so their source is
        the sender node the beacon vouched for (by its Discover) instead.
        """
        source = address[0] if relay_sender is None else ("relay", relay_sender)
        if self.limits.allow(source, self.clock.seconds()):
            return True
        self.counters.rate_limited += 1
        return False

    def _answer_unknown(self, node, address, via_relay, relay_sender, size, flags):
        """Ask ``node``, whose frame we cannot use, to key with us, without becoming a reflector."""
        if self.node_id is None or node == self.node_id or not self._work_allowed(address, relay_sender):
            return
        if not self._reply_allowed(node):
            return
        if via_relay or size >= len(self._our_offer(flags)):
            self._answer_with_offer(node, address, via_relay, flags)
        elif self.on_unknown_session is not None:
            self.on_unknown_session(node)

    def _accept_offer(self, registered_key, offer, address, via_relay):
        check_auth_key_offer(offer, registered_key)
        peer = self._peers.get(offer.node)
        if peer is None:
            peer = self._peers[offer.node] = Peer(offer.node)
        was_relayed = peer.via_relay
        self._note_ingress(peer, address, via_relay)
        # A punched PILA moved a relayed peer to the direct path: we answer on it
        # (below), so the peer, still on the relay, sees the direct path work too.
        opened = was_relayed and not peer.via_relay
        if opened:
            log.info("direct path to node {node} opened", node=offer.node)
        peer.authenticated = True
        session = peer.session
        if session is None or session.peer_public_key != offer.x25519_public:
            peer.session = TunnelSession.with_peer(self.key_pair, self.node_id, offer.x25519_public)
            peer.verified_key = registered_key
            log.info("tunnel keyed with node {node} ({path})", node=offer.node, path=peer.path)
            self.emitter.emit("tunnel.established", peer_node_id=offer.node, authenticated=True,
                              relay=peer.via_relay, rekeyed=session is not None)
            self._answer_with_offer(offer.node, address, via_relay, FLAG_RESPONSE)
            self._flush(peer)
        elif (offer.flags & FLAG_REQUEST or opened) and self._reply_allowed(offer.node):
            self._answer_with_offer(offer.node, address, via_relay, FLAG_RESPONSE)

    # -- receiving ---------------------------------------------------------------

    def datagramReceived(self, data, address):
        """One datagram; returns the peer whose sealed frame it was, if that opened (see below)."""
        if not data:
            return None
        counters = self.counters
        counters.pkts_recv += 1
        counters.bytes_recv += len(data)
        if data[0] < beacon.BEACON_TYPE_LIMIT:
            self._beacon_datagram(data, address)
            return None
        return self._frame(data, address, False, None)

    def datagrams_received(self, datagrams, address):
        """A run of datagrams from one address, read at once (see :class:`~pilotnet.daemon.udp_batch.BurstPort`).

        A run is one peer's burst of sealed frames, a stream's segments: once
        one of them has opened, the next ones from the same node (its session
        unchanged) are opened without the per-datagram dispatch, peer lookup
        and path bookkeeping, which the first did for them all.
        """
        counters = self.counters
        peer = session = head = None
        for data in datagrams:
            try:
                if peer is not None and data.startswith(head) and peer.session is session \
                        and self._peers.get(peer.node) is peer:
                    counters.pkts_recv += 1
                    counters.bytes_recv += len(data)
                    packet = self._open_sealed(session, peer.node, data)
                    if packet is not None:
                        peer.frames_received += 1
                        self.on_packet(packet, peer)
                    continue
                peer = self.datagramReceived(data, address)
                if peer is not None:
                    session, head = peer.session, data[:8]
            except Exception:
                peer = None
                log.failure("datagram handler failed")

    def _frame(self, data, address, via_relay, relay_sender):
        magic = data[:4]
        if magic == MAGIC_SEALED:
            return self._on_sealed(data, address, via_relay, relay_sender)
        elif magic == MAGIC_AUTH_KEY:
            if self.encrypt:
                self._on_auth_offer(data, address, via_relay, relay_sender)
        elif magic == MAGIC_PLAINTEXT:
            self._on_plaintext(data, address, via_relay)
        elif magic == MAGIC_KEY:
            self._on_key_offer(data, address, via_relay, relay_sender)
        elif magic != MAGIC_PUNCH:
            self.counters.malformed += 1

    def _on_sealed(self, data, address, via_relay, relay_sender):
        if len(data) < 8:
            self.counters.malformed += 1
            return
        node = int.from_bytes(data[4:8], "big")
        peer = self._peers.get(node)
        session = peer.session if peer is not None else None
        if relay_sender is not None and relay_sender != node:
            self.counters.spoofed_source += 1
            return
        if session is None:
            self.counters.no_session += 1
            if self.encrypt:
                self._answer_unknown(node, address, via_relay, relay_sender, len(data), FLAG_REQUEST)
            return
        packet = self._open_sealed(session, node, data)
        if packet is None:
            return None
        self._note_ingress(peer, address, via_relay)
        peer.frames_received += 1
        self.on_packet(packet, peer)
        return None if via_relay else peer

    def _open_sealed(self, session, node, data):
        """The packet in ``node``'s sealed frame, or None (counted) if it does not open or lies about its source."""
        try:
            packet = Packet.decode(session.open(data), verify_checksum=False)  # the AEAD tag vouches for it
        except ReplayedFrame:
            self.counters.replays += 1
            self.emitter.emit("security.nonce_replay", peer_node_id=node, counter=int.from_bytes(data[12:20], "big"))
            return None
        except CryptoError:
            self.counters.auth_failures += 1
            return None
        except DecodeError:
            self.counters.malformed += 1
            return None
        if packet.src.node != node:
            self.counters.spoofed_source += 1
            return None
        return packet

    def _on_plaintext(self, data, address, via_relay):
        if self.encrypt:
            self.counters.plaintext_refused += 1
            return
        try:
            packet = Packet.decode(data, 4)
        except DecodeError:
            self.counters.malformed += 1
            return
        node = packet.src.node
        peer = self._peers.get(node)
        if peer is None:
            peer = self._peers[node] = Peer(node)
        self._note_ingress(peer, address, via_relay)
        peer.frames_received += 1
        self.on_packet(packet, peer)

    def _on_key_offer(self, data, address, via_relay, relay_sender):
        try:
            offer = decode_key_offer(data)
        except DecodeError:
            self.counters.malformed += 1
            return
        if relay_sender is not None and relay_sender != offer.node:
            self.counters.spoofed_source += 1
            return
        if self.encrypt:
            self._answer_unknown(offer.node, address, via_relay, relay_sender, len(data), 0)

    def _note_ingress(self, peer, address, via_relay):
        now = self.clock.seconds()
        peer.last_heard = now
        if via_relay:
            if not peer.via_relay and now - peer.last_direct > DIRECT_PATH_GRACE:
                peer.via_relay = True
                self.emitter.emit("tunnel.relay_activated", peer_node_id=peer.node)
        else:
            peer.last_direct = now
            if peer.endpoint != address:
                self.emitter.emit("tunnel.peer_added", peer_node_id=peer.node, endpoint=address)
            peer.endpoint = address
            peer.via_relay = False

    def _beacon_datagram(self, data, address):
        if address != self.beacon_address:
            # Only the beacon may tell us where to punch or hand us relayed frames.
            self.counters.malformed += 1
            return
        try:
            message = beacon.decode(data)
        except DecodeError:
            self.counters.malformed += 1
            return
        kind = type(message)
        if kind is beacon.RelayDeliver:
            if len(message.frame) >= 4:
                self._frame(message.frame, address, True, message.sender)
            return
        if kind is beacon.PunchCommand:
            self._obey_punch(message, len(data))
        elif kind is beacon.DiscoverReply and not self._from_our_beacon(message.cookie):
            return
        if self.on_beacon is not None:
            self.on_beacon(message)
