"""The Go reference's stream quirks (reference dataplane 4.14), each with a peer that behaves so."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.transport import State, StreamConfig, StreamEvent
from pilotnet.wire.packet import FLAG_ACK, FLAG_FIN
from pilotnet.wire.sack import encode_sack, looks_like_sack

from .peer import ack, data, established, from_peer


class GoPeerQuirkTests(SynchronousTestCase):
    def test_window_zero_means_unlimited(self):
        conn = established(peer_window=0)
        conn.send(b"x" * 100_000, 0.0)
        self.assertEqual(len(conn.take_packets()), 10)  # only cwnd limits
        conn.receive(ack(10241, window=0), 0.1)
        self.assertEqual(len(conn.take_packets()), 20)

    def test_window_is_in_segments_of_our_mss(self):
        conn = established(peer_window=2)
        conn.send(b"x" * 100_000, 0.0)
        self.assertEqual(sum(len(p.payload) for p in conn.take_packets()), 2048)

    def test_sack_only_acks_still_recover_without_a_timeout(self):
        # Once a Go receiver holds out-of-order data every ACK carries SACK, so
        # it never sends a duplicate ACK; SACK must trigger recovery by itself.
        conn = established()
        conn.send(b"x" * 10240, 0.0)
        conn.take_packets()
        for right in (3073, 4097, 5121):
            conn.receive(ack(1, payload=encode_sack([(1025, right)])), 0.1)
        self.assertEqual([p.seq for p in conn.take_packets()][:1], [1])
        self.assertEqual(conn.stats()["timeouts"], 0)

    def test_data_that_looks_like_sack_is_split_before_sending(self):
        conn = established()
        blob = encode_sack([(5, 9)]) + b"more"
        conn.send(blob, 0.0)
        conn.tick(0.04)  # Nagle releases the rest
        sent = [p.payload for p in conn.take_packets() if p.payload]
        self.assertEqual(sent[0], b"SACK")
        self.assertFalse(any(looks_like_sack(p) for p in sent[1:2]))
        self.assertEqual(b"".join(sent[:2]), blob)

    def test_received_payload_that_parses_as_sack_is_not_data(self):
        conn = established()
        conn.receive(data(1, encode_sack([(5, 9)])), 0.0)
        self.assertEqual(conn.take_delivered(), [])

    def test_retransmissions_keep_original_boundaries(self):
        conn = established()
        conn.send(b"a" * 700, 0.0)
        conn.send(b"b" * 700, 0.0)  # held by Nagle, then sent as its own segment
        conn.tick(0.04)
        first = [(p.seq, p.payload) for p in conn.take_packets()]
        conn.tick(1.0)
        conn.receive(ack(701, payload=b""), 1.01)
        conn.tick(conn.next_deadline())
        again = [(p.seq, p.payload) for p in conn.take_packets() if p.payload]
        self.assertTrue(set(again) <= set(first), (again, first))

    def test_fin_overtaking_data_from_a_peer_that_never_resends_it(self):
        # UP peers neither retransmit data after closing nor sequence their FIN.
        conn = established()
        conn.receive(data(1, b"abc"), 0.0)
        conn.receive(from_peer(FLAG_FIN, seq=10), 0.1)
        self.assertIs(conn.state, State.ESTABLISHED)
        conn.tick(90.1)
        self.assertIs(conn.state, State.CLOSE_WAIT)
        self.assertIn(StreamEvent.PEER_CLOSED, conn.take_events())
        self.assertEqual(conn.take_delivered(), [b"abc"])

    def test_unsequenced_fin_of_an_up_peer(self):
        conn = established()
        conn.receive(data(1, b"abc"), 0.0)
        conn.receive(from_peer(FLAG_FIN, seq=4), 0.1)  # FIN at the data's end
        self.assertIs(conn.state, State.CLOSE_WAIT)

    def test_no_fin_ack_echo_loop(self):
        # UP/U417 answer every FIN, even in TIME_WAIT, with FIN|ACK.
        conn = established()
        conn.close(0.0)
        conn.take_packets()
        for t in (0.1, 0.2, 0.3, 0.4):
            conn.receive(from_peer(FLAG_FIN | FLAG_ACK, seq=1, ack=2, window=0), t)
            replies = conn.take_packets()
            self.assertTrue(all(p.flags == FLAG_ACK for p in replies), replies)
            self.assertEqual(len(replies), 1)
        self.assertIs(conn.state, State.TIME_WAIT)

    def test_go_keepalive_probes_are_not_duplicate_acks(self):
        # A Go probe is a bare ACK repeating the last ack, with window 0.
        conn = established()
        conn.send(b"x" * 4096, 0.0)
        conn.take_packets()
        conn.receive(ack(1), 0.05)
        for t in (30, 60, 90):
            conn.receive(ack(1, window=0), t)
        self.assertEqual(conn.stats()["fast_retransmits"], 0)

    def test_our_keepalive_probe_is_no_duplicate_ack_for_go(self):
        conn = established(StreamConfig())
        conn.tick(30.0)
        (probe,) = conn.take_packets()
        self.assertTrue(probe.payload, "a bare ACK would count as a duplicate at a Go peer")
        self.assertTrue(looks_like_sack(probe.payload))

    def test_silent_go_peer_that_only_sends_its_own_probes_is_alive(self):
        conn = established(StreamConfig())
        for t in range(30, 400, 30):
            conn.tick(t)
            if t % 60 == 0:
                conn.receive(ack(1, window=0), t + 0.5)  # JF probes every 60 s, never answers ours
        self.assertIs(conn.state, State.ESTABLISHED)

    def test_one_write_of_up_to_mss_is_one_segment(self):
        # Port-444 handshake messages must fit in a single segment.
        conn = established()
        conn.send(b"j" * 1024, 0.0)
        self.assertEqual(len([p for p in conn.take_packets() if p.payload]), 1)
