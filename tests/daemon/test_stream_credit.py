"""Credit accounting for a client's stream data on the control socket."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.stream_credit import StreamCredit
from pilotnet.driver.commands import CREDIT_BATCH


class WriteCreditTests(SynchronousTestCase):
    def test_small_writes_are_credited_a_batch_at_a_time(self):
        credit = StreamCredit()
        returned = [credit.took(64, below_high_water=True) for _ in range(CREDIT_BATCH // 64)]
        self.assertEqual(returned[:-1], [0] * (len(returned) - 1))
        self.assertEqual(returned[-1], CREDIT_BATCH)
        self.assertEqual(credit.uncredited, 0)

    def test_above_the_high_water_mark_credit_waits_for_the_buffer_to_drain(self):
        credit = StreamCredit()
        self.assertEqual(credit.took(CREDIT_BATCH * 2, below_high_water=False), 0)
        self.assertEqual(credit.release(), CREDIT_BATCH * 2)
        self.assertEqual(credit.release(), 0)


class ReceiveCreditTests(SynchronousTestCase):
    def test_pushes_are_taken_in_order_as_the_client_returns_their_bytes(self):
        credit = StreamCredit()
        first, second, third = credit.pushed(100), credit.pushed(50), credit.pushed(10)
        credit.consumed(120)
        self.successResultOf(first)
        self.assertNoResult(second)
        credit.consumed(30)
        self.successResultOf(second)
        self.assertNoResult(third)
        credit.consumed(10)
        self.successResultOf(third)

    def test_returning_more_than_was_pushed_leaves_nothing_owed(self):
        credit = StreamCredit()
        credit.consumed(500)
        taken = credit.pushed(100)
        self.assertNoResult(taken)
        credit.consumed(100)
        self.successResultOf(taken)
