"""The daemon's managed-network shell on a task.Clock, with a recording registry and trust."""

import json
import os
import random
import stat
from pathlib import Path

from twisted.internet import defer, task
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.managed import ManagedNetworks
from pilotnet.errors import PilotError

RULES = {"links": 3, "cycle": "1h", "prune": 1, "prune_by": "score", "fill": 1, "fill_how": "random"}
POLICY = json.dumps({"version": 1, "rules": [{"name": "deny-all", "on": "connect", "match": "true",
                                              "actions": [{"type": "deny"}]}]})


class FakeRegistry:
    """Answers list_nodes, lookup, list_networks and the policy requests; records what it was sent."""

    def __init__(self, members):
        self.members = members
        self.sent = []
        self.down = False

    def request(self, message):
        self.sent.append(("request", message))
        if self.down:
            return defer.fail(PilotError("cannot reach registry", code="connection_failed"))
        kind = message["type"]
        if kind == "list_nodes":
            return defer.succeed({"nodes": [{"node_id": n} for n in self.members] + [{"node_id": 99,
                                                                                      "offline": True}]})
        if kind == "lookup":
            return defer.succeed({"node_id": message["node_id"], "networks": [0, 5]})
        if kind == "list_networks":
            return defer.succeed({"networks": [{"id": 5, "rules": RULES}, {"id": 6, "rules": RULES}]})
        return defer.succeed({"type": kind + "_ok"})

    def signed(self, message):
        self.sent.append(("signed", message))
        return defer.succeed({"type": message["type"] + "_ok"})


class ManagedNetworksTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.home = FilePath(self.mktemp())
        self.home.makedirs()
        self.registry = FakeRegistry(members=list(range(1, 9)))
        self.linked, self.unlinked, self.events = [], [], []
        self.managed = self.make()

    def make(self):
        return ManagedNetworks(
            self.clock, self.registry, Path(self.home.path), own_id=lambda: 1,
            link=lambda node, network: self.linked.append((node, network)),
            unlink=lambda node: self.unlinked.append(node),
            emit=lambda event, **fields: self.events.append((event, fields)), rng=random.Random(3))

    def test_discovery_starts_an_engine_for_the_networks_this_node_is_in(self):
        self.successResultOf(self.managed.discover())
        self.assertEqual(list(self.managed.engines), [5])
        self.assertEqual(len(self.linked), 3)
        self.assertNotIn(1, [node for node, _ in self.linked])
        self.assertNotIn(99, [node for node, _ in self.linked])

    def test_cycles_run_on_the_clock_and_change_trust(self):
        self.managed.joined(5, RULES, None)
        first = set(self.managed.engine(5).peers)
        loser = min(first)
        for node in first - {loser}:
            self.managed.score(5, node, 3, "")
        self.clock.advance(3599)
        self.assertEqual(self.events, [])
        self.clock.advance(1)
        self.assertEqual(self.unlinked, [loser])
        self.assertEqual(len(self.linked), 4)
        self.assertEqual(self.events[0][0], "managed.cycle")
        self.assertEqual(self.events[0][1]["pruned"], 1)
        self.clock.advance(3600)
        self.assertEqual(self.managed.engine(5).cycle_num, 2)

    def test_a_forced_cycle_reports_and_a_registry_outage_prunes_only(self):
        self.managed.joined(5, RULES, None)
        self.registry.down = True
        report = self.successResultOf(self.managed.force_cycle(0))
        self.assertEqual((report["pruned"], report["filled"], report["error"]), (1, 0, "member list unavailable"))

    def test_state_survives_a_restart_in_a_private_file(self):
        self.managed.joined(5, RULES, None)
        node = next(iter(self.managed.engine(5).peers))
        self.managed.score(5, node, 7, "jobs")
        self.assertEqual(stat.S_IMODE(os.stat(self.home.child("managed_5.json").path).st_mode), 0o600)
        self.managed.stopService()
        restarted = self.make()
        restarted.joined(5, RULES, None)
        self.assertEqual(restarted.rankings(5)["rankings"][0]["score"], 7)
        self.assertEqual(len(self.linked), 3)  # no new bootstrap: the saved set was restored

    def test_a_damaged_state_file_is_ignored(self):
        self.home.child("managed_5.json").setContent(b"{not json")
        self.managed.joined(5, RULES, None)
        self.assertEqual(len(self.managed.engine(5).peers), 3)

    def test_leaving_stops_the_cycle(self):
        self.managed.joined(5, RULES, None)
        self.managed.left(5)
        self.clock.advance(7200)
        self.assertEqual(self.events, [])
        with self.assertRaises(PilotError) as caught:
            self.managed.status(5)
        self.assertEqual(caught.exception.code, "not_found")

    def test_bad_rules_and_policies_are_not_applied(self):
        self.managed.joined(7, {"links": 0, "cycle": "1h"}, "{broken")
        self.assertEqual((self.managed.engines, self.managed.policies), ({}, {}))

    def test_policy_set_validates_stores_and_applies(self):
        reply = self.successResultOf(self.managed.set_policy(5, POLICY))
        self.assertEqual((reply["applied"], reply["rules"]), (True, 1))
        self.assertEqual(self.registry.sent[-1], ("signed", {"type": "set_expr_policy", "network_id": 5,
                                                             "expr_policy": POLICY, "node_id": 1}))
        self.assertEqual(self.managed.policy_for(5).rules[0].name, "deny-all")
        self.successResultOf(self.managed.set_policy(5, "", admin_token="secret"))
        self.assertEqual(self.registry.sent[-1][1]["admin_token"], "secret")
        self.assertIsNone(self.managed.policy_for(5))
        self.failureResultOf(self.managed.set_policy(5, '{"version": 2}'), PilotError)
        self.failureResultOf(self.managed.set_policy(0, POLICY), PilotError)

    def test_member_tags_go_to_the_registry(self):
        self.successResultOf(self.managed.set_member_tags(5, 9, ["gpu"]))
        self.assertEqual(self.registry.sent[-1], ("signed", {"type": "set_member_tags", "network_id": 5,
                                                             "target_node_id": 9, "tags": ["gpu"], "node_id": 1}))
        self.successResultOf(self.managed.get_member_tags(5, 0))
        self.assertEqual(self.registry.sent[-1][1], {"type": "get_member_tags", "network_id": 5,
                                                     "target_node_id": 0})
