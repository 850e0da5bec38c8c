"""The daemon and the test suite's fake daemon answer the same commands, and pilotctl's client knows them all.

The fake (:mod:`tests.driver.fakedaemon`) stands in for the daemon in most SDK
and CLI tests; a command the schema has and it lacks (or the reverse) would
let those tests pass against something the real daemon does not do.
"""

from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.control import client, schema
from pilotnet.daemon.control import ControlProtocol
from tests.driver.fakedaemon import FakeDaemonProtocol, FakeNode

#: What clients send; the rest (client.PUSHES) the daemon sends to clients.
REQUESTS = [spec for spec in schema.COMMANDS if spec.name.encode() not in client.PUSHES]
#: Requests the fake does not answer: their tests run against the real protocol (events:
#: tests.driver.test_events, over ControlProtocol and a real broker) or real daemons (trust:
#: tests.integration; managed networks and policies: tests.daemon.test_managed and
#: tests.integration.test_policy).  A new command must be answered by the fake or named here.
LEFT_TO_THE_REAL_DAEMON = {
    "SetWebhook", "ClearWebhook", "Handshake", "HandshakeByName", "Approve", "Reject", "Revoke", "Pending", "Trusted",
    "Subscribe", "Unsubscribe", "Publish", "EventStats", "PublishBatch",
    *(spec.name for spec in schema.NETWORK_POLICY_COMMANDS),
    # networks: tests.integration.test_network_members, over a real registry
    "NetworkList", "NetworkJoin", "NetworkLeave", "NetworkMembers", "NetworkInvite", "NetworkInvites",
    "NetworkRespondInvite",
}


class ContractTests(SynchronousTestCase):
    def test_pushes_and_requests_split_the_schema(self):
        self.assertEqual(len(REQUESTS) + len(client.PUSHES), len(schema.COMMANDS))
        self.assertGreater(len(REQUESTS), 20)

    def test_the_daemon_answers_every_request(self):
        protocol = ControlProtocol(SimpleNamespace(), Clock())
        missing = [spec.name for spec in REQUESTS if protocol.locateResponder(spec.name.encode()) is None]
        self.assertEqual(missing, [])

    def test_the_fake_daemon_answers_what_the_daemon_answers(self):
        fake = FakeDaemonProtocol(FakeNode())
        answered = {spec.name for spec in REQUESTS if fake.locateResponder(spec.name.encode()) is not None}
        self.assertEqual(answered, {spec.name for spec in REQUESTS} - LEFT_TO_THE_REAL_DAEMON)
