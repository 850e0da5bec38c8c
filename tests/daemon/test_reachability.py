"""The dial watch: a dial nobody answers is diagnosed at VERDICT_AFTER, on a fake clock."""

from types import SimpleNamespace

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pilotnet.daemon.node import NodeProbes
from pilotnet.daemon.reachability import (
    PROBE_AFTER, VERDICT_AFTER, DialWatch, IReachabilityProbe, RegistryView,
)
from pilotnet.errors import CONNECTION_FAILED, NOT_FOUND, NOT_TRUSTED, UNREACHABLE, PilotError

PEER = 6


@implementer(IReachabilityProbe)
class FakeProbe:
    """``answers``: the peer answers pings (at once); ``view``: what the registry says (None: no answer)."""

    def __init__(self, clock, answers=False, view=None):
        self.clock = clock
        self.answers = answers
        self.view = view
        self.heard = float("-inf")
        self.probes = []

    def last_heard(self, node):
        return self.heard

    def probe(self, node, silent):
        self.probes.append((node, silent, self.clock.seconds()))
        if self.answers:
            self.heard = self.clock.seconds()

    def registry_view(self, node):
        if self.view is None:
            return defer.Deferred()  # the registry never answers
        return defer.succeed(self.view)


class DialWatchTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.cancelled = []
        self.dialing = defer.Deferred(canceller=lambda _: self.cancelled.append(True))

    def watch(self, probe):
        self.assertTrue(verifyObject(IReachabilityProbe, probe))
        return DialWatch(self.clock, self.dialing, PEER, probe).result

    def diagnosis(self, result):
        self.clock.advance(PROBE_AFTER)
        self.assertNoResult(result)
        self.clock.advance(VERDICT_AFTER - PROBE_AFTER)
        error = self.failureResultOf(result, PilotError).value
        self.assertEqual(self.cancelled, [True], "the unanswered dial is abandoned")
        return error

    def test_a_silent_peer_is_unreachable(self):
        probe = FakeProbe(self.clock, answers=False, view=RegistryView(registered=True, public=True))
        error = self.diagnosis(self.watch(probe))
        self.assertEqual(error.code, UNREACHABLE)
        self.assertIn(f"node {PEER} is unreachable", error.message)
        self.assertIn("never heard from", error.message)
        self.assertEqual(probe.probes, [(PEER, True, 1000 + PROBE_AFTER)])  # silent since the dial: relay too

    def test_an_unreachable_peer_says_when_it_was_last_heard(self):
        probe = FakeProbe(self.clock)
        probe.heard = self.clock.seconds() - 30
        error = self.diagnosis(self.watch(probe))
        self.assertIn(f"last heard {30 + VERDICT_AFTER:.0f}s ago", error.message)

    def test_a_peer_the_registry_does_not_know_does_not_exist(self):
        error = self.diagnosis(self.watch(FakeProbe(self.clock, answers=True, view=RegistryView(registered=False))))
        self.assertEqual(error.code, NOT_FOUND)
        self.assertIn("no such node", error.message)

    def test_a_private_peer_that_answers_but_is_not_trusted_refuses_us(self):
        view = RegistryView(registered=True, public=False, trusted=False)
        error = self.diagnosis(self.watch(FakeProbe(self.clock, answers=True, view=view)))
        self.assertEqual(error.code, NOT_TRUSTED)
        self.assertIn(f"pilotctl handshake {PEER}", error.hint)

    def test_a_silent_private_peer_without_trust_is_named_for_the_trust(self):
        view = RegistryView(registered=True, public=False, trusted=False)
        error = self.diagnosis(self.watch(FakeProbe(self.clock, answers=False, view=view)))
        self.assertEqual(error.code, NOT_TRUSTED)
        self.assertIn("is private and refuses", error.message)

    def test_a_live_trusted_peer_is_left_to_answer(self):
        view = RegistryView(registered=True, public=False, trusted=True)
        result = self.watch(FakeProbe(self.clock, answers=True, view=view))
        self.clock.advance(VERDICT_AFTER * 3)
        self.assertNoResult(result)
        self.dialing.callback("stream")
        self.assertEqual(self.successResultOf(result), "stream")
        self.assertEqual(self.cancelled, [])

    def test_without_the_registry_liveness_alone_decides(self):
        error = self.diagnosis(self.watch(FakeProbe(self.clock, answers=False, view=None)))
        self.assertEqual(error.code, UNREACHABLE)
        result = DialWatch(self.clock, defer.Deferred(), PEER, FakeProbe(self.clock, answers=True)).result
        self.clock.advance(VERDICT_AFTER)
        self.assertNoResult(result)

    def test_a_dial_answered_in_time_is_untouched_and_no_timer_is_left(self):
        probe = FakeProbe(self.clock, view=RegistryView(registered=True))
        result = self.watch(probe)
        self.dialing.callback("stream")
        self.assertEqual(self.successResultOf(result), "stream")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(probe.probes, [])

    def test_a_dial_failure_before_the_verdict_passes_through(self):
        result = self.watch(FakeProbe(self.clock))
        self.clock.advance(PROBE_AFTER)
        self.dialing.errback(PilotError("connection refused", code=CONNECTION_FAILED))
        self.assertEqual(self.failureResultOf(result, PilotError).value.code, CONNECTION_FAILED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelling_the_watch_cancels_the_dial(self):
        result = self.watch(FakeProbe(self.clock))
        result.cancel()
        self.assertEqual(self.cancelled, [True])
        self.failureResultOf(result, defer.CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SharedProbeTests(SynchronousTestCase):
    """The node's probes: a burst of dials to one peer probes it, and asks the registry about it, once."""

    def setUp(self):
        self.probing, self.viewing = [], []
        paths = SimpleNamespace(dial_unanswered=lambda node, silent: self._held(self.probing))
        self.node = SimpleNamespace(paths=paths, _registry_view=lambda node: self._held(self.viewing))
        self.probes = NodeProbes(self.node)

    def _held(self, calls):
        answer = defer.Deferred()
        calls.append(answer)
        return answer

    def test_a_burst_of_dials_probes_a_peer_once_at_a_time(self):
        views = []
        for _ in range(50):
            self.probes.probe(2, silent=True)
            views.append(self.probes.registry_view(2))
        self.assertEqual((len(self.probing), len(self.viewing)), (1, 1))
        self.viewing[0].callback(RegistryView(registered=True, public=True))
        self.assertEqual({self.successResultOf(view) for view in views}, {RegistryView(True, True)})
        self.probing[0].callback(None)
        self.probes.probe(2, silent=True)  # a later dial's probe is a new one
        self.probes.probe(3, silent=True)  # and another peer's its own
        self.assertEqual(len(self.probing), 3)
