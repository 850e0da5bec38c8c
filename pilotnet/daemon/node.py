"""The node: everything a pilot daemon runs, composed as one Twisted service.

Start-up order matters and is the reference's: open the tunnel socket, ask the
beacon which endpoint it sees, register that endpoint and our Ed25519 key with
the registry (which assigns or returns our node ID), then keep all of it fresh:
heartbeats and re-registration (:mod:`pilotnet.daemon.registration`, which
re-applies hostname, visibility and tags here), beacon keepalives that hold our
NAT mapping open, and keepalive pings to peers.  The control socket opens once
the first registration attempt has finished, so a client that can talk to the
daemon finds it registered (or learns why not).

This module composes the parts and demultiplexes the packets addressed to the
node; the relay/direct policy is :mod:`pilotnet.daemon.path_manager`'s, and
what clients of the control socket may ask is :mod:`pilotnet.daemon.facade`'s.
Every timer runs on the reactor given to :class:`NodeService`.
"""

import os

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer, error as internet_error
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet import __version__
from pilotnet.crypto.identity import Identity
from pilotnet.crypto.tunnel import TunnelKeyPair
from pilotnet.daemon.beacon_link import BeaconLink
from pilotnet.daemon.broadcast import Broadcaster
from pilotnet.daemon.control import ControlFactory, prepare_socket_path
from pilotnet.daemon.echo import EchoService
from pilotnet.daemon.facade import ControlFacade
from pilotnet.daemon.handshake import HandshakeCourier, HandshakePort, Verifier
from pilotnet.daemon.in_flight import InFlight
from pilotnet.daemon.managed import ManagedNetworks
from pilotnet.daemon.networks import Networks
from pilotnet.daemon.path_manager import DIRECT_RETRY, PathManager
from pilotnet.daemon.heap import CHECK_INTERVAL as HEAP_CHECK_INTERVAL, HeapTrim
from pilotnet.daemon.paths import SegmentSizes
from pilotnet.daemon.reachability import DialWatch, IReachabilityProbe, RegistryView
from pilotnet.daemon.registration import Registration
from pilotnet.daemon.registry_link import INBOUND_LOOKUP_RATE, RegistryKeys, RegistryLink, Resolver
from pilotnet.daemon.source_limits import PER_SOURCE_RATE, TOTAL_RATE, SourceLimits
from pilotnet.daemon.streams import Streams
from pilotnet.daemon.trust import FILE_NAME as TRUST_FILE, TrustState
from pilotnet.daemon.trust_manager import TrustManager
from pilotnet.daemon.tunnel import MAX_DATAGRAM, Tunnel
from pilotnet.daemon.udp_batch import BurstPort
from pilotnet.errors import INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, NOT_TRUSTED, TIMEOUT, PilotError
from pilotnet.ratelimit import TokenBucket
from pilotnet.services.dataexchange import DataExchangeLimits, DataExchangeService
from pilotnet.services.eventstream import EventBroker, EventStreamService
from pilotnet.services.nameserver import NameserverService
from pilotnet.services.federation import Federation
from pilotnet.services.storage import ByteBudget, FileWriter
from pilotnet.services.tasks import TaskService
from pilotnet.transport.config import StreamConfig
from pilotnet.wire.address import EPHEMERAL_PORT_MIN, MAX_PORT, PORT_ECHO, Addr
from pilotnet.wire.hostport import join_host_port, split_host_port
from pilotnet.wire.packet import FLAG_ACK, PROTO_CONTROL, PROTO_DATAGRAM, PROTO_STREAM, Packet
from pilotnet.webhooks.emitter import SECRET_FILE as WEBHOOK_SECRET_FILE, WebhookEmitter

log = Logger()

BEACON_KEEPALIVE = 25.0
PEER_KEEPALIVE = 25.0
# Event subscriptions at trusted peers are reconciled this often (and on every change).
FEDERATION_REFRESH = 15.0
TASK_HOUSEKEEPING = 10.0
NAMESERVER_REAP = 60.0
# A peer we heard nothing from for this long (despite keepalive pings) is re-resolved before use.
PEER_SILENCE = 2.5 * PEER_KEEPALIVE
# ... and for this long (three unanswered keepalive rounds, no key exchange tried since), its
# tunnel is dropped: `pilotctl peers` lists live tunnels only; the next use resolves it afresh.
PEER_DEAD = 3 * PEER_KEEPALIVE
# Bytes a stream holds for its client: the window it advertises (1,024 slots of 1 KiB segments,
# twice the engine's default and the reference's 512).  A read burst (up to 256 KiB) reaches the
# client at its end, so until then the window shrinks by the burst: with 512 slots a burst took
# half of it, and the sender stalled waiting for room.
RECEIVE_BUFFER = 1024 * 1024
# Out-of-order segments a stream keeps: every slot of that window, so one loss does not make the
# receiver drop (and the sender resend) what arrives behind it.  The bytes stay bounded by the window.
MAX_OUT_OF_ORDER = RECEIVE_BUFFER // 1024


