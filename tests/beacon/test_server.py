"""The beacon over real UDP sockets on the loopback addresses."""

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks, succeed
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from pilotnet.beacon.core import REQUEST_BURST, BeaconCore
from pilotnet.beacon.peering import TRAILER_SIZE, PeerAuth
from pilotnet.beacon.server import BeaconService, parse_udp_address
from pilotnet.errors import PilotError
from pilotnet.wire import beacon as wire


class _Daemon(DatagramProtocol):
    """A stand-in node: sends beacon messages, queues what comes back."""

    def __init__(self):
        self.inbox = DeferredQueue()

    def datagramReceived(self, data, addr):
        self.inbox.put((wire.decode(data), addr))

    @property
    def endpoint(self):
        host = self.transport.getHost()
        return wire.Endpoint(host.host, host.port)


def _ipv6_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class BeaconOverUDPTests(TestCase):
    def start_beacon(self, host="127.0.0.1", beacon_id=1, core=None, **options):
        service = BeaconService(reactor, core or BeaconCore(beacon_id), host, 0, **options)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def daemon(self, host="127.0.0.1"):
        node = _Daemon()
        port = reactor.listenUDP(0, node, interface=host)
        self.addCleanup(port.stopListening)
        return node

    def send(self, node, beacon, message):
        """Send ``message`` (bytes as they are; a Discover padded, as our daemons send it)."""
        address = beacon.address
        if isinstance(message, wire.Discover):
            message = wire.padded_discover(message.node)
        node.transport.write(message if isinstance(message, bytes) else wire.encode(message),
                             (address.host, address.port))

    @inlineCallbacks
    def test_discover_reports_the_observed_address(self):
        beacon = self.start_beacon()
        node = self.daemon()
        self.send(node, beacon, wire.padded_discover(5))
        reply, _ = yield node.inbox.get()
        self.assertEqual(reply, wire.DiscoverReply(node.endpoint))

    @inlineCallbacks
    def test_a_five_byte_discover_draws_no_larger_reply(self):
        """The reference's Discover (5 bytes) from a forged source must not reflect 8 bytes at it."""
        beacon = self.start_beacon()
        victim = _Counter()
        port = reactor.listenUDP(0, victim, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        for node in (0, 7):
            port.write(wire.encode(wire.Discover(node)), ("127.0.0.1", beacon.address.port))
        port.write(wire.padded_discover(0), ("127.0.0.1", beacon.address.port))
        while not victim.sizes:
            yield _tick()
        yield _settle()
        self.assertEqual(victim.sizes, [8])  # the padded Discover's answer only
        self.assertEqual(beacon.core.dropped["discover_unanswered_short"], 2)
        self.assertIn(7, beacon.core.nodes)

    @inlineCallbacks
    def test_answering_five_byte_discovers_is_the_operators_choice(self):
        beacon = self.start_beacon(core=BeaconCore(1, answer_short_discovers=True))
        node = self.daemon()
        self.send(node, beacon, wire.encode(wire.Discover(0)))
        reply, _ = yield node.inbox.get()
        self.assertEqual(reply, wire.DiscoverReply(node.endpoint))

    @inlineCallbacks
    def test_discover_over_ipv6(self):
        if not _ipv6_available():
            raise self.skipTest("no IPv6 loopback on this machine")
        beacon = self.start_beacon("::1")
        node = self.daemon("::1")
        self.send(node, beacon, wire.padded_discover(5))
        reply, _ = yield node.inbox.get()
        self.assertEqual(reply, wire.DiscoverReply(wire.Endpoint("::1", node.endpoint.port)))

    @inlineCallbacks
    def test_punch_commands_reach_both_sides(self):
        beacon = self.start_beacon()
        a, b = self.daemon(), self.daemon()
        self.send(b, beacon, wire.Discover(6))
        yield b.inbox.get()
        self.send(a, beacon, wire.PunchRequest(5, 6))
        to_a, _ = yield a.inbox.get()
        to_b, _ = yield b.inbox.get()
        self.assertEqual(to_a, wire.PunchCommand(b.endpoint))
        self.assertEqual(to_b, wire.PunchCommand(a.endpoint))

    @inlineCallbacks
    def test_relay_delivers_and_drops_spoofed_senders(self):
        beacon = self.start_beacon()
        a, b, mallory = self.daemon(), self.daemon(), self.daemon()
        for node, node_id in ((a, 5), (b, 6), (mallory, 7)):
            self.send(node, beacon, wire.Discover(node_id))
            yield node.inbox.get()
        self.send(mallory, beacon, wire.relay_envelope(5, 6, b"PILTforged"))
        self.send(a, beacon, wire.relay_envelope(5, 6, b"PILTgenuine"))
        delivered, source = yield b.inbox.get()
        self.assertEqual(delivered, wire.RelayDeliver(5, b"PILTgenuine"))
        self.assertEqual(source[1], beacon.address.port)
        self.assertEqual(beacon.core.dropped["relay_spoofed_sender"], 1)
        self.assertEqual(len(b.inbox.pending), 0)

    @inlineCallbacks
    def test_relay_through_a_peer_beacon(self):
        first = self.start_beacon(beacon_id=1)
        second = self.start_beacon(beacon_id=2)
        first_address = ("127.0.0.1", first.address.port)
        second_address = ("127.0.0.1", second.address.port)
        first.core.set_peers({second_address})
        second.core.set_peers({first_address})
        a, b = self.daemon(), self.daemon()
        self.send(a, first, wire.Discover(5))
        self.send(b, second, wire.Discover(6))
        yield a.inbox.get()
        yield b.inbox.get()
        second.sync()
        while 6 not in first.core.peer_claims:
            yield _tick()
        self.send(a, first, wire.relay_envelope(5, 6, b"PILTacross"))
        delivered, _ = yield b.inbox.get()
        self.assertEqual(delivered, wire.RelayDeliver(5, b"PILTacross"))

    @inlineCallbacks
    def test_announces_itself_and_learns_peers_from_the_registry(self):
        sent = []

        def registry(request):
            sent.append(request)
            if request["type"] == "beacon_list":
                return succeed({"type": "beacon_list_ok", "beacons": [
                    {"id": 1, "addr": "ignored-self:1"}, {"id": 9, "addr": "192.0.2.9:9001"},
                    {"id": 10, "addr": "not-an-ip:9001"}]})
            return succeed({"type": "beacon_register_ok", "beacon_id": request["beacon_id"]})

        beacon = self.start_beacon(registry=registry, peers=[("192.0.2.8", 9001)])
        yield beacon.announce()
        self.assertEqual(sent[0], {"type": "beacon_register", "beacon_id": 1,
                                   "addr": f"127.0.0.1:{beacon.address.port}"})
        # Without a shared secret a listed beacon is only a candidate: anyone can list an address.
        self.assertEqual(beacon.core.peers, {("192.0.2.8", 9001)})
        self.assertEqual(beacon.core.listed_peers, {("192.0.2.9", 9001)})

    def listing(self, *addresses):
        """A registry whose beacon list holds ``addresses`` (anybody could have put them there)."""
        beacons = [{"id": 100 + index, "addr": f"{host}:{port}"} for index, (host, port) in enumerate(addresses)]

        def registry(request):
            if request["type"] == "beacon_list":
                return succeed({"type": "beacon_list_ok", "beacons": beacons})
            return succeed({"type": "beacon_register_ok"})

        return registry

    def fill(self, beacon, count=16_000):
        for node in range(1, count + 1):
            beacon.core.nodes[node] = (("198.51.100.1", 4000), reactor.seconds())

    @inlineCallbacks
    def test_an_address_registered_as_a_beacon_gets_no_syncs(self):
        victim = self.daemon()
        beacon = self.start_beacon(registry=self.listing(victim.endpoint))
        self.fill(beacon)
        yield beacon.announce()
        beacon.sync()
        yield _settle()
        self.assertEqual(len(victim.inbox.pending), 0)

    @inlineCallbacks
    def test_with_a_secret_an_unproven_listed_address_gets_only_a_small_hello(self):
        victim = _Counter()
        port = reactor.listenUDP(0, victim, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        core = BeaconCore(1, peer_auth=PeerAuth(SECRET))
        beacon = self.start_beacon(core=core, registry=self.listing(("127.0.0.1", port.getHost().port)))
        self.fill(beacon)
        yield beacon.announce()
        for _ in range(3):
            beacon.sync()
        yield _settle()
        self.assertEqual(victim.sizes, [wire.sync_size(0) + TRAILER_SIZE] * 3)

    @inlineCallbacks
    def test_beacons_sharing_a_secret_find_each_other_through_the_registry_and_relay(self):
        first = self.start_beacon(core=BeaconCore(1, peer_auth=PeerAuth(SECRET)))
        second = self.start_beacon(core=BeaconCore(2, peer_auth=PeerAuth(SECRET)))
        first._registry = self.listing(("127.0.0.1", second.address.port))
        second._registry = self.listing(("127.0.0.1", first.address.port))
        yield first.announce()
        yield second.announce()
        a, b = self.daemon(), self.daemon()
        self.send(a, first, wire.Discover(5))
        self.send(b, second, wire.Discover(6))
        yield a.inbox.get()
        yield b.inbox.get()
        first.sync()  # a hello: second now knows first
        while ("127.0.0.1", first.address.port) not in second.core.proven_peers:
            yield _tick()
        second.sync()  # a full sync: first learns node 6
        while 6 not in first.core.peer_claims:
            yield _tick()
        self.send(a, first, wire.relay_envelope(5, 6, b"PILTacross"))
        delivered, _ = yield b.inbox.get()
        self.assertEqual(delivered, wire.RelayDeliver(5, b"PILTacross"))

    @inlineCallbacks
    def test_one_source_cannot_fill_the_table_nor_draw_more_than_its_burst(self):
        beacon = self.start_beacon(core=BeaconCore(1, max_nodes_per_ip=50))
        flooder = _Counter()
        port = reactor.listenUDP(0, flooder, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        for node in range(1, 2001):
            port.write(wire.padded_discover(node), ("127.0.0.1", beacon.address.port))
            if node % 200 == 0:
                yield _tick()
        while sum(beacon.core.dropped.values()) + len(beacon.core.nodes) < 2000:
            yield _tick()
        yield _settle()
        self.assertLessEqual(len(beacon.core.nodes), 50)
        self.assertLess(len(flooder.sizes), 2000 // 4)  # the burst plus the rate while it lasted
        self.assertGreaterEqual(len(flooder.sizes), REQUEST_BURST)

    def test_parse_udp_address(self):
        self.assertEqual(parse_udp_address("127.0.0.1:9001"), ("127.0.0.1", 9001))
        self.assertEqual(parse_udp_address("[::1]:0"), ("::1", 0))
        for bad in ("localhost:9001", "1.2.3.4", "1.2.3.4:70000", "[::1]:x"):
            self.assertRaises(PilotError, parse_udp_address, bad)


SECRET = b"a secret all our beacons share"


class _Counter(DatagramProtocol):
    """A victim's socket: only the sizes of what arrives."""

    def __init__(self):
        self.sizes = []

    def datagramReceived(self, data, addr):
        self.sizes.append(len(data))


def _settle():
    """Long enough for datagrams already sent on the loopback to arrive."""
    waiting = Deferred()
    reactor.callLater(0.2, waiting.callback, None)
    return waiting


def _tick():
    waiting = Deferred()
    reactor.callLater(0.001, waiting.callback, None)
    return waiting
