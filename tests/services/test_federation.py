"""Pub/sub across three daemons' brokers joined by real stream engines on an in-memory wire."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.streams import Streams
from pilotnet.services.eventstream import EventBroker, EventStreamService, Subscriber
from pilotnet.services.federation import Federation
from pilotnet.transport.config import StreamConfig
from pilotnet.wire.address import Addr
from pilotnet.wire.eventstream import split_events
from pilotnet.wire.packet import PROTO_STREAM


class Node:
    def __init__(self, network, number):
        self.address = Addr(0, number)
        self.streams = Streams(clock=network.clock, transmit=network.wire.append, config=StreamConfig(),
                               max_per_port=64, max_connections=256, syn_rate=1000)
        self.broker = EventBroker()
        EventStreamService(self.streams, self.broker)
        self.federation = Federation(
            self.broker, self.streams,
            dial=lambda node, port, owner: self.streams.dial(self.address, Addr(0, node), port, owner),
            peers=lambda: [n for n in network.nodes if n != number])
        self.inbox = []

    def subscribe(self, name, pattern):
        def deliver(frames):
            self.inbox.extend((name, topic, payload) for topic, payload in split_events(b"".join(frames)))
        return self.broker.subscribe(Subscriber(pattern, name, deliver, local=True))


class Network:
    def __init__(self, count):
        self.clock = Clock()
        self.wire = []
        self.nodes = {}
        for number in range(1, count + 1):
            self.nodes[number] = Node(self, number)

    def settle(self):
        for _ in range(500):
            self.clock.advance(0.05)
            if not self.wire:
                continue
            packets, self.wire[:] = list(self.wire), []
            for packet in packets:
                target = self.nodes[packet.dst.node].streams
                if packet.protocol == PROTO_STREAM:
                    target.stream_packet(packet)


class FederationTests(SynchronousTestCase):
    def setUp(self):
        self.network = Network(3)
        self.a, self.b, self.c = (self.network.nodes[n] for n in (1, 2, 3))

    def test_monitoring_pipeline_across_three_machines(self):
        self.b.subscribe("aggregator", "metrics.*")
        self.c.subscribe("alerter", "metrics.cpu")
        self.c.subscribe("disk-watch", "metrics.disk")
        self.network.settle()
        self.a.broker.publish("metrics.cpu", b"0.93")
        self.a.broker.publish("metrics.cpu.load", b"1.5")
        self.a.broker.publish("logs.app", b"nobody wants this")
        self.network.settle()
        self.assertEqual(sorted(self.b.inbox), [("aggregator", "metrics.cpu", b"0.93"),
                                                ("aggregator", "metrics.cpu.load", b"1.5")])
        self.assertEqual(self.c.inbox, [("alerter", "metrics.cpu", b"0.93")])

    def test_no_duplicates_when_patterns_overlap_and_no_echo_to_the_publisher(self):
        self.b.subscribe("wide", "metrics.*")
        self.b.subscribe("narrow", "metrics.cpu")
        publisher = self.a.subscribe("publisher", "metrics.*")
        self.network.settle()
        self.a.broker.publish("metrics.cpu", b"1", publisher=publisher)
        self.network.settle()
        self.assertEqual(sorted(self.b.inbox), [("narrow", "metrics.cpu", b"1"), ("wide", "metrics.cpu", b"1")])
        self.assertEqual(self.a.inbox, [])
        self.assertEqual(self.c.inbox, [])

    def test_events_from_peers_are_not_forwarded_again(self):
        self.b.subscribe("b", "*")
        self.c.subscribe("c", "*")
        self.network.settle()
        self.a.broker.publish("x", b"once")
        self.network.settle()
        self.assertEqual(self.b.inbox, [("b", "x", b"once")])
        self.assertEqual(self.c.inbox, [("c", "x", b"once")])

    def test_unsubscribing_closes_the_links(self):
        subscriber = self.b.subscribe("b", "t")
        self.network.settle()
        self.assertEqual(set(self.b.federation.links), {(1, "t"), (3, "t")})
        self.b.broker.unsubscribe(subscriber)
        self.network.settle()
        self.assertEqual(self.b.federation.links, {})
        self.a.broker.publish("t", b"late")
        self.network.settle()
        self.assertEqual(self.b.inbox, [])
