"""The task demo of the quickstart and docs/services.md, carried through twice between two new nodes.

alpha (public) asks gamma (private) for trust, gamma approves, then alpha submits
a task that gamma accepts, executes and answers, and then a second one: a newcomer
must be able to do the demo more than once.
"""

import json
import os
from pathlib import Path

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, wait_until


class TaskDemoTests(PilotctlMixin, TestCase):
    timeout = 180

    def test_the_task_demo_twice(self):
        return ensureDeferred(self._demo())

    async def _demo(self):
        base = self.mktemp()
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), rendezvous, hostname="alpha").start()
        gamma = await DaemonProcess(self, os.path.join(base, "gamma"), rendezvous, hostname="gamma",
                                    public=False).start()
        await self.ok(alpha, "handshake", str(gamma.node_id), "quickstart")

        async def asked():
            return (await self.ok(gamma, "pending"))["pending"]

        await wait_until(asked, "alpha's handshake to reach gamma")
        await self.ok(gamma, "approve", str(alpha.node_id))
        await self.ok(gamma, "enable-tasks")
        for description in ("summarise the logs", "summarise them again"):
            await self._one_task(alpha, gamma, description)

    async def _one_task(self, alpha, gamma, description):
        result = await self.on(alpha, "task", "submit", str(gamma.node_id), "--task", description, "--json")
        self.assertEqual(result.code, 0, result)
        submitted = result.json()["data"]
        self.assertTrue(submitted["accepted"], submitted)
        task_id = submitted["task_id"]
        await self.ok(gamma, "task", "accept", "--id", task_id)
        await self.ok(gamma, "task", "execute")
        await self.ok(gamma, "task", "send-results", "--id", task_id, "--results", f"done: {description}")
        mine = Path(alpha.home) / "tasks" / "submitted" / f"{task_id}.json"

        def completed():
            return json.loads(mine.read_text())["status"] == "COMPLETED"

        await wait_until(completed, f"task {task_id} to complete at alpha")
