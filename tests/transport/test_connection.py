"""Every state transition and sending/receiving rule of one connection, against a scripted peer."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import CONNECTION_FAILED, TIMEOUT
from pilotnet.transport import ConnectionClosed, State, StreamConfig, StreamConnection, StreamEvent
from pilotnet.wire.packet import FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN
from pilotnet.wire.sack import decode_sack, encode_sack, looks_like_sack

from .peer import QUIET, ack, data, dialer, established, from_peer


def payloads(packets):
    return [p.payload for p in packets if p.payload and p.flags == FLAG_ACK]


class HandshakeTests(SynchronousTestCase):
    def test_dialer_sends_syn_then_final_ack(self):
        conn = dialer()
        conn.open(0.0)
        (syn,) = conn.take_packets()
        self.assertEqual((syn.flags, syn.seq, syn.ack, syn.window), (FLAG_SYN, 0, 0, 512))
        self.assertIs(conn.state, State.SYN_SENT)
        conn.receive(from_peer(FLAG_SYN | FLAG_ACK, seq=0, ack=1, window=100), 0.2)
        (final,) = conn.take_packets()
        self.assertEqual((final.flags, final.seq, final.ack), (FLAG_ACK, 1, 1))
        self.assertIs(conn.state, State.ESTABLISHED)
        self.assertEqual(conn.take_events(), [StreamEvent.ESTABLISHED])
        self.assertEqual(conn.stats()["rto"], 1.0)  # the reference's start, whatever the SYN took
        self.assertEqual(conn.stats()["peer_window"], 100)

    def test_syn_ack_with_wrong_ack_is_dropped(self):
        conn = dialer()
        conn.open(0.0)
        conn.receive(from_peer(FLAG_SYN | FLAG_ACK, seq=0, ack=7), 0.1)
        self.assertIs(conn.state, State.SYN_SENT)
        self.assertEqual(conn.stats()["dropped"], 1)

    def test_acceptor_waits_in_syn_recv_and_answers_duplicate_syns(self):
        conn = StreamConnection.accept(from_peer(FLAG_SYN, window=300), 0.0, QUIET)
        (syn_ack,) = conn.take_packets()
        self.assertEqual((syn_ack.flags, syn_ack.seq, syn_ack.ack), (FLAG_SYN | FLAG_ACK, 0, 1))
        self.assertIs(conn.state, State.SYN_RECV)
        conn.receive(from_peer(FLAG_SYN), 1.0)
        self.assertEqual([p.flags for p in conn.take_packets()], [FLAG_SYN | FLAG_ACK])
        conn.receive(ack(1), 1.1)
        self.assertIs(conn.state, State.ESTABLISHED)
        self.assertEqual(conn.take_events(), [StreamEvent.ESTABLISHED])
        conn.receive(from_peer(FLAG_SYN), 2.0)  # a late duplicate SYN
        self.assertEqual([p.flags for p in conn.take_packets()], [FLAG_SYN | FLAG_ACK])

    def test_acceptor_established_by_data_when_final_ack_is_lost(self):
        conn = StreamConnection.accept(from_peer(FLAG_SYN), 0.0, QUIET)
        conn.receive(data(1, b"hello"), 0.1)
        self.assertIs(conn.state, State.ESTABLISHED)
        self.assertEqual(conn.take_delivered(), [b"hello"])

    def test_acceptor_repeats_syn_ack_then_gives_up_without_final_ack(self):
        conn = StreamConnection.accept(from_peer(FLAG_SYN), 0.0, QUIET)
        conn.take_packets()
        times = []
        while conn.next_deadline() is not None and conn.next_deadline() < 10.0:
            times.append(conn.next_deadline())
            conn.tick(times[-1])
        self.assertEqual(times, [1, 3, 7])
        self.assertEqual([p.flags for p in conn.take_packets()], [FLAG_SYN | FLAG_ACK] * 3)
        conn.tick(10.0)
        self.assertIs(conn.state, State.CLOSED)
        self.assertEqual(conn.take_events(), [StreamEvent.TIMED_OUT, StreamEvent.CLOSED])

    def test_syn_backoff_relay_hint_and_give_up(self):
        conn = dialer()
        conn.open(0.0)
        conn.take_packets()
        times = []
        while conn.state is State.SYN_SENT:
            now = conn.next_deadline()
            conn.tick(now)
            times.append((now, [p.flags for p in conn.take_packets()], conn.take_events()))
        self.assertEqual([t for t, _, _ in times], [1, 3, 7, 10, 16, 24, 32])
        self.assertEqual(sum(len(f) for _, f, _ in times), 6)
        self.assertEqual(times[2][2], [StreamEvent.RELAY_HINT])
        self.assertEqual(times[-1][2], [StreamEvent.TIMED_OUT, StreamEvent.CLOSED])
        self.assertEqual(conn.error.code, TIMEOUT)
        self.assertIsNone(conn.next_deadline())

    def test_rst_while_dialing_is_refusal(self):
        conn = dialer()
        conn.open(0.0)
        conn.receive(from_peer(FLAG_RST), 0.1)
        self.assertEqual(conn.take_events(), [StreamEvent.RESET, StreamEvent.CLOSED])
        self.assertEqual(conn.error.code, CONNECTION_FAILED)
        self.assertIn("refused", str(conn.error))

    def test_writes_before_establishment_are_sent_after(self):
        conn = dialer()
        conn.open(0.0)
        conn.send(b"early", 0.0)
        self.assertEqual(len(conn.take_packets()), 1)
        conn.receive(from_peer(FLAG_SYN | FLAG_ACK, ack=1), 0.1)
        self.assertEqual(payloads(conn.take_packets()), [b"early"])


class SendingTests(SynchronousTestCase):
    def test_segmentation_at_mss_and_initial_window(self):
        conn = established()
        conn.send(b"x" * 20000, 1.0)
        sent = conn.take_packets()
        self.assertEqual([len(p.payload) for p in sent], [1024] * 10)
        self.assertEqual([p.seq for p in sent[:3]], [1, 1025, 2049])
        self.assertEqual(conn.stats()["flight"], 10240)

    def test_peer_window_in_segments_limits_flight(self):
        conn = established(peer_window=3)
        conn.send(b"x" * 20000, 1.0)
        self.assertEqual(len(conn.take_packets()), 3)

    def test_nagle_holds_small_segment_while_data_is_in_flight(self):
        conn = established()
        conn.send(b"a", 1.0)
        self.assertEqual(payloads(conn.take_packets()), [b"a"])
        conn.send(b"b", 1.01)
        conn.send(b"c", 1.02)
        self.assertEqual(conn.take_packets(), [])
        self.assertAlmostEqual(conn.next_deadline(), 1.05)
        conn.tick(1.05)
        self.assertEqual(payloads(conn.take_packets()), [b"bc"])

    def test_nagle_releases_on_ack(self):
        conn = established()
        conn.send(b"a", 1.0)
        conn.send(b"b", 1.0)
        conn.take_packets()
        conn.receive(ack(2), 1.01)
        self.assertEqual(payloads(conn.take_packets()), [b"b"])

    def test_nodelay(self):
        conn = established(StreamConfig(nodelay=True, keepalive_interval=None, idle_timeout=None))
        conn.send(b"a", 1.0)
        conn.send(b"b", 1.0)
        self.assertEqual(payloads(conn.take_packets()), [b"a", b"b"])

    def test_write_after_close_is_an_error(self):
        conn = established()
        conn.close(1.0)
        error = self.assertRaises(ConnectionClosed, conn.send, b"x", 1.0)
        self.assertEqual(error.code, CONNECTION_FAILED)


class ReceivingTests(SynchronousTestCase):
    def test_delayed_ack_every_second_segment(self):
        conn = established()
        conn.receive(data(1, b"a" * 100), 1.0)
        self.assertEqual(conn.take_packets(), [])
        conn.receive(data(101, b"b" * 100), 1.001)
        (a,) = conn.take_packets()
        self.assertEqual((a.ack, a.payload), (201, b""))

    def test_batched_acks_acknowledge_a_whole_batch_once(self):
        conn = established()
        conn.batch_acks = True
        for index in range(10):
            conn.receive(data(1 + 100 * index, b"x" * 100), 1.0)
        self.assertEqual(conn.take_packets(), [])
        conn.flush_acks()
        (a,) = conn.take_packets()
        self.assertEqual((a.ack, a.payload), (1001, b""))
        conn.flush_acks()
        self.assertEqual(conn.take_packets(), [])

    def test_batched_acks_leave_a_lone_segment_to_the_delayed_ack_timer(self):
        conn = established()
        conn.batch_acks = True
        conn.receive(data(1, b"a"), 1.0)
        conn.flush_acks()
        self.assertEqual(conn.take_packets(), [])
        conn.tick(1.04)
        self.assertEqual([p.ack for p in conn.take_packets()], [2])

    def test_batched_acks_answer_a_batch_of_gaps_once_at_its_end(self):
        conn = established()
        conn.batch_acks = True
        conn.receive(data(11, b"k" * 10), 1.0)
        conn.receive(data(31, b"m" * 10), 1.0)
        self.assertEqual(conn.take_packets(), [])  # not one ACK per segment
        conn.flush_acks()
        (sack,) = conn.take_packets()
        self.assertEqual((sack.ack, decode_sack(sack.payload)), (1, [(11, 21), (31, 41)]))
        conn.receive(data(1, b"a" * 10), 1.001)  # the first hole filled: said at the batch's end too
        conn.flush_acks()
        (filled,) = conn.take_packets()
        self.assertEqual((filled.ack, decode_sack(filled.payload)), (21, [(31, 41)]))

    def test_batched_gap_news_is_not_swallowed_by_outgoing_data(self):
        conn = established()
        conn.batch_acks = True
        conn.receive(data(11, b"k" * 10), 1.0)
        conn.send(b"reply", 1.0)  # our data carries the cumulative ACK, but no SACK blocks
        self.assertEqual(payloads(conn.take_packets()), [b"reply"])
        conn.flush_acks()
        (sack,) = conn.take_packets()
        self.assertEqual(decode_sack(sack.payload), [(11, 21)])

    def test_delayed_ack_timer(self):
        conn = established()
        conn.receive(data(1, b"a"), 1.0)
        self.assertAlmostEqual(conn.next_deadline(), 1.04)
        conn.tick(1.04)
        self.assertEqual([p.ack for p in conn.take_packets()], [2])

    def test_out_of_order_gets_immediate_ack_with_sack(self):
        conn = established()
        conn.receive(data(11, b"k" * 10), 1.0)
        conn.receive(data(31, b"m" * 10), 1.0)
        last = conn.take_packets()[-1]
        self.assertEqual(last.ack, 1)
        self.assertEqual(decode_sack(last.payload), [(11, 21), (31, 41)])
        conn.receive(data(1, b"a" * 10), 1.1)
        self.assertEqual(decode_sack(conn.take_packets()[-1].payload), [(31, 41)])
        self.assertEqual(b"".join(conn.take_delivered()), b"a" * 10 + b"k" * 10)
        self.assertEqual(conn.stats()["out_of_order"], 1)

    def test_duplicate_data_is_acked_at_once(self):
        conn = established()
        conn.receive(data(1, b"abc"), 1.0)
        conn.receive(data(1, b"abc"), 1.001)
        self.assertEqual([p.ack for p in conn.take_packets()], [4])
        self.assertEqual(conn.take_delivered(), [b"abc"])

    def test_window_reflects_unconsumed_bytes_and_reopens(self):
        config = StreamConfig(receive_buffer=8 * 1024, keepalive_interval=None, idle_timeout=None)
        conn = established(config)
        for i in range(8):
            conn.receive(data(1 + i * 1024, b"x" * 1024), 1.0)
        self.assertEqual(conn.take_packets()[-1].window, 1)
        chunks = conn.take_delivered(consume=False)
        conn.consumed(sum(map(len, chunks)))
        (update,) = conn.take_packets()
        self.assertEqual(update.window, 8)


class LossRecoveryTests(SynchronousTestCase):
    def test_rto_retransmits_same_boundaries_then_resets_after_eighth_transmission(self):
        conn = established()
        conn.send(b"x" * 1000, 0.0)
        first = conn.take_packets()
        seen = []
        while conn.state is State.ESTABLISHED:
            now = conn.next_deadline()
            conn.tick(now)
            seen.append((round(now, 6), conn.take_packets()))
        self.assertEqual([t for t, _ in seen], [1, 3, 5, 7, 9, 11, 13, 15])
        retransmitted = [p for _, ps in seen[:-1] for p in ps if p.seq == 1]
        self.assertEqual(len(retransmitted), 7)
        self.assertTrue(all(p.payload == first[0].payload for p in retransmitted))
        self.assertEqual([p.flags for p in seen[-1][1]], [FLAG_RST])
        self.assertEqual(conn.error.code, TIMEOUT)

    def test_fast_retransmit_on_three_duplicate_acks(self):
        conn = established()
        conn.send(b"x" * 5120, 0.0)
        conn.take_packets()
        for _ in range(3):
            conn.receive(ack(1), 0.1)
        (resent,) = conn.take_packets()
        self.assertEqual(resent.seq, 1)
        stats = conn.stats()
        self.assertEqual((stats["fast_retransmits"], stats["duplicate_acks"]), (1, 3))
        self.assertEqual(stats["ssthresh"], 3584)  # 0.7 of the 5 KiB in flight

    def test_sack_drives_retransmission_of_the_holes_only(self):
        conn = established()
        conn.send(b"x" * 10240, 0.0)
        conn.take_packets()
        # segments 0 and 2 lost; the peer SACKs 1 and 3..9
        blob = encode_sack([(1025, 2049), (3073, 10241)])
        conn.receive(ack(1, payload=blob), 0.1)
        self.assertEqual(sorted(p.seq for p in conn.take_packets()), [1, 2049])
        self.assertEqual(conn.stats()["sacked_bytes"], 8192)
        conn.receive(ack(10241), 0.2)
        self.assertEqual(conn.stats()["flight"], 0)

    def test_rto_is_not_doubled_again_within_an_episode(self):
        conn = established()
        conn.send(b"x" * 100, 0.0)
        conn.tick(1.0)
        self.assertEqual(conn.stats()["rto"], 2.0)
        conn.tick(3.0)
        self.assertEqual(conn.stats()["rto"], 2.0)
        conn.receive(ack(101), 3.5)
        self.assertEqual(conn.stats()["rto"], 1.0)

    def test_full_peer_buffer_is_probed_without_giving_up(self):
        conn = established(peer_window=1)
        conn.send(b"x" * 4096, 0.0)
        conn.take_packets()
        conn.receive(ack(1, window=1), 0.05)  # alive, but nothing taken
        times = []
        for _ in range(12):
            now = conn.next_deadline()
            conn.tick(now)
            conn.receive(ack(1, window=1), now + 0.05)
            times.append(round(now, 2))
        self.assertIs(conn.state, State.ESTABLISHED)
        self.assertEqual(times[:4], [1.0, 1.5, 2.5, 4.5])
        self.assertGreater(conn.stats()["window_probes"], 10)


class CloseTests(SynchronousTestCase):
    def test_active_close_through_time_wait(self):
        conn = established()
        conn.send(b"abc", 1.0)
        conn.close(1.0)
        packets = conn.take_packets()
        self.assertEqual([(p.flags, p.seq) for p in packets], [(FLAG_ACK, 1), (FLAG_FIN | FLAG_ACK, 4)])
        self.assertEqual(packets[1].ack, 1)  # our FIN acknowledges what we received
        self.assertIs(conn.state, State.FIN_WAIT)
        conn.receive(ack(5), 1.1)
        self.assertIs(conn.state, State.FIN_WAIT)
        conn.receive(from_peer(FLAG_FIN, seq=1), 1.2)
        self.assertIs(conn.state, State.TIME_WAIT)
        (reply,) = conn.take_packets()
        self.assertEqual((reply.flags, reply.ack), (FLAG_ACK, 2))
        self.assertEqual(conn.take_events(), [StreamEvent.PEER_CLOSED])
        self.assertEqual(conn.next_deadline(), 11.2)
        conn.tick(11.2)
        self.assertEqual(conn.take_events(), [StreamEvent.CLOSED])
        self.assertIsNone(conn.error)

    def test_passive_close_half_closed_then_last_ack(self):
        conn = established()
        conn.receive(from_peer(FLAG_FIN, seq=1), 1.0)
        self.assertIs(conn.state, State.CLOSE_WAIT)
        self.assertEqual([(p.flags, p.ack) for p in conn.take_packets()], [(FLAG_ACK, 2)])
        conn.send(b"still writing", 1.1)
        self.assertEqual(payloads(conn.take_packets()), [b"still writing"])
        conn.close(1.2)
        self.assertIs(conn.state, State.LAST_ACK)
        (fin,) = conn.take_packets()
        self.assertEqual((fin.flags, fin.seq), (FLAG_FIN | FLAG_ACK, 14))
        conn.receive(ack(15, seq=2), 1.3)
        self.assertIs(conn.state, State.CLOSED)
        self.assertEqual(conn.take_events(), [StreamEvent.PEER_CLOSED, StreamEvent.CLOSED])

    def test_simultaneous_close(self):
        conn = established()
        conn.close(1.0)
        conn.take_packets()
        conn.receive(from_peer(FLAG_FIN, seq=1), 1.1)
        self.assertIs(conn.state, State.CLOSING)
        conn.receive(ack(2, seq=2), 1.2)
        self.assertIs(conn.state, State.TIME_WAIT)

    def test_fin_is_retransmitted(self):
        conn = established()
        conn.close(1.0)
        conn.take_packets()
        conn.tick(2.0)
        self.assertEqual([(p.flags, p.seq) for p in conn.take_packets()], [(FLAG_FIN | FLAG_ACK, 1)])

    def test_fin_that_overtakes_data_waits_for_it(self):
        conn = established()
        conn.receive(from_peer(FLAG_FIN, seq=6), 1.0)
        self.assertIs(conn.state, State.ESTABLISHED)
        conn.receive(data(1, b"hello"), 1.1)
        self.assertIs(conn.state, State.CLOSE_WAIT)
        self.assertEqual(conn.take_delivered(), [b"hello"])
        self.assertEqual(conn.take_packets()[-1].ack, 7)

    def test_abort_sends_rst(self):
        conn = established()
        conn.abort(1.0)
        self.assertEqual([p.flags for p in conn.take_packets()], [FLAG_RST])
        self.assertEqual(conn.take_events(), [StreamEvent.CLOSED])

    def test_peer_rst_resets(self):
        conn = established()
        conn.receive(from_peer(FLAG_RST), 1.0)
        self.assertEqual(conn.take_events(), [StreamEvent.RESET, StreamEvent.CLOSED])
        self.assertIs(conn.state, State.CLOSED)


class LivenessTests(SynchronousTestCase):
    def test_keepalive_probes_then_dead_peer_rst(self):
        conn = established(StreamConfig(idle_timeout=None))
        sent = []
        while conn.state is State.ESTABLISHED:
            now = conn.next_deadline()
            conn.tick(now)
            sent.append((now, conn.take_packets()))
        self.assertEqual([t for t, _ in sent], [30, 60, 90, 120])
        probe = sent[0][1][0]
        self.assertTrue(looks_like_sack(probe.payload))
        self.assertEqual(decode_sack(probe.payload), [(1, 1)])
        self.assertEqual([p.flags for p in sent[-1][1]], [FLAG_RST])
        self.assertEqual(conn.error.code, TIMEOUT)

    def test_any_packet_from_the_peer_keeps_it_alive(self):
        conn = established(StreamConfig(idle_timeout=None))
        for now in (30, 60, 90):
            conn.tick(now)
        conn.receive(ack(1, window=0), 95)  # a Go keepalive probe
        conn.tick(120)
        self.assertIs(conn.state, State.ESTABLISHED)
        conn.note_peer_alive(140)
        self.assertEqual(conn.next_deadline(), 170)

    def test_our_probe_is_answered(self):
        conn = established()
        probe = encode_sack([(1, 1)])
        conn.receive(ack(1, payload=probe), 5.0)
        (reply,) = conn.take_packets()
        self.assertEqual((reply.flags, reply.payload), (FLAG_ACK, b""))

    def test_idle_timeout_closes_gracefully(self):
        conn = established(StreamConfig(keepalive_interval=None))
        self.assertEqual(conn.next_deadline(), 120)
        conn.tick(120)
        self.assertIs(conn.state, State.FIN_WAIT)
        self.assertEqual([p.flags for p in conn.take_packets()], [FLAG_FIN | FLAG_ACK])


class StatsTests(SynchronousTestCase):
    def test_snapshot_has_every_counter(self):
        stats = established().stats()
        for key in ("bytes_sent", "bytes_received", "segments_sent", "segments_received", "retransmissions",
                    "fast_retransmits", "sacked_bytes", "duplicate_acks", "cwnd", "ssthresh", "srtt", "rttvar",
                    "rto", "flight", "peer_window", "receive_window", "out_of_order"):
            self.assertIn(key, stats)


class CloseTimeoutTests(SynchronousTestCase):
    """After our close, a peer that stays up but never finishes cannot hold the connection forever."""

    def run_until_closed(self, conn, answer, limit=1000.0):
        """Tick ``conn`` to each deadline, letting ``answer(packets, now)`` reply; the time it closed."""
        now = 0.0
        while conn.state is not State.CLOSED:
            now = conn.next_deadline()
            self.assertIsNotNone(now)
            self.assertLess(now, limit, f"still {conn.state.name} at {now}")
            conn.tick(now)
            answer(conn.take_packets(), now)
        return now

    def test_fin_wait_ends_when_the_peer_answers_probes_but_never_closes(self):
        conn = established(StreamConfig())
        conn.close(1.0)
        conn.take_packets()
        conn.receive(ack(2), 1.1)  # our FIN is acknowledged; the peer's never comes

        def keep_answering(packets, now):
            if any(p.flags == FLAG_ACK for p in packets):
                conn.receive(ack(2), now)  # it answers every keepalive probe

        ended = self.run_until_closed(conn, keep_answering)
        self.assertEqual(ended, 1.1 + StreamConfig().close_timeout)
        self.assertIsNone(conn.error)

    def test_last_ack_ends_when_the_peer_holds_its_window_shut(self):
        conn = established(StreamConfig(), peer_window=1)
        conn.receive(from_peer(FLAG_FIN, seq=1, ack=1, window=1), 0.5)
        conn.send(b"x" * 4096, 1.0)
        conn.close(1.0)
        self.assertIs(conn.state, State.LAST_ACK)
        conn.take_packets()
        conn.receive(ack(1, seq=2, window=1), 1.05)  # full: nothing taken, ever

        def answer_full(packets, now):
            if packets and packets[-1].flags != FLAG_RST:
                conn.receive(ack(1, seq=2, window=1), now)

        ended = self.run_until_closed(conn, answer_full)
        self.assertLessEqual(ended, 1.0 + StreamConfig().close_timeout + StreamConfig().window_probe_max)
        self.assertEqual(conn.error.code, TIMEOUT)
        self.assertEqual(conn.take_events()[-2:], [StreamEvent.TIMED_OUT, StreamEvent.CLOSED])

    def test_a_half_closed_download_keeps_the_connection_while_bytes_arrive(self):
        config = StreamConfig(keepalive_interval=None, idle_timeout=None)
        conn = established(config)
        conn.close(0.0)
        conn.take_packets()
        conn.receive(ack(2), 0.0)
        seq = 1
        for second in range(1, 200):
            conn.receive(data(seq, b"chunk", ack=2), float(second))
            seq += 5
            conn.take_delivered()
            conn.tick(float(second))
            self.assertIs(conn.state, State.FIN_WAIT)
        conn.tick(198.0 + config.close_timeout)
        self.assertIs(conn.state, State.FIN_WAIT)
        conn.tick(199.0 + config.close_timeout)  # then the peer goes quiet without closing
        self.assertIs(conn.state, State.CLOSED)


def measured(srtt=0.01):
    """An established dialer whose first segment came back after ``srtt``: a 10 ms smoothed RTT."""
    conn = established()
    conn.send(b"x" * 1024, 0.0)
    conn.take_packets()
    conn.receive(ack(1025), srtt)
    return conn


class LossDetectionTests(SynchronousTestCase):
    """RACK-style detection of lost retransmissions, the tail-loss probe, one cut per episode."""

    def test_lost_retransmission_is_resent_once_a_later_resend_arrives(self):
        conn = measured()
        conn.send(b"x" * 10240, 0.02)
        conn.take_packets()
        # Segments 0 and 2 of the burst lost: both are resent, in that order.
        conn.receive(ack(1025, payload=encode_sack([(2049, 3073), (4097, 11265)])), 0.03)
        self.assertEqual([p.seq for p in conn.take_packets()], [1025, 3073])
        # Only the resend of segment 2 arrives: segment 0's resend, sent before it, was lost.
        conn.receive(ack(1025, payload=encode_sack([(2049, 11265)])), 0.035)
        self.assertEqual(conn.take_packets(), [])  # within the reordering allowance (5/4 SRTT)
        deadline = conn.next_deadline()
        self.assertLess(deadline, 0.2)  # long before any RTO
        conn.tick(deadline)
        self.assertEqual([p.seq for p in conn.take_packets()], [1025])
        conn.receive(ack(11265), deadline + 0.01)
        stats = conn.stats()
        self.assertEqual((stats["timeouts"], stats["flight"]), (0, 0))

    def test_tail_loss_probe_turns_a_lost_tail_into_fast_recovery(self):
        conn = measured()
        conn.send(b"x" * 10240, 0.02)
        conn.take_packets()
        conn.receive(ack(8193), 0.03)  # the last three segments were lost
        deadline = conn.next_deadline()
        self.assertAlmostEqual(deadline, 0.03 + 2 * conn.stats()["srtt"])
        conn.tick(deadline)
        (probe,) = conn.take_packets()
        self.assertEqual(probe.seq, 10241)  # the newest segment
        self.assertEqual(conn.stats()["tail_probes"], 1)
        conn.receive(ack(8193, payload=encode_sack([(10241, 11265)])), deadline + 0.01)
        self.assertEqual([p.seq for p in conn.take_packets()], [8193, 9217])
        conn.receive(ack(11265), deadline + 0.02)
        stats = conn.stats()
        self.assertEqual((stats["timeouts"], stats["fast_retransmits"], stats["flight"]), (0, 1, 0))

    def test_unanswered_probes_repeat_backing_off_until_the_rto(self):
        conn = measured()
        conn.send(b"x" * 4096, 0.02)
        conn.take_packets()
        probes = []
        while conn.stats()["timeouts"] == 0:
            deadline = conn.next_deadline()
            conn.tick(deadline)
            probes += [(round(deadline, 6), p.seq) for p in conn.take_packets()]
        # 2·SRTT after the last news, then twice as long after each unanswered probe; the RTO (200 ms) ends it.
        self.assertEqual(probes[:4], [(0.04, 4097), (0.08, 4097), (0.16, 4097), (0.22, 1025)])
        self.assertEqual(conn.stats()["tail_probes"], 3)

    def test_repeated_probes_do_not_hasten_giving_up(self):
        conn = measured()
        conn.send(b"x" * 1024, 0.02)
        conn.take_packets()
        now = 0.02
        while conn.state is not State.CLOSED:
            now = conn.next_deadline()
            conn.tick(now)
            conn.take_packets()
        # The peer vanished with one segment out: the RTO schedule decides, as with a single
        # probe (the first RTO, then 6 doubled ones, 400 ms each), not how often we probed.
        self.assertEqual((conn.stats()["timeouts"], conn.stats()["tail_probes"]), (6, 2))
        self.assertAlmostEqual(now, 0.02 + 0.2 + 6 * 0.4)

    def test_an_answer_to_a_probe_restarts_the_backoff(self):
        conn = measured()
        conn.send(b"x" * 4096, 0.02)
        conn.take_packets()
        conn.tick(0.04)
        conn.tick(0.08)
        conn.take_packets()
        conn.receive(ack(2049), 0.09)  # news: the first segment arrived
        self.assertAlmostEqual(conn.next_deadline(), 0.09 + 2 * conn.stats()["srtt"])

    def test_a_lone_segment_probe_leaves_room_for_the_delayed_ack(self):
        conn = measured()
        conn.send(b"x" * 100, 0.02)
        conn.take_packets()
        srtt = conn.stats()["srtt"]
        self.assertAlmostEqual(conn.next_deadline(), 0.02 + 2 * srtt + QUIET.delayed_ack_delay)

    def test_the_window_is_cut_once_per_episode_from_the_flight(self):
        conn = measured()
        conn.send(b"x" * 10240, 0.02)
        conn.take_packets()
        conn.receive(ack(1025, payload=encode_sack([(2049, 5121)])), 0.03)
        # 0.7 of the 10 KiB in flight, SACKed bytes included (FlightSize, RFC 6675).
        self.assertEqual(conn.stats()["ssthresh"], 7168)
        conn.receive(ack(1025, payload=encode_sack([(2049, 5121), (6145, 11265)])), 0.031)
        conn.receive(ack(5121, payload=encode_sack([(6145, 11265)])), 0.04)
        stats = conn.stats()
        self.assertEqual((stats["ssthresh"], stats["fast_retransmits"]), (7168, 1))
        self.assertGreaterEqual(stats["cwnd"], 2 * 1024)

    def test_the_cut_is_from_the_flight_before_the_ack_that_found_the_loss(self):
        conn = measured()
        conn.send(b"x" * 10240, 0.02)
        conn.take_packets()
        # One ACK for a whole burst, as a batching receiver sends: four segments acknowledged,
        # the fifth lost, the rest SACKed. 10 KiB were out when it came, 6 KiB after it.
        conn.receive(ack(5121, payload=encode_sack([(6145, 11265)])), 0.03)
        self.assertEqual(conn.stats()["ssthresh"], 7168)  # 0.7 x 10 KiB, not 0.7 x 6 KiB

    def test_reordering_within_the_allowance_is_not_loss(self):
        conn = measured()
        conn.send(b"x" * 2048, 0.02)
        conn.take_packets()
        conn.receive(ack(1025, payload=encode_sack([(2049, 3073)])), 0.021)  # one segment overtook one
        conn.receive(ack(3073), 0.022)
        stats = conn.stats()
        self.assertEqual((stats["retransmissions"], stats["fast_retransmits"]), (0, 0))
