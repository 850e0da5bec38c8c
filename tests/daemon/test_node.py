"""The node's own packet handling: pings, and what it refuses to answer."""

from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.config import DaemonConfig
from pilotnet.daemon.node import RECEIVE_BUFFER, NodeService
from pilotnet.daemon.tunnel import Peer
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_ACK, PROTO_CONTROL, Packet

ME = Addr(0, 5)
PEER = Addr(0, 6)


class ControlPacketTests(SynchronousTestCase):
    def setUp(self):
        config = DaemonConfig(home=Path(self.mktemp()), echo=False)
        self.node = NodeService(config, Clock())
        self.node.registration.node_id = ME.node
        self.sent = []
        self.node.tunnel.send = lambda node, data: self.sent.append((node, Packet.decode(data)))
        self.peer = Peer(PEER.node)

    def ping(self, src_port, dst=ME, payload=b"abc"):
        packet = Packet(PROTO_CONTROL, PEER, dst, src_port, 0, flags=FLAG_ACK, seq=7, payload=payload)
        self.node._packet_received(packet, self.peer)

    def test_ping_is_answered_with_the_reference_pong(self):
        self.ping(49154)
        [(node, pong)] = self.sent
        self.assertEqual(node, PEER.node)
        self.assertEqual((pong.src, pong.dst, pong.src_port, pong.dst_port), (ME, PEER, 0, 49154))
        self.assertEqual((pong.flags, pong.seq, pong.ack, pong.payload), (FLAG_ACK, 7, 8, b"abc"))

    def test_ping_from_port_zero_is_not_answered(self):
        """Its pong would itself be a ping: two nodes would bounce it forever."""
        self.ping(0)
        self.assertEqual(self.sent, [])

    def test_packets_for_another_node_are_dropped(self):
        self.ping(49154, dst=Addr(0, 99))
        self.assertEqual(self.sent, [])


class StreamWindowTests(SynchronousTestCase):
    def test_streams_advertise_room_for_a_read_burst_beyond_the_reference_window(self):
        """A read burst reaches the client at its end, so the window must outgrow the reference's 512 slots.

        The SYN a dial sends advertises the whole receive buffer, in 1 KiB segments.
        """
        config = DaemonConfig(home=Path(self.mktemp()), echo=False)
        node = NodeService(config, Clock())
        self.assertEqual(node.streams.config.receive_buffer, RECEIVE_BUFFER)
        # Every slot of that window may arrive behind a loss and must be kept, not dropped.
        self.assertEqual(node.streams.config.max_out_of_order, RECEIVE_BUFFER // 1024)
        sent = []
        node.streams.transmit = sent.append
        node.streams.dial(ME, PEER, 1000, owner=None)
        [syn] = sent
        self.assertEqual(syn.window, RECEIVE_BUFFER // config.mss)
        self.assertEqual(syn.window, 1024)
