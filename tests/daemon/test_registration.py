"""The registration state machine on a Clock: first registration, failing heartbeats, re-registration,
a registry that restarted without its store."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.registration import FAILURES_BEFORE_REREGISTER, Registration, RegistrationState
from pilotnet.errors import CONNECTION_FAILED, NOT_FOUND, PilotError

INTERVAL = 30.0


class _Registry:
    """Answers registrations and heartbeats as told; records what it was asked."""

    def __init__(self):
        self.up = True
        self.knows_us = True
        self.next_id = 7
        self.asked = []

    def _down(self):
        return defer.fail(PilotError("cannot reach registry", code=CONNECTION_FAILED))

    def register(self):
        self.asked.append("register")
        if not self.up:
            return self._down()
        self.knows_us = True
        return defer.succeed(self.next_id)

    def heartbeat(self, node_id):
        self.asked.append(("heartbeat", node_id))
        if not self.up:
            return self._down()
        if not self.knows_us:
            return defer.fail(PilotError(f"node {node_id} not found", code=NOT_FOUND))
        return defer.succeed({"type": "heartbeat_ok"})


class RegistrationTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.registry = _Registry()
        self.applied = []
        self.alive = 0
        self.registration = Registration(self.clock, INTERVAL, register=self.registry.register,
                                         registered=self.applied.append, heartbeat=self.registry.heartbeat,
                                         alive=self.heard)
        self.registration.startService()
        self.addCleanup(self.registration.stopService)

    def heard(self):
        self.alive += 1

    def beats(self, count):
        for _ in range(count):
            self.clock.advance(INTERVAL)

    def assertState(self, state, node_id, failures=0):
        self.assertEqual((self.registration.state, self.registration.node_id, self.registration.failures),
                         (state, node_id, failures))

    def test_nothing_happens_before_the_first_attempt(self):
        self.beats(3)
        self.assertState(RegistrationState.STARTING, None)
        self.assertEqual(self.registry.asked, [])

    def test_first_registration_then_heartbeats(self):
        self.successResultOf(self.registration.start())
        self.assertState(RegistrationState.REGISTERED, 7)
        self.assertEqual(self.applied, [7])
        self.beats(2)
        self.assertEqual(self.registry.asked, ["register", ("heartbeat", 7), ("heartbeat", 7)])
        self.assertEqual(self.alive, 2)

    def test_a_failed_first_registration_is_retried_every_beat(self):
        self.registry.up = False
        self.successResultOf(self.registration.start())  # never fails: the daemon starts anyway
        self.assertState(RegistrationState.UNREGISTERED, None)
        self.beats(2)
        self.assertEqual(self.registry.asked, ["register"] * 3)
        self.registry.up = True
        self.beats(1)
        self.assertState(RegistrationState.REGISTERED, 7)
        self.assertEqual(self.applied, [7])

    def test_heartbeat_failures_are_counted_and_a_success_resets_them(self):
        self.successResultOf(self.registration.start())
        self.registry.up = False
        self.beats(FAILURES_BEFORE_REREGISTER - 1)
        self.assertState(RegistrationState.REGISTERED, 7, FAILURES_BEFORE_REREGISTER - 1)
        self.registry.up = True
        self.beats(1)
        self.assertState(RegistrationState.REGISTERED, 7)
        self.assertEqual(self.registry.asked.count("register"), 1)

    def test_re_registration_after_too_many_failed_heartbeats(self):
        self.successResultOf(self.registration.start())
        self.registry.up = False
        self.beats(FAILURES_BEFORE_REREGISTER)
        # The attempt failed too: we keep our node ID and heartbeat with it.
        self.assertState(RegistrationState.REGISTERED, 7, FAILURES_BEFORE_REREGISTER)
        self.assertEqual(self.registry.asked[-1], "register")
        self.registry.up = True
        self.registry.next_id = 7
        self.beats(1)
        self.assertState(RegistrationState.REGISTERED, 7)
        self.assertEqual(self.applied, [7])

    def test_every_failure_past_the_limit_tries_to_register_again(self):
        self.successResultOf(self.registration.start())
        self.registry.up = False
        self.beats(FAILURES_BEFORE_REREGISTER + 2)
        self.assertEqual(self.registry.asked.count("register"), 1 + 3)
        self.registry.up = True  # back, and it still knows us: the heartbeat does
        self.beats(1)
        self.assertEqual(self.registry.asked[-1], ("heartbeat", 7))
        self.assertState(RegistrationState.REGISTERED, 7)
        self.assertEqual(self.applied, [7])

    def test_a_registry_that_forgot_us_gets_our_registration_at_once(self):
        """It restarted without its store (or reaped us): not_found, and we register on that beat."""
        self.successResultOf(self.registration.start())
        self.registry.knows_us = False
        self.beats(1)
        self.assertEqual(self.registry.asked[-2:], [("heartbeat", 7), "register"])
        self.assertState(RegistrationState.REGISTERED, 7)
        self.assertEqual(self.applied, [7, 7])

    def test_a_beat_waits_for_a_registration_under_way(self):
        answer = defer.Deferred()
        self.registration._register = lambda: answer
        starting = self.registration.start()
        self.assertState(RegistrationState.REGISTERING, None)
        self.beats(3)  # the beats have not begun: the first attempt is under way
        answer.callback(9)
        self.successResultOf(starting)
        self.assertState(RegistrationState.REGISTERED, 9)
        self.assertEqual(self.registry.asked, [])

    def test_stopping_stops_the_beats(self):
        self.successResultOf(self.registration.start())
        self.registration.stopService()
        self.beats(3)
        self.assertEqual(self.registry.asked, ["register"])
