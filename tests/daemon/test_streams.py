"""The daemon's port and stream table on a fake clock: ownership, flow, limits, delivery order."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pilotnet.daemon.streams import Streams
from pilotnet.interfaces import IStreamOwner
from pilotnet.errors import ALREADY_EXISTS, NOT_FOUND, PilotError
from pilotnet.transport.config import StreamConfig
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_SYN, PROTO_DATAGRAM, PROTO_STREAM, Packet

A = Addr(0, 1)
B = Addr(0, 2)


@implementer(IStreamOwner)
class RecordingOwner:
    def __init__(self, hold=False):
        self.accepted = []
        self.data = []
        self.closed = []
        self.datagrams = []
        self.hold = hold
        self.held = []

    def stream_accepted(self, port, stream):
        self.accepted.append((port, stream))

    def stream_data(self, conn_id, data):
        self.data.append((conn_id, data))
        if self.hold:
            waiting = defer.Deferred()
            self.held.append(waiting)
            return waiting
        return None

    def stream_closed(self, conn_id, code, message):
        self.closed.append((conn_id, code))

    def datagram(self, src, src_port, dst_port, data):
        self.datagrams.append((src, src_port, dst_port, data))


class Pair:
    """Two nodes' stream tables joined by an instant, lossless wire."""

    def __init__(self, syn_rate=100, config=StreamConfig()):
        self.clock = Clock()
        self.wire = []
        self.nodes = {}
        for address in (A, B):
            self.nodes[address.node] = Streams(
                clock=self.clock, transmit=self.wire.append, config=config, max_per_port=4,
                max_connections=8, syn_rate=syn_rate)

    def pump(self, rounds=200):
        for _ in range(rounds):
            self.clock.advance(0)
            if not self.wire:
                return
            packets, self.wire[:] = list(self.wire), []
            for packet in packets:
                target = self.nodes[packet.dst.node]
                if packet.protocol == PROTO_STREAM:
                    target.stream_packet(packet)
                else:
                    target.datagram_packet(packet)


