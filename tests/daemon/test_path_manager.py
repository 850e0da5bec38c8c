"""The relay/direct policy: the relay only once it answered, and back to direct when direct works.

Two tunnels and a real beacon core on an in-memory datagram network, on a
Clock; the registry's answers come from a dict.
"""

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pilotnet.beacon.core import BeaconCore
from pilotnet.daemon.path_manager import DIRECT_PROBE_WAIT, PathManager
from pilotnet.daemon.tunnel import DIRECT_PATH_GRACE
from pilotnet.errors import NOT_FOUND, PilotError
from pilotnet.interfaces import IEventEmitter
from pilotnet.wire import beacon
from tests.daemon.fakes import DatagramNetwork, StaticKeys
from tests.daemon.test_tunnel import A_ADDR, B_ADDR, BEACON, Node, datagram

B_MOVED = ("127.0.0.1", 1003)


class _Beacon(DatagramProtocol):
    """The beacon's sans-IO core behind an address of the in-memory network."""

    def __init__(self, clock):
        self.core = BeaconCore(1)
        self.clock = clock

    def datagramReceived(self, data, address):
        for reply, destination in self.core.receive(data, address, self.clock.seconds()):
            self.transport.write(reply, destination)


class _Registry:
    """The Resolver's side the path manager uses: where each node registered."""

    def __init__(self, endpoints):
        self.endpoints = dict(endpoints)

    def endpoint(self, node):
        if node not in self.endpoints:
            return defer.fail(PilotError(f"node {node} not found", code=NOT_FOUND))
        return defer.succeed(self.endpoints[node])

    def forget(self, node):
        pass


class _BeaconLink:
    def __init__(self):
        self.punches = []

    def request_punch(self, node):
        self.punches.append(node)


@implementer(IEventEmitter)
class _Events:
    active = True

    def __init__(self):
        self.emitted = []

    def emit(self, name, **fields):
        self.emitted.append((name, fields))


class PathManagerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.network = DatagramNetwork()
        keys = StaticKeys()
        self.a = Node(self.network, self.clock, keys, 1, A_ADDR)
        self.b = Node(self.network, self.clock, keys, 2, B_ADDR)
        self.beacon = _Beacon(self.clock)
        self.network.attach(self.beacon, BEACON)
        self.events = _Events()
        self.a.tunnel.emitter = self.events
        self.registry = _Registry({2: B_ADDR})
        self.pings = []
        self.paths = PathManager(tunnel=self.a.tunnel, resolver=self.registry, beacon=_BeaconLink(),
                                 clock=self.clock, ping=self.ping)
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        self.peer = self.a.tunnel.peer(2)
        self.assertIsNotNone(self.peer.session)

    def ping(self, node):
        self.pings.append(node)
        self.a.tunnel.send(node, datagram(1, node, b"ping"))

    def announce(self, node, address):
        """``node`` tells the beacon where it is (what a daemon's Discover keepalive does)."""
        self.beacon.datagramReceived(beacon.encode(beacon.Discover(node)), address)
        self.network.sent = [sent for sent in self.network.sent if sent[1] != address]

    def cut_direct_path(self):
        self.network.drop = lambda source, destination, data: BEACON not in (source, destination)

    def relay_activations(self):
        return [fields for name, fields in self.events.emitted if name == "tunnel.relay_activated"]

    def test_the_relay_is_used_once_it_answered_for_the_peer(self):
        self.announce(1, A_ADDR)
        self.announce(2, B_ADDR)
        self.clock.advance(DIRECT_PATH_GRACE + 1)
        self.cut_direct_path()
        self.successResultOf(self.paths.direct_failed(2))
        self.assertEqual(self.peer.path, "direct")  # nothing moves on suspicion
        self.network.deliver()
        self.assertEqual(self.peer.path, "relay")
        self.assertEqual(self.relay_activations(), [{"peer_node_id": 2}])
        self.a.tunnel.send(2, datagram(1, 2, b"relayed"))
        self.network.deliver()
        self.assertEqual(self.b.received[-1].payload, b"relayed")

    def test_a_relay_that_cannot_reach_the_peer_leaves_the_direct_path_alone(self):
        """The beacon does not know b (b has no beacon): a blind switch would strand every stream."""
        self.announce(1, A_ADDR)
        self.clock.advance(DIRECT_PATH_GRACE + 1)
        self.network.drop = lambda source, destination, data: destination == B_ADDR and self.losing
        self.losing = True
        self.successResultOf(self.paths.direct_failed(2))
        self.network.deliver()
        self.assertEqual(self.beacon.core.dropped["relay_unknown_destination"], 1)
        self.assertEqual((self.peer.path, self.relay_activations()), ("direct", []))
        self.losing = False  # the loss was a burst: the direct path carries on
        self.a.tunnel.send(2, datagram(1, 2, b"direct"))
        self.network.deliver()
        self.assertEqual(self.b.received[-1].payload, b"direct")

    def test_an_unanswered_dial_tries_the_relay_only_while_the_peer_is_silent(self):
        self.announce(1, A_ADDR)
        self.announce(2, B_ADDR)
        self.clock.advance(DIRECT_PATH_GRACE + 1)
        self.successResultOf(self.paths.dial_unanswered(2, silent=False))
        self.network.deliver()
        self.assertEqual((self.pings, self.beacon.core.relayed), ([2], 0))
        self.cut_direct_path()
        self.successResultOf(self.paths.dial_unanswered(2, silent=True))
        self.network.deliver()
        self.assertEqual(self.pings, [2, 2])
        self.assertEqual(self.peer.path, "relay")
        self.assertGreater(self.beacon.core.relayed, 0)

    def test_a_peer_that_moved_is_tried_at_its_new_endpoint_not_through_the_relay(self):
        self.registry.endpoints[2] = B_MOVED
        self.network.endpoints[B_MOVED] = self.network.endpoints.pop(B_ADDR)
        moved = self.successResultOf(self.paths.refresh_endpoint(2))
        self.assertTrue(moved)
        self.successResultOf(self.paths.direct_failed(2))
        self.assertEqual(self.beacon.core.relayed, 0)
        self.assertEqual((self.peer.endpoint, self.peer.path), (B_MOVED, "direct"))

    def put_on_the_relay(self):
        self.announce(1, A_ADDR)
        self.announce(2, B_ADDR)
        self.clock.advance(DIRECT_PATH_GRACE + 1)
        self.cut_direct_path()
        self.successResultOf(self.paths.direct_failed(2))
        self.network.deliver()
        self.assertEqual(self.peer.path, "relay")

    def test_a_relayed_peer_returns_to_direct_when_the_direct_probe_is_answered(self):
        self.put_on_the_relay()
        self.network.drop = lambda source, destination, data: False  # the NAT opened
        self.b.tunnel.add_peer(1, A_ADDR)  # b's pong goes direct: direct ingress at a
        self.successResultOf(self.paths.retry_direct())
        self.assertEqual((self.pings, self.peer.path), ([2], "direct"))
        self.network.deliver()
        self.b.tunnel.send(1, datagram(2, 1, b"pong"))
        self.network.deliver()
        self.clock.advance(DIRECT_PROBE_WAIT)
        self.assertEqual(self.peer.path, "direct")

    def test_a_relayed_peer_whose_direct_probe_is_unanswered_goes_back_to_the_relay(self):
        self.put_on_the_relay()
        self.successResultOf(self.paths.retry_direct())
        self.assertEqual(self.peer.path, "direct")
        self.network.deliver()
        self.clock.advance(DIRECT_PROBE_WAIT)
        self.assertEqual(self.peer.path, "relay")

    def test_without_encryption_the_relay_is_taken_without_proof(self):
        """No key offer to prove the relay with: the reference's blind switch."""
        self.a.tunnel.encrypt = False
        self.successResultOf(self.paths.direct_failed(2))
        self.assertEqual(self.peer.path, "relay")


    def test_the_event_double_is_an_emitter(self):
        verifyObject(IEventEmitter, self.events)
