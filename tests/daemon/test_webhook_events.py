"""The events the real-process test cannot provoke cheaply, on fakes: each fires once with its fields."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pilotnet.daemon.streams import Streams
from pilotnet.interfaces import IEventEmitter
from pilotnet.transport.config import StreamConfig
from pilotnet.wire import handshake
from pilotnet.wire.packet import FLAG_SYN, PROTO_DATAGRAM, PROTO_STREAM, Packet
from tests.daemon.fakes import DatagramNetwork, StaticKeys
from tests.daemon.test_streams import A, B, Pair, RecordingOwner
from tests.daemon import test_trust_manager as flows
from tests.daemon.test_tunnel import A_ADDR, B_ADDR, Node, datagram


@implementer(IEventEmitter)
class RecordingEmitter:
    active = True

    def __init__(self):
        self.events = []

    def emit(self, event, **data):
        self.events.append((event, data))

    def named(self, name):
        return [data for event, data in self.events if event == name]


class TunnelEventTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.network = DatagramNetwork()
        keys = StaticKeys()
        self.a = Node(self.network, self.clock, keys, 1, A_ADDR)
        self.b = Node(self.network, self.clock, keys, 2, B_ADDR)
        self.events = RecordingEmitter()
        self.b.tunnel.emitter = self.events

    def test_a_replayed_nonce(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        self.a.tunnel.send(2, datagram(1, 2))
        frame = self.network.sent[-1][2]
        self.network.deliver()
        self.b.tunnel.datagramReceived(frame, A_ADDR)
        [replay] = self.events.named("security.nonce_replay")
        self.assertEqual(replay, {"peer_node_id": 1, "counter": int.from_bytes(frame[12:20], "big")})

    def test_the_relay_activated_once(self):
        self.b.tunnel.add_peer(1, A_ADDR)
        self.b.tunnel.use_relay(1)
        self.b.tunnel.use_relay(1)
        self.assertEqual(self.events.named("tunnel.relay_activated"), [{"peer_node_id": 1}])

    def test_established_and_peer_added(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        [keyed] = self.events.named("tunnel.established")
        self.assertEqual(keyed, {"peer_node_id": 1, "authenticated": True, "relay": False, "rekeyed": False})
        self.assertEqual(self.events.named("tunnel.peer_added"), [{"peer_node_id": 1, "endpoint": A_ADDR}])


class StreamEventTests(SynchronousTestCase):
    def setUp(self):
        self.pair = Pair()
        self.b = self.pair.nodes[2]
        self.events = RecordingEmitter()
        self.b.emitter = self.events

    def test_the_syn_rate_limit(self):
        self.b.bind(1000, RecordingOwner())
        for port in range(40000, 40012):
            self.b.stream_packet(Packet(PROTO_STREAM, A, B, port, 1000, flags=FLAG_SYN, window=512))
        limited = self.events.named("security.syn_rate_limited")
        self.assertEqual(len(limited), 2)
        self.assertEqual(limited[0], {"src_addr": A, "src_port": 40010})

    def test_a_dead_peer(self):
        clock, wire = Clock(), []
        config = StreamConfig(keepalive_interval=1.0, idle_timeout=None)
        a, b = (Streams(clock=clock, transmit=wire.append, config=config, max_per_port=4, max_connections=8,
                        syn_rate=100) for _ in range(2))
        a.emitter = events = RecordingEmitter()
        b.bind(1000, RecordingOwner())
        dialing = a.dial(A, B, 1000, RecordingOwner())
        for _ in range(3):
            for packet in wire[:]:
                wire.remove(packet)
                (b if packet.dst == B else a).stream_packet(packet)
        self.successResultOf(dialing)
        clock.advance(60)  # b never answers a's keepalives any more
        for _ in range(60):
            clock.advance(1.0)
        dead = events.named("conn.dead_peer")
        self.assertEqual(len(dead), 1, events.events)
        self.assertEqual((dead[0]["remote_addr"], dead[0]["remote_port"]), (B, 1000))


class TrustEventTests(SynchronousTestCase):
    """The trust manager of the trust flow tests, watched by an emitter."""

    setUp = flows.FlowTests.setUp
    from_peer = flows.FlowTests.from_peer
    syn = flows.FlowTests.syn

    def manager(self):
        trust = flows.FlowTests.manager(self)
        self.events = RecordingEmitter()
        trust.emitter = self.events
        return trust

    def test_auto_approved_and_the_gate(self):
        self.settings.trust_auto_approve = True
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST, justification="hello")))
        [auto] = self.events.named("handshake.auto_approved")
        self.assertEqual((auto["peer_node_id"], auto["reason"]), (self.peer_id(), "auto_approve"))
        self.trust.revoke(self.peer_id())
        self.assertFalse(self.trust.admit(self.syn()))
        self.assertFalse(self.trust.admit(self.syn(1000, PROTO_DATAGRAM)))
        [syn] = self.events.named("syn.rejected")
        [gram] = self.events.named("datagram.rejected")
        self.assertEqual((syn["src_node_id"], syn["dst_port"]), (self.peer_id(), 7))
        self.assertEqual((gram["src_node_id"], gram["dst_port"]), (self.peer_id(), 1000))

    def peer_id(self):
        return self.syn().src.node



class IdleTimeoutTests(SynchronousTestCase):
    def test_an_idle_connection_reports_its_timeout_once(self):
        clock, wire = Clock(), []
        a, b = (Streams(clock=clock, transmit=wire.append, config=StreamConfig(keepalive_interval=None,
                                                                                   idle_timeout=idle),
                        max_per_port=4, max_connections=8, syn_rate=100) for idle in (None, 5.0))
        b.emitter = events = RecordingEmitter()
        b.bind(1000, RecordingOwner())
        dialing = a.dial(A, B, 1000, RecordingOwner())
        self.pump(wire, a, b)
        self.successResultOf(dialing)
        clock.advance(6.0)  # b idles out and sends its FIN
        self.pump(wire, a, b)  # a acknowledges it, but its client never closes: b waits in FIN_WAIT_2
        for _ in range(30):
            clock.advance(1.0)
        [idle] = events.named("conn.idle_timeout")
        self.assertEqual((idle["remote_addr"], idle["local_port"]), (A, 1000))

    @staticmethod
    def pump(wire, a, b):
        for _ in range(3):
            for packet in wire[:]:
                wire.remove(packet)
                (b if packet.dst == B else a).stream_packet(packet)
