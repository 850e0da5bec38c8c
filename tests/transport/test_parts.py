"""The engine's parts on their own: RTO estimation, congestion window, send queue, reassembly."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.transport.config import StreamConfig
from pilotnet.transport.congestion import CongestionControl
from pilotnet.transport.receiver import DUPLICATE, IN_ORDER, NO_SPACE, OUT_OF_ORDER, ReceiveBuffer
from pilotnet.transport.rto import RtoEstimator
from pilotnet.transport.sender import SendQueue
from pilotnet.wire.sack import looks_like_sack

CONFIG = StreamConfig()


class RtoTests(SynchronousTestCase):
    def test_initial_and_first_sample(self):
        rto = RtoEstimator(CONFIG)
        self.assertEqual(rto.rto, 1.0)
        rto.sample(0.1)
        self.assertEqual((rto.srtt, rto.rttvar), (0.1, 0.05))
        self.assertAlmostEqual(rto.rto, 0.3)

    def test_smoothing(self):
        rto = RtoEstimator(CONFIG)
        rto.sample(0.4)
        rto.sample(0.8)
        self.assertAlmostEqual(rto.rttvar, 0.75 * 0.2 + 0.25 * 0.4)
        self.assertAlmostEqual(rto.srtt, 0.875 * 0.4 + 0.125 * 0.8)

    def test_clamps(self):
        rto = RtoEstimator(CONFIG)
        rto.sample(0.001)
        self.assertEqual(rto.rto, 0.2)
        rto = RtoEstimator(CONFIG)
        rto.sample(30)
        self.assertEqual(rto.rto, 10.0)

    def test_backoff_doubles_once_and_is_forgiven(self):
        rto = RtoEstimator(CONFIG)
        rto.back_off()
        rto.back_off()
        self.assertEqual(rto.rto, 2.0)
        rto.forgive()
        self.assertEqual(rto.rto, 1.0)
        rto.sample(8)
        rto.back_off()
        self.assertEqual(rto.rto, 10.0)


class CongestionTests(SynchronousTestCase):
    def test_initial_window(self):
        cc = CongestionControl(CONFIG)
        self.assertEqual(cc.cwnd, 10 * 1024)
        self.assertEqual(cc.ssthresh, 512 * 1024)

    def test_slow_start_then_byte_counting(self):
        cc = CongestionControl(StreamConfig(initial_ssthresh=20 * 1024))
        cc.on_ack(4096)
        self.assertEqual(cc.cwnd, 14 * 1024)
        cc.on_ack(8192)
        self.assertEqual(cc.cwnd, 22 * 1024)
        cc.on_ack(22 * 1024)
        self.assertEqual(cc.cwnd, 23 * 1024)
        cc.on_ack(1)
        self.assertEqual(cc.cwnd, 23 * 1024 + 1)

    def test_cap(self):
        cc = CongestionControl(CONFIG)
        for _ in range(2000):
            cc.on_ack(cc.cwnd)
        self.assertEqual(cc.cwnd, 1024 * 1024)

    def test_fast_recovery_keeps_seven_tenths_once(self):
        cc = CongestionControl(CONFIG)
        cc.enter_fast_recovery(100 * 1024, 5000, None)
        self.assertEqual((cc.ssthresh, cc.cwnd, cc.in_recovery), (70 * 1024, 70 * 1024, True))
        cc.on_extra_dupack()
        self.assertEqual(cc.cwnd, 71 * 1024)
        cc.exit_recovery()
        self.assertEqual((cc.cwnd, cc.in_recovery), (70 * 1024, False))
        cc.enter_fast_recovery(1000, 9000, None)
        self.assertEqual(cc.ssthresh, 2048)

    def delivering(self, rates, started=1.0, round_trip=0.01):
        """A controller that saw one round trip at each of ``rates`` (bytes/s), ``round_trip`` apart."""
        cc = CongestionControl(CONFIG)
        now, delivered, sent = started, 0, 1
        cc.on_delivered(delivered, sent, now)  # the first round starts
        for rate in rates:
            now += round_trip
            delivered += int(rate * round_trip)
            sent = delivered + 1
            cc.on_delivered(delivered, sent, now)
        return cc

    def test_a_cut_keeps_the_path_full_and_5_ms_of_queue(self):
        # 10 MB/s delivered at best, 4 ms round trips at the least: a 40 kB pipe, 50 kB of queue in 5 ms.
        cc = self.delivering([5e6, 10e6, 8e6])
        cc.enter_fast_recovery(100_000, 1, 0.004)
        self.assertEqual(cc.ssthresh, 90_000)  # not 0.7 x 100,000: the queue was short
        cc = self.delivering([5e6, 10e6, 8e6])
        cc.enter_fast_recovery(200_000, 1, 0.004)
        self.assertEqual(cc.ssthresh, 140_000)  # a 16 ms queue still loses 0.3 of the flight
        cc = self.delivering([10e6])
        cc.enter_fast_recovery(30_000, 1, 0.004)
        self.assertEqual(cc.ssthresh, 30_000)  # never more than the flight

    def test_the_rate_is_the_best_of_the_last_ten_round_trips(self):
        cc = self.delivering([20e6] + [5e6] * 10)
        cc.enter_fast_recovery(150_000, 1, 0.001)
        self.assertEqual(cc.ssthresh, 105_000)  # 20 MB/s is forgotten: 5 MB/s x 6 ms = 30 kB < 0.7 x flight
        cc = self.delivering([20e6] + [5e6] * 9)
        cc.enter_fast_recovery(150_000, 1, 0.001)
        self.assertEqual(cc.ssthresh, 120_000)

    def test_a_round_lasts_until_what_was_sent_at_its_start_is_delivered(self):
        cc = CongestionControl(CONFIG)
        cc.on_delivered(0, 10_000, 1.0)
        cc.on_delivered(5_000, 20_000, 1.5)  # half-way: no sample yet
        cc.enter_fast_recovery(100_000, 1, 1.0)
        self.assertEqual(cc.ssthresh, 70_000)
        cc.on_delivered(10_000, 20_000, 2.0)  # 10 kB in one second
        cc.enter_fast_recovery(100_000, 1, 8.995)
        self.assertEqual(cc.ssthresh, 90_000)

    def test_timeout_restarts_at_initial_window(self):
        cc = CongestionControl(CONFIG)
        cc.enter_timeout_recovery(400 * 1024, 1)
        self.assertEqual((cc.ssthresh, cc.cwnd), (200 * 1024, 10 * 1024))
        cc.enter_timeout_recovery(10 * 1024, 2)  # same loss, still recovering: no second halving
        self.assertEqual(cc.ssthresh, 200 * 1024)


class SendQueueTests(SynchronousTestCase):
    def queue(self, data=b"", mss=4):
        q = SendQueue(mss, 1)
        if data:
            q.write(data)
        return q

    def test_segments_across_writes(self):
        q = self.queue(mss=4)
        for piece in (b"ab", b"cdefg", b"h"):
            q.write(piece)
        self.assertEqual([q.cut(min(4, q.unsent), 0).payload for _ in range(2)], [b"abcd", b"efgh"])
        self.assertEqual((q.una, q.nxt, q.unsent), (1, 9, 0))

    def test_never_cuts_a_segment_a_go_peer_would_read_as_sack(self):
        blob = b"SACK\x01" + bytes(8) + b"tail"
        q = self.queue(blob, mss=1024)
        first = q.cut(len(blob), 0)
        self.assertEqual(first.payload, b"SACK")
        rest = q.cut(q.unsent, 0)
        self.assertEqual(first.payload + rest.payload, blob)
        self.assertFalse(looks_like_sack(rest.payload))

    def test_acknowledge_and_karn(self):
        q = self.queue(b"x" * 12)
        a, b, c = (q.cut(4, t) for t in (0.0, 0.1, 0.2))
        q.mark_resent(b, 1, 0.5)
        self.assertAlmostEqual(q.acknowledge(5, 1.0), 1.0)
        self.assertIsNone(q.acknowledge(9, 1.0))  # b was resent: no sample
        self.assertIs(q.first_unacked(), c)

    def test_sack_marks_whole_segments_only(self):
        q = self.queue(b"x" * 16)
        segs = [q.cut(4, 0) for _ in range(4)]
        self.assertEqual(q.apply_sack([(5, 12)]), 4)  # [5,9) inside, [9,13) is not
        self.assertEqual([s.sacked for s in segs], [False, True, False, False])
        self.assertEqual(q.high_sacked, 12)
        self.assertEqual(q.lost_segments(1, q.high_sacked, 0.0, 1.0), [segs[0], segs[2]])
        q.acknowledge(9, 0)
        self.assertEqual(q.sacked_bytes, 0)

    def test_fin_takes_one_number(self):
        q = self.queue(b"ab")
        q.cut(2, 0)
        fin = q.cut_fin(0)
        self.assertEqual((fin.start, fin.end, fin.payload, q.nxt), (3, 4, None, 4))


class ReceiveBufferTests(SynchronousTestCase):
    def buffer(self, **kw):
        rb = ReceiveBuffer(StreamConfig(**kw))
        rb.nxt = 1
        return rb

    def test_it_keeps_out_of_order_whatever_its_window_let_the_sender_send(self):
        # A hole at the front and the rest of the advertised window behind it: kept, not dropped
        # for want of slots (the reference keeps 128, so a sender's window beyond that lost them).
        rb = self.buffer()
        mss = rb.unit
        slots = rb.window()
        self.assertEqual(slots, 512)
        outcomes = {rb.accept(1 + index * mss, b"x" * mss) for index in range(1, slots)}
        self.assertEqual(outcomes, {OUT_OF_ORDER})
        self.assertEqual(rb.accept(1, b"x" * mss), IN_ORDER)
        self.assertEqual(rb.nxt, 1 + slots * mss)

    def test_in_order_out_of_order_and_drain(self):
        rb = self.buffer()
        self.assertEqual(rb.accept(5, b"efgh"), OUT_OF_ORDER)
        self.assertEqual(rb.sack_blocks(), [(5, 9)])
        self.assertEqual(rb.accept(1, b"abcd"), IN_ORDER)
        self.assertEqual(b"".join(rb.take()), b"abcdefgh")
        self.assertEqual((rb.nxt, rb.out_of_order_count, rb.ooo_bytes), (9, 0, 0))

    def test_overlap_is_trimmed_not_dropped(self):
        rb = self.buffer()
        rb.accept(1, b"abcd")
        self.assertEqual(rb.accept(3, b"cdef"), IN_ORDER)
        self.assertEqual(rb.accept(2, b"bc"), DUPLICATE)
        self.assertEqual(b"".join(rb.take()), b"abcdef")

    def test_overlapping_out_of_order_segments(self):
        rb = self.buffer()
        rb.accept(5, b"efg")
        rb.accept(6, b"fghij")
        rb.accept(5, b"e")  # shorter duplicate of a held start
        self.assertEqual(rb.sack_blocks(), [(5, 11)])
        rb.accept(1, b"abcd")
        self.assertEqual(b"".join(rb.take()), b"abcdefghij")

    @given(st.lists(st.tuples(st.integers(1, 200), st.integers(1, 30)), max_size=60))
    def test_sack_blocks_are_the_merged_ranges_of_what_is_held(self, arrivals):
        """The ranges kept as segments come and go say what a walk over every held segment says."""
        rb = self.buffer(max_out_of_order=40)
        for seq, size in arrivals:
            rb.accept(seq, bytes(size))
            merged: list[list[int]] = []
            for start in rb._starts:
                end = start + len(rb._ooo[start])
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self.assertEqual(rb.sack_blocks(), [tuple(block) for block in merged[:4]])

    def test_at_most_four_sack_blocks_lowest_first(self):
        rb = self.buffer()
        for start in (41, 31, 21, 11, 51):
            rb.accept(start, b"xx")
        self.assertEqual(rb.sack_blocks(), [(11, 13), (21, 23), (31, 33), (41, 43)])

    def test_out_of_order_limit(self):
        rb = self.buffer(max_out_of_order=2)
        rb.accept(10, b"a")
        rb.accept(20, b"a")
        self.assertEqual(rb.accept(30, b"a"), NO_SPACE)

    def test_window_reflects_unconsumed_bytes_and_never_says_zero(self):
        rb = self.buffer(receive_buffer=8 * 1024)
        self.assertEqual(rb.window(), 8)
        rb.accept(1, b"x" * 3000)
        rb.take()
        self.assertEqual(rb.window(), 5)
        rb.accept(3001, b"x" * 5000)
        self.assertEqual(rb.window(), 1)
        self.assertEqual(rb.accept(8001, b"x" * 1024), IN_ORDER)  # the one slot of slack
        self.assertEqual(rb.accept(9025, b"x" * 1024), NO_SPACE)
        rb.consume(9024)
        self.assertEqual(rb.window(), 8)

    def test_window_unit_follows_larger_peer_segments(self):
        rb = self.buffer(receive_buffer=64 * 1024)
        rb.note_segment_size(4096)
        self.assertEqual(rb.window(), 16)
