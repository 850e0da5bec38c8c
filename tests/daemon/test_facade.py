"""The control socket's view of the node: exactly :class:`IControlledNode`, on the node's clock."""

from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pilotnet.daemon.config import DaemonConfig
from pilotnet.daemon.facade import MAX_TAGS, IControlledNode
from pilotnet.daemon.node import NodeService
from pilotnet.errors import INVALID_ARGUMENT, NOT_RUNNING, PilotError


class ControlFacadeTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(5000)
        self.node = NodeService(DaemonConfig(home=Path(self.mktemp()), echo=False), self.clock)
        self.facade = self.node.control

    def test_the_facade_provides_the_interface(self):
        verifyObject(IControlledNode, self.facade)

    def test_uptime_comes_from_the_nodes_clock(self):
        self.node.started_at = self.clock.seconds()
        self.clock.advance(12.5)
        info = self.facade.info()
        self.assertEqual((info["uptime_secs"], info["node_id"], info["tunnel_port"]), (12.5, None, None))

    def test_settings_need_a_registered_node(self):
        failure = self.failureResultOf(self.facade.set_tags(["a"]), PilotError)
        self.assertEqual(failure.value.code, NOT_RUNNING)

    def test_at_most_max_tags(self):
        self.node.registration.node_id = 9
        failure = self.failureResultOf(self.facade.set_tags(["t"] * (MAX_TAGS + 1)), PilotError)
        self.assertEqual(failure.value.code, INVALID_ARGUMENT)