class StreamsTests(SynchronousTestCase):
    def setUp(self):
        self.pair = Pair()
        self.a = self.pair.nodes[1]
        self.b = self.pair.nodes[2]

    def dial(self, owner, port=1000):
        dialing = self.a.dial(A, B, port, owner)
        self.pair.pump()
        return self.successResultOf(dialing)

    def test_dial_accept_and_data_both_ways_in_order(self):
        server = RecordingOwner()
        self.b.bind(1000, server)
        client = RecordingOwner()
        stream = self.dial(client)
        [(port, accepted)] = server.accepted
        self.assertEqual((port, accepted.remote), (1000, A))
        for index in range(5):
            self.a.write(stream.conn_id, b"%d," % index, client)
        self.b.write(accepted.conn_id, b"reply", server)
        self.pair.pump()
        self.pair.clock.advance(0.05)
        self.pair.pump()
        self.assertEqual(b"".join(d for _, d in server.data), b"0,1,2,3,4,")
        self.assertEqual(b"".join(d for _, d in client.data), b"reply")

    def test_segments_read_in_one_burst_reach_the_owner_in_one_push_at_its_end(self):
        server = RecordingOwner()
        self.b.bind(1000, server)
        client = RecordingOwner()
        stream = self.dial(client)
        stream.conn.nodelay = True
        for index in range(3):
            self.a.write(stream.conn_id, b"%d," % index, client)
        packets, self.pair.wire[:] = list(self.pair.wire), []
        self.b.burst_started()
        for packet in packets:
            self.b.stream_packet(packet)
        self.assertEqual(server.data, [])
        self.b.burst_ended()
        self.assertEqual([data for _, data in server.data], [b"0,1,2,"])
        # One acknowledgment for the three segments, sent at the end of the burst.
        acks = [p for p in self.pair.wire if p.dst == A and not p.payload]
        self.assertEqual(len(acks), 1)
        self.assertEqual(acks[0].ack, (stream.conn.stats()["bytes_sent"] + 1) & 0xFFFFFFFF)
        # Nothing was left for a later reactor iteration.
        now = self.pair.clock.seconds()
        self.assertEqual([c for c in self.pair.clock.getDelayedCalls() if c.getTime() <= now], [])

    def test_a_burst_announces_the_stream_before_its_data_and_the_data_before_its_end(self):
        order = []

        class Ordered(RecordingOwner):
            def stream_accepted(self, port, stream):
                order.append("accepted")

            def stream_data(self, conn_id, data):
                order.append(data)

            def stream_closed(self, conn_id, code, message):
                order.append("closed")

        self.b.bind(1000, Ordered())
        client = RecordingOwner()
        dialing = self.a.dial(A, B, 1000, client)
        for _ in range(2):  # SYN to b, SYN|ACK back to a
            packets, self.pair.wire[:] = list(self.pair.wire), []
            for packet in packets:
                self.pair.nodes[packet.dst.node].stream_packet(packet)
        stream = self.successResultOf(dialing)
        stream.conn.nodelay = True
        self.a.write(stream.conn_id, b"hello", client)
        self.a.close(stream.conn_id)
        packets, self.pair.wire[:] = list(self.pair.wire), []
        self.b.burst_started()
        for packet in packets:  # final ACK, data, FIN
            self.b.stream_packet(packet)
        self.assertEqual(order, [])
        self.b.burst_ended()
        self.assertEqual(order, ["accepted", b"hello", "closed"])

    def test_close_comes_after_the_data_it_followed(self):
        server = RecordingOwner()
        self.b.bind(1000, server)
        client = RecordingOwner()
        stream = self.dial(client)
        self.a.write(stream.conn_id, b"last words", client)
        self.a.close(stream.conn_id)
        self.pair.pump()
        self.pair.clock.advance(0.05)
        self.pair.pump()
        [(conn_id, data)] = server.data
        self.assertEqual(data, b"last words")
        self.assertEqual(server.closed, [(conn_id, "")])

    def test_a_closed_stream_ends_though_the_peer_stays_up_and_never_closes(self):
        # The peer answers every keepalive but its application never closes
        # (and it has no idle timer): our side still ends, close_timeout after our close.
        config = StreamConfig(idle_timeout=None)
        pair = Pair(config=config)
        a, b = pair.nodes[1], pair.nodes[2]
        server = RecordingOwner()
        b.bind(1000, server)
        client = RecordingOwner()
        dialing = a.dial(A, B, 1000, client)
        pair.pump()
        stream = self.successResultOf(dialing)
        a.close(stream.conn_id)
        pair.pump()
        self.assertEqual([c["state"] for c in a.describe()], ["FIN_WAIT"])
        for _ in range(int(config.close_timeout) + 5):
            pair.clock.advance(1.0)
            pair.pump()
        self.assertEqual(a.describe(), [])
        self.assertEqual(client.closed, [(stream.conn_id, "")])

    def test_syn_to_an_unbound_port_is_refused(self):
        client = RecordingOwner()
        dialing = self.a.dial(A, B, 2000, client)
        self.pair.pump()
        failure = self.failureResultOf(dialing)
        self.assertEqual(failure.value.code, "connection_failed")

    def test_port_belongs_to_one_owner(self):
        first, second = RecordingOwner(), RecordingOwner()
        self.b.bind(1000, first)
        self.b.bind(1000, first)  # binding again is harmless
        with self.assertRaises(PilotError) as caught:
            self.b.bind(1000, second)
        self.assertEqual(caught.exception.code, ALREADY_EXISTS)
        with self.assertRaises(PilotError) as caught:
            self.b.unbind(1000, second)
        self.assertEqual(caught.exception.code, NOT_FOUND)

    def test_release_unbinds_and_closes(self):
        server = RecordingOwner()
        self.b.bind(1000, server)
        client = RecordingOwner()
        self.dial(client)
        self.b.release(server)
        self.assertEqual(self.b.bound_ports(), [])
        self.pair.pump()
        self.assertEqual([code for _, code in client.closed], [""])

    def test_datagrams_reach_only_the_port_owner(self):
        owner, other = RecordingOwner(), RecordingOwner()
        self.b.bind(4000, owner)
        self.b.bind(4001, other)
        self.b.datagram_packet(Packet(PROTO_DATAGRAM, A, B, 49152, 4000, payload=b"for 4000"))
        self.b.datagram_packet(Packet(PROTO_DATAGRAM, A, B, 49152, 4002, payload=b"nobody"))
        self.b.datagram_packet(Packet(PROTO_DATAGRAM, A, B, 49152, 4000, payload=b""))
        self.assertEqual(owner.datagrams, [(A, 49152, 4000, b"for 4000")])
        self.assertEqual(other.datagrams, [])

    def test_receive_window_follows_the_owner(self):
        """Data the owner has not taken yet stays counted against the window."""
        server = RecordingOwner(hold=True)
        self.b.bind(1000, server)
        client = RecordingOwner()
        stream = self.dial(client)
        self.a.write(stream.conn_id, b"x" * 100_000, client)
        self.pair.pump()
        [accepted] = [s for _, s in server.accepted]
        held_window = accepted.conn.stats()["receive_window"]
        for waiting in server.held:
            waiting.callback(None)
        self.pair.pump()
        self.assertGreater(accepted.conn.stats()["receive_window"], held_window)

    def accepted_stream(self, server):
        """A stream dialled to ``server`` on port 1000: its client, both ends, and the window it opened with."""
        self.b.bind(1000, server)
        client = RecordingOwner()
        stream = self.dial(client)
        [accepted] = [s for _, s in server.accepted]
        return client, stream, accepted, accepted.conn.stats()["receive_window"]

    def test_a_push_taken_at_once_frees_its_window_within_the_burst(self):
        """An owner that answers a push with None (a data socket, the echo service) has taken it."""
        server = RecordingOwner()
        client, stream, accepted, open_window = self.accepted_stream(server)
        stream.conn.nodelay = True
        self.a.write(stream.conn_id, b"z" * 3000, client)
        packets, self.pair.wire[:] = list(self.pair.wire), []
        self.b.burst_started()
        for packet in packets:
            self.b.stream_packet(packet)
        self.b.burst_ended()
        self.assertEqual(b"".join(d for _, d in server.data), b"z" * 3000)
        self.assertEqual(accepted.conn.stats()["receive_window"], open_window)

    def test_an_owner_that_fails_a_push_does_not_hold_the_window(self):
        class Failing(RecordingOwner):
            def stream_data(self, conn_id, data):
                raise ValueError("broken owner")

        client, stream, accepted, open_window = self.accepted_stream(Failing())
        self.a.write(stream.conn_id, b"w" * 3000, client)
        self.pair.pump()
        self.assertTrue(self.flushLoggedErrors(ValueError))
        self.assertEqual(accepted.conn.stats()["receive_window"], open_window)

    def test_window_updates_leave_without_a_timer_whenever_pushes_are_answered(self):
        """A transfer several receive windows long completes without any timer firing.

        Answering a push services the stream only when the window update it
        makes is due; that update must still leave at once, whether the owner
        took the push at once or answers it later, or the sender stalls until
        a timer fires.
        """
        for hold in (False, True):
            pair = Pair(config=StreamConfig(receive_buffer=16 * 1024))
            a, b = pair.nodes[1], pair.nodes[2]
            server = RecordingOwner(hold=hold)
            b.bind(1000, server)
            client = RecordingOwner()
            dialing = a.dial(A, B, 1000, client)
            pair.pump()
            stream = self.successResultOf(dialing)
            a.write(stream.conn_id, b"v" * 200_000, client)
            for _ in range(500):
                pair.pump()
                held, server.held[:] = list(server.held), []
                for waiting in held:
                    waiting.callback(None)
            self.assertEqual(sum(len(d) for _, d in server.data), 200_000, f"hold={hold}")

    def test_write_waits_above_the_high_water_mark(self):
        server = RecordingOwner(hold=True)
        self.b.bind(1000, server)
        client = RecordingOwner()
        stream = self.dial(client)
        writes = [self.a.write(stream.conn_id, b"y" * 60_000, client) for _ in range(30)]
        self.assertTrue(writes[0].called)
        self.assertFalse(writes[-1].called)

    def test_close_unknown_connection(self):
        with self.assertRaises(PilotError) as caught:
            self.a.close(99)
        self.assertEqual(caught.exception.code, NOT_FOUND)

    def test_write_to_someone_elses_stream(self):
        client, intruder = RecordingOwner(), RecordingOwner()
        self.b.bind(1000, RecordingOwner())
        stream = self.dial(client)
        with self.assertRaises(PilotError):
            self.a.write(stream.conn_id, b"x", intruder)

    def test_syn_rate_limit_per_source(self):
        self.b.bind(1000, RecordingOwner())
        for port in range(40000, 40020):
            syn = Packet(PROTO_STREAM, A, B, port, 1000, flags=FLAG_SYN, window=512)
            self.b.stream_packet(syn)
        self.assertEqual(self.b.refused_syns, 10)

    def test_connection_limit_per_port_answers_rst(self):
        self.b.bind(1000, RecordingOwner())
        for port in range(40000, 40006):
            self.b.stream_packet(Packet(PROTO_STREAM, A, B, port, 1000, flags=FLAG_SYN, window=512))
        self.assertEqual(len(self.b), 4)

    def test_ephemeral_ports_are_not_reused_while_live(self):
        self.b.bind(1000, RecordingOwner())
        client = RecordingOwner()
        ports = {self.dial(client).local_port for _ in range(3)}
        self.assertEqual(len(ports), 3)
        self.assertTrue(all(port >= 49152 for port in ports))


class AbandonedDialTests(SynchronousTestCase):
    def test_a_cancelled_dial_stops_sending_syns_and_leaves_no_connection(self):
        """A dial given up on (timeout, or a reachability verdict) must not keep retrying in the background."""
        pair = Pair()
        a = pair.nodes[1]
        dialing = a.dial(A, B, 1000, RecordingOwner())
        pair.wire[:] = []  # the SYN is lost: nobody answers
        dialing.cancel()
        self.failureResultOf(dialing, defer.CancelledError)
        self.assertEqual(len(a), 0)
        pair.clock.advance(60)
        self.assertEqual([p for p in pair.wire if p.flags & FLAG_SYN], [])
