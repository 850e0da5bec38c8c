"""``policy validate`` and ``policy test`` in-process (no daemon), and the argument checks of the policy commands."""

import json
import os
import shutil
import tempfile

from twisted.trial.unittest import TestCase

from tests.cli.support import PilotctlMixin

DOCUMENT = {"version": 1, "rules": [
    {"name": "echo", "on": "connect", "match": "port == 7", "actions": [{"type": "allow"}]},
    {"name": "rest", "on": "connect", "match": "true", "actions": [{"type": "deny"}]},
    {"name": "sweep", "on": "cycle", "match": "members > 10", "actions": [{"type": "prune", "params": {"count": 1}}]},
]}


class PolicyCommandTests(PilotctlMixin, TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="pilot-test-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.file = os.path.join(self.home, "policy.json")
        with open(self.file, "w") as handle:
            json.dump(DOCUMENT, handle)

    async def test_validate_human_and_json(self):
        human = await self.pilotctl("policy", "validate", "--file", self.file)
        self.assertEqual(human.stdout, "valid policy: 3 rules\n  - echo (on connect): 1 actions\n"
                                       "  - rest (on connect): 1 actions\n  - sweep (on cycle): 1 actions\n")
        data = (await self.pilotctl("--json", "policy", "validate", "--inline", json.dumps(DOCUMENT))).data
        self.assertEqual(data["events"], ["connect", "cycle"])

    async def test_test_gate_and_action_events(self):
        gate = (await self.pilotctl("--json", "policy", "test", "--file", self.file, "--event",
                                    '{"type": "connect", "port": 7}')).data
        self.assertEqual(gate, {"event_type": "connect", "verdict": "allow",
                                "directives": [{"type": "allow", "rule": "echo", "params": None}]})
        action = (await self.pilotctl("--json", "policy", "test", "--file", self.file, "--event",
                                      '{"type": "cycle", "members": 11}')).data
        self.assertEqual(action, {"event_type": "cycle", "verdict": None,
                                  "directives": [{"type": "prune", "rule": "sweep", "params": {"count": 1}}]})

    async def test_argument_errors(self):
        for argv, fragment in [
            (["policy", "validate"], "provide --file or --inline"),
            (["policy", "validate", "--file", self.file, "--inline", "{}"], "provide --file or --inline"),
            (["policy", "test", "--file", self.file], "usage: pilotctl policy test"),
            (["policy", "test", "--file", self.file, "--event", "[]"], "must be a JSON object"),
            (["policy", "test", "--file", self.file, "--event", '{"type": "teleport"}'], "unknown event type"),
            (["policy", "get"], "--net is required"),
            (["policy", "get", "--net", "0"], "0 is the backbone"),
            (["policy", "get", "--net", "70000"], "expected a number from 0 to 65535"),
            (["managed", "cycle"], "usage: pilotctl managed cycle --force"),
            (["managed", "score", "x"], "invalid node ID"),
            (["managed", "score", "5", "--delta", "lots"], "invalid --delta"),
            (["member-tags", "set", "--net", "3", "--node", "5", "--tags", "Bad Tag"], "invalid tag"),
            (["member-tags", "set", "--net", "3", "--tags", "a"], "usage: pilotctl member-tags set"),
        ]:
            result = await self.pilotctl("--json", *argv)
            self.assertEqual((result.code, result.error["code"]), (1, "invalid_argument"), argv)
            self.assertIn(fragment, result.error["message"], argv)
