"""The head-start race between two ways of doing one thing, on a fake clock."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.racing import race_with_head_start
from pilotnet.errors import CONNECTION_FAILED, NOT_FOUND, PilotError

HEAD_START = 1.0


class Attempt:
    """One attempt: started when called, settled by the test, knows whether it was cancelled."""

    def __init__(self):
        self.started = 0
        self.cancelled = False
        self.deferred = None

    def __call__(self):
        self.started += 1
        self.deferred = defer.Deferred(canceller=lambda _: setattr(self, "cancelled", True))
        return self.deferred


class RaceTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.preferred, self.fallback = Attempt(), Attempt()
        self.racing = race_with_head_start(self.clock, self.preferred, self.fallback, HEAD_START)

    def test_the_preferred_one_winning_within_its_head_start_means_the_fallback_never_starts(self):
        self.preferred.deferred.callback("direct")
        self.assertEqual(self.successResultOf(self.racing), (0, "direct"))
        self.clock.advance(HEAD_START * 10)
        self.assertEqual(self.fallback.started, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_the_fallback_starts_after_the_head_start_and_winning_cancels_the_preferred(self):
        self.clock.advance(HEAD_START - 0.01)
        self.assertEqual(self.fallback.started, 0)
        self.clock.advance(0.01)
        self.assertEqual(self.fallback.started, 1)
        self.fallback.deferred.callback("relayed")
        self.assertEqual(self.successResultOf(self.racing), (1, "relayed"))
        self.assertTrue(self.preferred.cancelled)

    def test_the_preferred_winning_after_the_fallback_started_cancels_the_fallback(self):
        self.clock.advance(HEAD_START)
        self.preferred.deferred.callback("direct")
        self.assertEqual(self.successResultOf(self.racing), (0, "direct"))
        self.assertTrue(self.fallback.cancelled)

    def test_a_preferred_failure_starts_the_fallback_at_once(self):
        self.preferred.deferred.errback(PilotError("cannot resolve", code=NOT_FOUND))
        self.assertEqual(self.fallback.started, 1)
        self.assertNoResult(self.racing)
        self.fallback.deferred.callback("relayed")
        self.assertEqual(self.successResultOf(self.racing), (1, "relayed"))
        self.clock.advance(HEAD_START)
        self.assertEqual(self.fallback.started, 1)

    def test_when_both_fail_the_fallback_reason_is_reported(self):
        self.preferred.deferred.errback(PilotError("cannot resolve", code=NOT_FOUND))
        self.fallback.deferred.errback(PilotError("registry down", code=CONNECTION_FAILED))
        failure = self.failureResultOf(self.racing, PilotError)
        self.assertEqual(failure.value.code, CONNECTION_FAILED)

    def test_cancelling_the_race_cancels_the_started_attempt_and_the_pending_start(self):
        self.racing.cancel()
        self.assertTrue(self.preferred.cancelled)
        self.failureResultOf(self.racing)
        self.clock.advance(HEAD_START)
        self.assertEqual(self.fallback.started, 0)