def _unresolved(node, error):
    """The registry would not give ``node``'s endpoint: say why, with a next step that can work."""
    message = f"cannot resolve node {node}: {error.message}"
    if error.code == NOT_FOUND:
        return PilotError(message, code=NOT_FOUND, hint="check the node ID or address: no node holds it")
    if "is private" in error.message:  # the registry's visibility gate (the reference's wording)
        return PilotError(message, code=NOT_TRUSTED,
                          hint=f'it is private: ask it for trust with pilotctl handshake {node} "reason"')
    return PilotError(message, code=error.code, hint=error.hint)


@implementer(IReachabilityProbe)
class NodeProbes:
    """What a :class:`DialWatch` asks of the node, shared by all its dials.

    The dials of a burst to one peer all probe it at once: one probe and one
    registry question per peer at a time answer them all (see
    :mod:`pilotnet.daemon.in_flight`).
    """

    def __init__(self, node):
        self._node = node
        self._probing = InFlight()
        self._viewing = InFlight()

    def last_heard(self, node):
        peer = self._node.tunnel.peer(node)
        return float("-inf") if peer is None else peer.last_heard

    def probe(self, node, silent):
        self._probing.call(node, lambda: self._node.paths.dial_unanswered(node, silent))

    def registry_view(self, node):
        return self._viewing.call(node, lambda: self._node._registry_view(node))


