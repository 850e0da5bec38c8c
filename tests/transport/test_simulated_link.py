"""Two engines over a simulated lossy link: everything arrives, in order, and both ends close."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import TIMEOUT
from pilotnet.transport import State, StreamConfig, StreamEvent
from pilotnet.transport.simlink import Impairment, SimLink

# Give-up bounds with the default constants (docs/stream-transport.md):
# a dial fails 32 s after the first SYN; an established connection whose
# link goes dark resets at its 8th transmission's expiry, at most
# max_rto + 7 * max_rto = 80 s after the data was first sent, and an idle one
# after 4 keepalive intervals (120 s) counted from the last packet it heard,
# which may still have been in flight when the link went dark.
DIAL_BOUND = 32.0
DARK_BOUND = 80.0
IDLE_BOUND = 120.0

impairments = st.builds(
    Impairment,
    loss=st.floats(0, 0.3),
    duplicate=st.floats(0, 0.1),
    reorder=st.floats(0, 0.3),
    delay=st.floats(0.001, 0.05),
    jitter=st.floats(0, 0.02),
)


def exchange(link, data_a, data_b, limit):
    # The handshake runs over a clean link: under 30% loss each way, seven
    # lost SYN exchanges in a row (a legitimate dial failure) are too likely.
    impairments = link.impairments
    link.impairments = {"a": Impairment(), "b": Impairment()}
    link.open()
    assert link.run(lambda: link.b is not None and link.a.state is State.ESTABLISHED, link.now + 10)
    link.impairments = impairments
    link.send("a", data_a)
    assert link.run(lambda: link.b is not None and link.b.state is State.ESTABLISHED, link.now + 60)
    link.send("b", data_b)
    link.close("a")
    link.close("b")
    return link.run(link.closed, link.now + limit)


class SimulatedLinkTests(SynchronousTestCase):
    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(impairment=impairments, size_a=st.integers(0, 3 << 20), size_b=st.integers(0, 200_000),
           seed=st.integers(0, 2**32 - 1), mss=st.sampled_from([512, 1024, 1400]))
    def test_lossy_link_delivers_both_directions_and_closes(self, impairment, size_a, size_b, seed, mss):
        rnd = random.Random(seed)
        data_a, data_b = rnd.randbytes(size_a), rnd.randbytes(size_b)
        # At 30% loss a segment is lost 8 times in a row with probability
        # 0.3**8, which a multi-megabyte transfer does meet: the reference's
        # give-up rule is tested elsewhere, here it only needs more room.  For
        # the same reason TIME_WAIT is longer than the reference's 10 s: when
        # our last ACK is lost, the peer's retransmission (its RTO may be
        # seconds by then) must still find us, and at 30% loss each way two or
        # three attempts in 10 s all fail too often.  close_timeout (a closing stream's
        # time without progress) gets the room of those 20 transmissions at max_rto too.
        config = StreamConfig(mss=mss, max_transmissions=20, time_wait=60.0, close_timeout=20 * 10.0)
        link = SimLink(impairment, config=config, seed=seed, wire=True)
        self.assertTrue(exchange(link, data_a, data_b, limit=3600), (link.a, link.b))
        self.assertEqual(bytes(link.received["b"]), data_a)
        self.assertEqual(bytes(link.received["a"]), data_b)
        for side in "ab":
            self.assertEqual(link.events[side][-1], StreamEvent.CLOSED)
            self.assertNotIn(StreamEvent.RESET, link.events[side])
            self.assertIsNone(link.conn(side).error)

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(loss=st.floats(0, 0.1), reorder=st.floats(0, 0.3), jitter=st.floats(0, 0.005),
           size=st.integers(1, 400_000), seed=st.integers(0, 2**32 - 1))
    def test_random_loss_never_drops_the_window_below_two_segments(self, loss, reorder, jitter, size, seed):
        """Loss detection and recovery keep every byte exactly once, and the window off the floor's underside."""
        link = SimLink(Impairment(loss=loss, reorder=reorder, delay=0.002, jitter=jitter), seed=seed)
        link.open()
        self.assertTrue(link.run(lambda: link.a.state is State.ESTABLISHED, 10))
        data = random.Random(seed).randbytes(size)
        link.send("a", data)
        floor = 2 * link.a.config.mss
        while len(link.received["b"]) < size and link.now < 600:
            self.assertTrue(link.step())
            self.assertGreaterEqual(link.a._cc.cwnd, floor)
        self.assertEqual(bytes(link.received["b"]), data)
        self.assertIsNone(link.a.error)

    def test_random_loss_on_a_path_without_queue_costs_little_window(self):
        """Each loss episode keeps the path full (delivery rate x lowest round trip), not 0.7 of the flight.

        2% random loss, 10 ms round trips, no bottleneck queue: before the
        delivery-rate floor these transfers took 11 times the lossless time.
        """
        def transfer_time(loss, seed, size=2_000_000):
            link = SimLink(Impairment(loss=loss, delay=0.005), seed=seed)
            link.open()
            self.assertTrue(link.run(lambda: link.a.state is State.ESTABLISHED, 10))
            started = link.now
            link.send("a", bytes(size))
            self.assertTrue(link.run(lambda: len(link.received["b"]) >= size, 600))
            return link.now - started

        lossless = transfer_time(0.0, 1)
        lossy = sum(transfer_time(0.02, seed) for seed in (1, 2, 3)) / 3
        self.assertLess(lossy, 6 * lossless)

    def test_sequence_numbers_wrap(self):
        config = StreamConfig(initial_sequence=(1 << 32) - 50_000)
        link = SimLink(Impairment(loss=0.1, reorder=0.1), config=config, seed=3, wire=True)
        data = random.Random(1).randbytes(200_000)
        self.assertTrue(exchange(link, data, data[:70_000], limit=600))
        self.assertEqual(bytes(link.received["b"]), data)
        self.assertEqual(bytes(link.received["a"]), data[:70_000])

    def test_dark_link_while_dialing(self):
        link = SimLink(seed=1)
        link.dark = True
        link.open()
        link.run(lambda: link.a.state is State.CLOSED, 1000)
        self.assertLessEqual(link.now, DIAL_BOUND)
        self.assertEqual(link.a.error.code, TIMEOUT)

    @settings(max_examples=6, deadline=None)
    @given(size=st.integers(1, 500_000), dark_after=st.floats(0, 0.5), seed=st.integers(0, 1000))
    def test_link_going_dark_makes_both_ends_give_up(self, size, dark_after, seed):
        link = SimLink(Impairment(delay=0.01), seed=seed)
        link.open()
        link.run(lambda: link.b is not None and link.b.state is State.ESTABLISHED, 10)
        link.send("a", bytes(size))
        start = link.now
        link.run(lambda: link.now >= start + dark_after, start + 1)
        link.dark = True
        went_dark = link.now
        self.assertTrue(link.run(link.closed, went_dark + 1000))
        self.assertLessEqual(link.now - went_dark, max(DARK_BOUND, IDLE_BOUND) + 1)
        for side in "ab":
            self.assertIn(StreamEvent.TIMED_OUT, link.events[side])
            self.assertEqual(link.conn(side).error.code, TIMEOUT)
