"""Names asked by hostname, on a fake clock: matching, expiry, and the cost of strangers."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.asked_names import NAME_TTL, STRANGER_TTL, AskedNames
from pilotnet.errors import NOT_FOUND, PilotError


class AskedNamesTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.visible = {}  # what resolve_hostname shows us
        self.resolved = []
        self.names = AskedNames(self.clock, self.resolve)

    def resolve(self, hostname):
        self.resolved.append(hostname)
        if hostname not in self.visible:
            return defer.fail(PilotError(f'hostname "{hostname}" not found', code=NOT_FOUND))
        return defer.succeed(self.visible[hostname])

    def test_the_holder_answers_once(self):
        self.names.add("gamma")
        self.visible["gamma"] = 7
        self.assertTrue(self.successResultOf(self.names.answered_by(7)))
        self.assertNotIn("gamma", self.names)
        self.assertFalse(self.successResultOf(self.names.answered_by(7)))

    def test_a_name_expires(self):
        self.names.add("gamma")
        self.clock.advance(NAME_TTL + 1)
        self.visible["gamma"] = 7
        self.assertFalse(self.successResultOf(self.names.answered_by(7)))
        self.assertEqual(len(self.names), 0)

    def test_a_stranger_is_checked_once_a_minute_until_a_new_name(self):
        self.names.add("gamma")
        for _ in range(3):
            self.assertFalse(self.successResultOf(self.names.answered_by(9)))
        self.assertEqual(self.resolved, ["gamma"])
        self.clock.advance(STRANGER_TTL)
        self.successResultOf(self.names.answered_by(9))
        self.names.add("delta")
        self.successResultOf(self.names.answered_by(9))
        self.assertEqual(self.resolved, ["gamma", "gamma", "gamma", "delta"])