class NodeService(service.MultiService):
    """The composition root: builds the node's parts, starts them in order, routes packets to them."""

    def __init__(self, config, reactor):
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.started_at = None
        self.address = None
        self.registered = defer.Deferred()
        self.tags = []
        self._registered_endpoint = None
        self._next_datagram_port = EPHEMERAL_PORT_MIN
        self._udp_port = None
        self._control_port = None
        self._dial_probes = NodeProbes(self)

        config.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.identity = Identity.load_or_create(config.identity_path)
        self.key_pair = TunnelKeyPair.generate()
        self.webhooks = WebhookEmitter(reactor, config.home / WEBHOOK_SECRET_FILE, lambda: self.node_id,
                                       allow_private=config.webhook_allow_private)
        if config.webhook:
            self.webhooks.set_url(config.webhook)

        self.registry = RegistryLink(reactor, config.registry, self.identity,
                                     config.registry_fingerprint)
        self.registry.setServiceParent(self)
        self.registration = Registration(reactor, config.keepalive, register=self._register,
                                         registered=self._registered, heartbeat=self._heartbeat,
                                         alive=self._alive)
        self.registration.setServiceParent(self)
        self.resolver = Resolver(self.registry, reactor, public_host=lambda: self.beacon.public_host())
        #: Registry requests that frames from the network cause (key lookups, re-keying resolves).
        self.inbound_lookups = TokenBucket(INBOUND_LOOKUP_RATE, INBOUND_LOOKUP_RATE)
        self.peer_keys = RegistryKeys(self.registry, reactor, budget=self.inbound_lookups)
        limits = SourceLimits(per_source_rate=config.handshake_rate_per_source or PER_SOURCE_RATE,
                              total_rate=config.handshake_rate or TOTAL_RATE)
        self.tunnel = Tunnel(
            identity=self.identity, key_pair=self.key_pair, peer_keys=self.peer_keys,
            clock=reactor, on_packet=self._packet_received, encrypt=config.encrypt,
            limits=limits, on_unknown_session=self._offer_key_at_registered_endpoint,
        )
        self.beacon = BeaconLink(self.tunnel, reactor)
        self.paths = PathManager(tunnel=self.tunnel, resolver=self.resolver, beacon=self.beacon, clock=reactor,
                                 ping=self._send_ping)
        stream_config = StreamConfig(mss=config.mss, idle_timeout=config.idle_timeout or None,
                                     receive_buffer=RECEIVE_BUFFER, max_out_of_order=MAX_OUT_OF_ORDER,
                                     keepalive_interval=config.keepalive or None,
                                     close_timeout=config.close_timeout or StreamConfig.close_timeout)
        self.segment_sizes = SegmentSizes(stream_config, config.local_mss, self.tunnel.direct_endpoint)
        self.streams = Streams(
            clock=reactor, transmit=self._transmit, transmit_burst=self._transmit_burst, config=stream_config,
            config_for=self.segment_sizes.config_for,
            max_per_port=config.max_conns_per_port, max_connections=config.max_conns_total,
            syn_rate=config.syn_rate_limit, on_relay_hint=self.paths.direct_failed,
        )
        self.tunnel.burst_listener = self.streams
        self.heap = HeapTrim(lambda: self.streams.bytes_moved)
        for interval, job in ((BEACON_KEEPALIVE, self.beacon.keepalive), (PEER_KEEPALIVE, self._ping_peers),
                              (DIRECT_RETRY, self.paths.retry_direct), (HEAP_CHECK_INTERVAL, self.heap.check)):
            self._every(interval, job)
        if config.echo:
            EchoService(self.streams, PORT_ECHO, reactor)
        self.networks = Networks(clock=reactor, registry=self.registry, node_id=lambda: self.node_id)
        self._every(config.network_sync, self._refresh_networks)
        # The thread for the node's file writes (trust, managed networks, the services' files); it
        # stops after the parts added later, so what they write while stopping is written too.
        self.files = FileWriter(reactor)
        self.files.setServiceParent(self)
        self.trust = TrustManager(
            clock=reactor, state=TrustState.load(config.identity_path.parent / TRUST_FILE, self.files),
            identity=self.identity, registry=self.registry,
            courier=HandshakeCourier(self.dial, self.streams, reactor), peer_keys=self.peer_keys,
            tunnel_key=self.tunnel.verified_key,
            settings=config, abort_streams=self.streams.abort_peer, drop_tunnel=self._drop_tunnel,
            networks=self.networks,
        )
        self.handshakes = Verifier(reactor, self.peer_keys, lambda: self.node_id)
        HandshakePort(self.streams, reactor, self.handshakes, self.trust.received)
        self.managed = ManagedNetworks(
            reactor, self.registry, config.home, own_id=lambda: self.node_id,
            link=lambda node, network: self.trust.request(node, f"managed network {network}"),
            unlink=self.trust.revoke, emit=self.webhooks.emit,
            shared_with=lambda node: self.networks.view.shared_with(node), writer=self.files)
        self.managed.setServiceParent(self)
        self.streams.admit = self.managed.gate(self.trust.admit)
        self.networks.on_change = self._networks_changed
        self.broadcasts = Broadcaster(clock=reactor, registry=self.registry, node_id=lambda: self.node_id,
                                      source_port=self._datagram_port, send_copy=self.send_datagram_from)
        self._start_services(config, reactor)
        for part in (self.tunnel, self.streams, self.trust, self.networks, *self._services):
            part.emitter = self.webhooks
        #: What the control socket's clients may ask of this node.
        self.control = ControlFacade(self)

    def _every(self, interval, job):
        """Run ``job`` every ``interval`` seconds on the node's reactor while the node runs."""
        timer = TimerService(interval, job)
        timer.clock = self.reactor
        timer.setServiceParent(self)

    def _start_services(self, config, reactor):
        """The built-in services on ports 53 and 1001-1003 (echo is started above, before trust)."""
        self.events = EventBroker()
        self._services = []
        writer = self.files
        budget = ByteBudget(config.inflight_max_bytes)
        if config.dataexchange:
            limits = DataExchangeLimits(config.message_max_bytes, config.received_max_bytes,
                                        config.received_max_files, config.inbox_max_bytes, config.inbox_max_messages)
            self._services.append(DataExchangeService(self.streams, config.home, reactor, limits=limits,
                                                      budget=budget, writer=writer))
        if config.eventstream:
            self._services.append(EventStreamService(self.streams, self.events))
            self.federation = Federation(
                self.events, self.streams,
                dial=lambda node, port, owner: self.dial(Addr(0, node), port, owner),
                peers=lambda: list(self.trust.state.trusted))
            self._every(FEDERATION_REFRESH, self.federation.refresh)
        if config.tasksubmit:
            self.tasks = TaskService(self.streams, config.home, reactor, polo_score=self.polo_score,
                                     adjust_polo=self.adjust_polo, local_node=lambda: self.node_id,
                                     max_queued=config.task_queue_max, budget=budget, writer=writer)
            self._every(TASK_HOUSEKEEPING, self.tasks.housekeeping)
        if config.nameserver:
            self.nameserver = NameserverService(self.streams, reactor)
            self._every(NAMESERVER_REAP, self.nameserver.housekeeping)

    @property
    def node_id(self):
        """Our node ID once the registry assigned it; None before."""
        return self.registration.node_id

    @property
    def listening(self):
        """Whether the tunnel's UDP socket is open."""
        return self._udp_port is not None

    # -- lifecycle -------------------------------------------------------------

    def startService(self):
        self.started_at = self.reactor.seconds()
        host, port = split_host_port(self.config.listen, what="--listen address", allow_empty_host=True,
                                     allow_port_zero=True)
        self._udp_port = BurstPort(port, self.tunnel, interface=host, maxPacketSize=MAX_DATAGRAM,
                                    reactor=self.reactor)
        self._udp_port.startListening()
        log.info("tunnel listening on UDP {host}:{port}", host=host, port=self.tunnel.local_port())
        super().startService()
        self._bring_up().addErrback(lambda f: log.failure("start-up failed", f))

    @defer.inlineCallbacks
    def _bring_up(self):
        yield self._locate_beacon()
        yield self.registration.start()
        yield self._open_control_socket()

    @defer.inlineCallbacks
    def _locate_beacon(self):
        if not self.config.beacon:
            return
        host, port = split_host_port(self.config.beacon, what="--beacon address")
        try:
            address = yield self.reactor.resolve(host)
        except internet_error.DNSLookupError:
            log.warn("cannot resolve beacon host {host}; running without a beacon", host=host)
            return
        self.tunnel.beacon_address = (address, port)

    @defer.inlineCallbacks
    def _register(self):
        """Send our registration (see :class:`Registration`); the node ID the registry answers."""
        listen_addr = self.config.endpoint
        if not listen_addr:
            observed = yield self.beacon.discover()
            if observed is not None:
                listen_addr = str(observed)
            else:
                listen_addr = join_host_port("0.0.0.0", self.tunnel.local_port())
        request = {"type": "register", "public_key": self.identity.public_key_b64,
                   "listen_addr": listen_addr, "version": f"pilotnet/{__version__}"}
        if self.config.owner:
            request["owner"] = self.config.owner
        if self.config.hostname:
            request["hostname"] = self.config.hostname
        if self.config.identity_token:
            request["identity_token"] = self.config.identity_token
        # Peers behind our NAT reach us on a LAN address (see Resolver), unless the
        # operator fixed the endpoint: then that is the one way in, as configured.
        lan_addrs = [] if self.config.endpoint else self.beacon.lan_addresses()
        if lan_addrs:
            request["lan_addrs"] = lan_addrs
        # Signed: proves we hold the key, so the registry lets us move our
        # endpoint from any address (an unsigned one could be anybody's).
        try:
            reply = yield self.registry.signed(request)
        except PilotError as error:
            if not error.message.startswith("stale signature"):
                raise
            # Our clock is off: register as Go daemons do (allowed from our address);
            # the reply's time then sets the clock our signatures use.
            log.warn("registry refused our signed registration ({reason}); registering unsigned",
                     reason=error.message)
            reply = yield self.registry.request(request)
        if reply.get("hostname_error"):
            log.warn("hostname not registered: {reason}", reason=reply["hostname_error"])
        self._registered_endpoint = listen_addr
        return reply["node_id"]

    @defer.inlineCallbacks
    def _registered(self, node_id):
        """The registry (re)assigned ``node_id``: hand it to the parts, re-apply what it forgot."""
        self.address = Addr(0, node_id)
        self.registry.node_id = node_id
        self.tunnel.node_id = node_id
        log.info("registered as {address} (node {node})", address=str(self.address), node=node_id)
        self.beacon.keepalive()
        yield self._reapply_settings()
        yield self.trust.registered(node_id)
        yield self._refresh_networks()
        yield self.networks.auto_join(self.config.network_ids)
        if self.registered.called:
            self.webhooks.emit("node.reregistered", address=self.address)
        else:
            self.webhooks.emit("node.registered", address=self.address, endpoint=self._registered_endpoint)
            self.registered.callback(node_id)

    @defer.inlineCallbacks
    def _reapply_settings(self):
        if self.config.public:
            yield self.registry.signed({"type": "set_visibility", "node_id": self.node_id, "public": True})
        if self.tags:
            yield self.registry.signed({"type": "set_tags", "node_id": self.node_id, "tags": self.tags})

    def _heartbeat(self, node_id):
        return self.registry.signed({"type": "heartbeat", "node_id": node_id})

    def _alive(self):
        """A heartbeat was answered: refresh the beacon's entry, and poll for trust news."""
        self.beacon.keepalive()
        return self.trust.poll()

    @defer.inlineCallbacks
    def _open_control_socket(self):
        path = self.config.socket_path
        prepare_socket_path(path)
        endpoint = UNIXServerEndpoint(self.reactor, str(path), mode=0o600, wantPID=False)
        self._control_port = yield endpoint.listen(ControlFactory(self.control, self.reactor))
        os.chmod(path, 0o600)
        log.info("control socket at {path}", path=str(path))

    @defer.inlineCallbacks
    def stopService(self):
        self.trust.stop()
        self.streams.abort_all()
        if self._control_port is not None:
            yield self._control_port.stopListening()
        if self.node_id is not None:
            self.webhooks.emit("node.deregistered")
        yield self.webhooks.stop()
        yield super().stopService()
        if self._udp_port is not None:
            yield self._udp_port.stopListening()

    # -- housekeeping --------------------------------------------------------------

    def _networks_changed(self, old, new):
        """Our networks changed: trust follows membership, managed engines and policies follow the networks."""
        self.trust.network_changed(old, new)
        self.managed.view_changed(old, new)

    def _refresh_networks(self):
        """Refresh the view of our networks (a failure keeps the last view; see pilotnet.daemon.networks)."""
        return self.networks.refresh().addErrback(lambda failure: log.failure("network refresh", failure))

    def _ping_peers(self):
        """Keep NAT mappings open and peers' dead-peer detectors quiet; drop dead tunnels."""
        if self.node_id is None:
            return
        now = self.reactor.seconds()
        for peer in self.tunnel.peers():
            quiet_since = max(peer.last_heard, peer.offer_sent_at)
            if quiet_since != float("-inf") and now - quiet_since > PEER_DEAD:
                log.info("node {node}: nothing heard for {seconds:.0f}s, tunnel dropped",
                         node=peer.node, seconds=now - quiet_since)
                self.streams.abort_peer(peer.node)
                self._drop_tunnel(peer.node)
            elif peer.session is not None or not self.config.encrypt:
                self._send_ping(peer.node)

    def _offer_key_at_registered_endpoint(self, node):
        """A node sent a frame we hold no session for (we restarted): offer our key where it registered.

        Not where the frame came from, which nothing proved (see the tunnel);
        the resolve spends the budget of registry requests inbound frames may cause.
        """
        if self.node_id is None or self.inbound_lookups.take(1, self.reactor.seconds()) == 0:
            return
        resolving = self.resolver.endpoint(node)
        resolving.addCallback(lambda endpoint: self.tunnel.add_peer(node, endpoint, ask_back=True))
        resolving.addErrback(lambda failure: failure.trap(PilotError))

    @defer.inlineCallbacks
    def _registry_view(self, node):
        """Does ``node`` exist, is it public, and is the pair of us trusted, per the registry."""
        try:
            record = yield self.lookup(node)
        except PilotError as error:
            if error.code == NOT_FOUND:
                return RegistryView(registered=False)
            raise
        public = bool(record.get("public"))
        trusted = False
        if not public:
            reply = yield self.registry.request({"type": "check_trust", "node_id": self.node_id, "peer_id": node})
            trusted = bool(reply.get("trusted"))
        return RegistryView(registered=True, public=public, trusted=trusted)

    def _drop_tunnel(self, node):
        """Trust ended or the peer is dead: forget its session, path and endpoint."""
        self.tunnel.drop_peer(node)
        self.resolver.forget(node)

    def _send_ping(self, node):
        packet = Packet(PROTO_CONTROL, Addr(0, self.node_id), Addr(0, node), self._datagram_port(), 0,
                        flags=FLAG_ACK, seq=1)
        self.tunnel.send(node, packet.encode())

    # -- packets ---------------------------------------------------------------------

    def _transmit(self, packet):
        self.tunnel.send(packet.dst.node, packet.encode())

    def _transmit_burst(self, packets):
        """One connection's packets, all to one node: the tunnel may send them in one system call."""
        self.tunnel.send_burst(packets[0].dst.node, [packet.encode() for packet in packets])

    def _packet_received(self, packet, peer):
        if packet.dst.node != self.node_id:
            return
        protocol = packet.protocol
        if protocol == PROTO_STREAM:
            self.streams.stream_packet(packet)
        elif protocol == PROTO_DATAGRAM:
            self.streams.datagram_packet(packet)
        elif protocol == PROTO_CONTROL:
            self.streams.peer_alive(peer.node)
            if packet.dst_port == 0 and packet.src_port != 0:
                # Answer pings, but never one from port 0: its pong would be a ping
                # again and two nodes would bounce it forever.
                pong = Packet(PROTO_CONTROL, packet.dst, packet.src, 0, packet.src_port, flags=FLAG_ACK,
                              seq=packet.seq, ack=(packet.seq + 1) & 0xFFFFFFFF, payload=packet.payload)
                self.tunnel.send(peer.node, pong.encode())

    def _datagram_port(self):
        port = self._next_datagram_port
        self._next_datagram_port = EPHEMERAL_PORT_MIN if port >= MAX_PORT else port + 1
        return port

    # -- what the node's parts (and, through the facade, clients) ask for ------------------

    def require_registered(self):
        if self.node_id is None:
            raise PilotError("the daemon is not registered with the registry yet", code=NOT_RUNNING,
                             hint=f"check that the registry at {self.config.registry} is reachable")

    @defer.inlineCallbacks
    def ensure_tunnel(self, node):
        """Make sure ``node`` can be reached: resolve its endpoint and start the key exchange."""
        self.require_registered()
        if node == self.node_id:
            raise PilotError("cannot connect to our own node", code=INVALID_ARGUMENT)
        peer = self.tunnel.peer(node)
        if peer is not None and peer.session is not None:
            if self.reactor.seconds() - peer.last_heard > PEER_SILENCE:
                # Quiet for long enough to have restarted elsewhere: check before dialing.
                yield self.paths.refresh_endpoint(node)
            return peer
        try:
            endpoint = yield self.resolver.endpoint(node)
        except PilotError as error:
            raise _unresolved(node, error) from None
        self.beacon.request_punch(node)
        return self.tunnel.add_peer(node, endpoint)

    @defer.inlineCallbacks
    def dial(self, remote, port, owner, timeout=None):
        self.managed.check_outbound(remote.node, port)
        yield self.ensure_tunnel(remote.node)
        local = Addr(remote.network, self.node_id)
        dialing = DialWatch(self.reactor, self.streams.dial(local, remote, port, owner), remote.node,
                            self._dial_probes).result
        if timeout:
            dialing.addTimeout(timeout, self.reactor)
        try:
            stream = yield dialing
        except defer.TimeoutError:
            raise PilotError(f"dial {remote}:{port} timed out after {timeout:g}s", code=TIMEOUT) from None
        return stream

    def send_datagram(self, remote, port, data, client=None):
        """Send one datagram, or a broadcast's copies (see pilotnet.daemon.broadcast) from ``client``.

        The result is ``(sent, unreachable)``: ``(1, 0)`` for a unicast datagram.
        """
        if remote.is_broadcast:
            return self.broadcasts.send(remote.network, port, data, client)
        if not data:
            return defer.fail(PilotError("a datagram needs a payload", code=INVALID_ARGUMENT))
        return self.send_datagram_from(remote, self._datagram_port(), port, data).addCallback(lambda _: (1, 0))

    @defer.inlineCallbacks
    def send_datagram_from(self, remote, src_port, port, data):
        """Send one datagram from our ``src_port`` on the unicast path (outbound policy, tunnel set up first)."""
        self.managed.check_outbound(remote.node, port, len(data))
        yield self.ensure_tunnel(remote.node)
        packet = Packet(PROTO_DATAGRAM, Addr(remote.network, self.node_id), remote, src_port,
                        port, payload=data)
        try:
            wire = packet.encode()
        except ValueError as error:
            raise PilotError(str(error), code=INVALID_ARGUMENT) from None
        self.tunnel.send(remote.node, wire)

    def lookup(self, node_id):
        return self.registry.request({"type": "lookup", "node_id": node_id})

    @defer.inlineCallbacks
    def polo_score(self, node_id):
        reply = yield self.registry.request({"type": "get_polo_score", "node_id": node_id})
        return int(reply.get("polo_score", 0))

    def adjust_polo(self, node_id, delta):
        """Change a node's polo score (task rewards and penalties); failures are only logged."""
        changing = self.registry.request({"type": "update_polo_score", "node_id": node_id, "delta": delta})
        changing.addErrback(lambda failure: log.warn("polo score update for node {node} failed: {reason}",
                                                     node=node_id, reason=failure.getErrorMessage()))
