"""The delivery queue on a Clock: bounds, retries with backoff, no retry on permanent failures, drain."""

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.webhooks.queue import DeliveryQueue, PermanentFailure


class ScriptedSend:
    """A ``send`` whose outcomes the test decides: each call returns a pending Deferred."""

    def __init__(self):
        self.calls = []

    def __call__(self, payload):
        waiting = defer.Deferred()
        self.calls.append((payload, waiting))
        return waiting

    def succeed(self):
        self.calls[-1][1].callback(None)

    def fail(self, error):
        self.calls[-1][1].errback(error)


class DeliveryQueueTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.send = ScriptedSend()
        self.queue = DeliveryQueue(self.clock, self.send, queue_size=3, attempts=3, backoff=1.0, dead_letters=2)

    def test_enqueue_does_no_io_until_the_next_turn(self):
        self.queue.enqueue({"event_id": 1})
        self.assertEqual(self.send.calls, [])
        self.clock.advance(0)
        self.assertEqual(len(self.send.calls), 1)

    def test_network_errors_and_5xx_are_retried_with_doubling_backoff(self):
        self.queue.enqueue({"event_id": 1})
        self.clock.advance(0)
        self.send.fail(ConnectionError("refused"))
        self.assertEqual(len(self.send.calls), 1)
        self.clock.advance(0.99)
        self.assertEqual(len(self.send.calls), 1)
        self.clock.advance(0.01)
        self.assertEqual(len(self.send.calls), 2)
        self.send.fail(RuntimeError("HTTP 503"))
        self.clock.advance(1.99)
        self.assertEqual(len(self.send.calls), 2)
        self.clock.advance(0.01)
        self.assertEqual(len(self.send.calls), 3)
        self.send.succeed()
        self.assertEqual(self.queue.stats()["sent"], 1)
        self.assertEqual(self.queue.stats()["retries"], 2)

    def test_permanent_failures_are_not_retried_and_go_to_the_dead_letters(self):
        self.queue.enqueue({"event_id": 1})
        self.clock.advance(0)
        self.send.fail(PermanentFailure("HTTP 400"))
        self.clock.advance(10)
        self.assertEqual(len(self.send.calls), 1)
        self.assertEqual(self.queue.stats()["failed"], 1)
        [letter] = self.queue.dead_letter_list()
        self.assertEqual((letter["payload"], letter["error"], letter["attempts"]), ({"event_id": 1}, "HTTP 400", 1))

    def test_after_the_last_attempt_the_event_is_a_dead_letter_and_the_list_is_bounded(self):
        for event_id in range(1, 4):
            self.queue.enqueue({"event_id": event_id})
        self.clock.advance(0)
        for _ in range(3):
            for _attempt in range(3):
                self.send.fail(ConnectionError("down"))
                self.clock.advance(4)
        self.assertEqual(self.queue.stats()["failed"], 3)
        self.assertEqual([d["payload"]["event_id"] for d in self.queue.dead_letter_list()], [2, 3])

    def test_overflow_is_dropped_and_counted(self):
        accepted = [self.queue.enqueue({"event_id": n}) for n in range(5)]
        self.assertEqual(accepted, [True, True, True, False, False])
        self.assertEqual(self.queue.stats()["dropped"], 2)
        self.assertEqual(self.queue.stats()["queued"], 3)

    def test_events_are_delivered_in_order_one_at_a_time(self):
        for event_id in range(1, 4):
            self.queue.enqueue({"event_id": event_id})
        self.clock.advance(0)
        delivered = []
        while self.send.calls and not self.send.calls[-1][1].called:
            delivered.append(self.send.calls[-1][0]["event_id"])
            self.send.succeed()
        self.assertEqual(delivered, [1, 2, 3])

    def test_stop_drains_what_is_queued(self):
        self.queue.enqueue({"event_id": 1})
        self.queue.enqueue({"event_id": 2})
        stopped = self.queue.stop(grace=5)
        self.send.succeed()
        self.send.succeed()
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(self.queue.stats()["sent"], 2)
        self.assertFalse(self.queue.enqueue({"event_id": 3}))

    def test_stop_gives_up_after_the_grace_period(self):
        self.queue.enqueue({"event_id": 1})
        self.queue.enqueue({"event_id": 2})
        self.clock.advance(0)
        stopped = self.queue.stop(grace=5)
        self.assertNoResult(stopped)
        self.clock.advance(5)
        self.successResultOf(stopped)
        stats = self.queue.stats()
        self.assertEqual((stats["sent"], stats["failed"], stats["dropped"], stats["queued"]), (0, 1, 1, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_with_nothing_queued_is_immediate(self):
        self.successResultOf(self.queue.stop())

    def test_an_attempt_the_sender_cancelled_itself_is_a_timeout_and_retried(self):
        self.queue.enqueue({"event_id": 1})
        self.clock.advance(0)
        self.send.calls[-1][1].cancel()
        self.clock.advance(1)
        self.assertEqual(len(self.send.calls), 2)
        self.send.succeed()
        self.assertEqual((self.queue.sent, self.queue.retries), (1, 1))
