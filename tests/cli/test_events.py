"""``pilotctl publish`` and ``subscribe`` on the local broker, in-process against the daemon's real control protocol."""

import io
import json

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from pilotnet.cli.runner import run as pilotctl
from tests.driver.support import bounded
from tests.driver.test_events import ControlSocketMixin


class LocalEventCommandTests(ControlSocketMixin, TestCase):

    def pilotctl(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        running = pilotctl(list(argv), environ={"PILOT_SOCKET": self.socket_path, "PILOT_HOME": self.mktemp()},
                           stdout=out, stderr=err, reactor=reactor)
        return running.addCallback(lambda code: (code, out.getvalue(), err.getvalue()))

    async def test_subscribe_prints_events_published_by_another_client(self):
        await self._start()
        self.node.info = lambda: {"address": "0:0000.0000.0005"}
        subscribed = self.local_patterns_change()
        listening = self.pilotctl("subscribe", "metrics.*", "--count", "2", "--json")
        await subscribed
        publisher = await self._client()
        await publisher.open_event_stream().publish("metrics.cpu", b"1")
        await publisher.open_event_stream().publish("other", b"no")
        code, out, err = await self.pilotctl("publish", "metrics.cpu.load", "--data", "2", "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["data"]["topic"], "metrics.cpu.load")
        self.assertEqual(json.loads(out)["data"]["subscribers"], 1)
        code, out, err = await bounded(listening)
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["data"], {"events": [
            {"topic": "metrics.cpu", "data": "1", "bytes": 1},
            {"topic": "metrics.cpu.load", "data": "2", "bytes": 1}], "timeout": False})

    async def test_publish_says_how_many_it_reached_and_what_to_do_when_none(self):
        await self._start()
        self.node.info = lambda: {"address": "0:0000.0000.0005"}
        code, out, err = await self.pilotctl("publish", "metrics.cpu", "--data", "42")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0], "published 2 bytes to 'metrics.cpu' on 0:0000.0000.0005: "
                                   "no subscriber received it")
        self.assertIn("no client of this daemon and no trusted node subscribes", lines[1])
        self.assertIn("pilotctl subscribe 'metrics.cpu'", lines[-1])
        code, out, err = await self.pilotctl("publish", "metrics.cpu", "--data", "42", "--json")
        self.assertEqual(json.loads(out)["data"]["subscribers"], 0)
