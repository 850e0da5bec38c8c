"""The daemon's managed-network shell on a task.Clock, with a recording registry and trust."""

import json
import os
import random
import stat
from pathlib import Path
from types import SimpleNamespace

from twisted.internet import defer, task
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.managed import ManagedNetworks
from pilotnet.daemon.networks import JoinedNetwork, NetworkView
from pilotnet.errors import PilotError
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import PROTO_DATAGRAM, PROTO_STREAM

RULES = {"links": 3, "cycle": "1h", "prune": 1, "prune_by": "score", "fill": 1, "fill_how": "random"}
POLICY = json.dumps({"version": 1, "rules": [{"name": "deny-all", "on": "connect", "match": "true",
                                              "actions": [{"type": "deny"}]}]})


#: Network 7's policy: echo for all, port 1000 for members tagged service (who score for it), else deny;
#: datagrams of more than 100 bytes are refused.
GATE_POLICY = json.dumps({"version": 1, "rules": [
    {"name": "echo", "on": "connect", "match": "port == 7", "actions": [{"type": "allow"}]},
    {"name": "services", "on": "connect", "match": 'port == 1000 && has_tag(peer_tags, "service")',
     "actions": [{"type": "score", "params": {"delta": 2}}, {"type": "allow"}]},
    {"name": "rest", "on": "connect", "match": "true", "actions": [{"type": "deny"}]},
    {"name": "big", "on": "datagram", "match": "size > 100", "actions": [{"type": "deny"}]},
    {"name": "outbound-ssh", "on": "dial", "match": "port == 22", "actions": [{"type": "deny"}]},
    {"name": "no-uploads", "on": "datagram", "match": "direction == 'out' && port == 1001",
     "actions": [{"type": "deny"}]},
    {"name": "broken", "on": "datagram", "match": "port + 'x' == 1", "actions": [{"type": "deny"}]},
]})


def view(*network_ids, members=frozenset({1, 2, 3, 4})):
    return NetworkView({n: JoinedNetwork(n, members) for n in network_ids})


def packet(node, port, protocol=PROTO_STREAM, size=0):
    return SimpleNamespace(protocol=protocol, src=Addr(0, node), dst_port=port, payload=b"x" * size)


class FakeRegistry:
    """Answers list_nodes, lookup, list_networks and the policy requests; records what it was sent."""

    def __init__(self, members):
        self.members = members
        self.policy = GATE_POLICY
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
        if kind == "list_networks":
            return defer.succeed({"networks": [{"id": 5, "rules": RULES}, {"id": 6, "rules": RULES}, {"id": 7}]})
        if kind == "get_expr_policy":
            return defer.succeed({"expr_policy": self.policy if message["network_id"] == 7 else None})
        if kind == "get_member_tags":
            return defer.succeed({"members": {"4": ["service"], "x": ["junk"]}})
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

    def test_the_network_view_starts_and_stops_engines_and_policies(self):
        self.managed.view_changed(NetworkView(), view(5, 7))
        self.assertEqual((list(self.managed.engines), list(self.managed.policies)), ([5], [7]))
        self.assertEqual(self.managed.member_tags[7], {4: ["service"]})
        self.managed.view_changed(view(5, 7), view(7))
        self.assertEqual((list(self.managed.engines), list(self.managed.policies)), ([], [7]))

    def test_members_who_leave_drop_out_of_the_managed_set(self):
        everyone = frozenset(range(1, 9))
        self.managed.view_changed(NetworkView(), view(5, members=everyone))
        leaver = min(self.managed.engine(5).peers)
        self.managed.view_changed(view(5, members=everyone), view(5, members=everyone - {leaver}))
        self.assertNotIn(leaver, self.managed.engine(5).peers)
        self.assertEqual(len(self.managed.engine(5).peers), 2)

    def test_a_managed_network_bootstraps_its_links(self):
        self.managed.view_changed(NetworkView(), view(5))
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

    def test_a_failing_cycle_is_logged_and_the_next_one_runs(self):
        self.managed.joined(5, RULES, None)
        self.registry.request = lambda message: defer.fail(RuntimeError("registry client bug"))
        self.clock.advance(3600)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(3600)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.managed.engine(5).cycle_num, 0)

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


class PolicyGateTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.registry = FakeRegistry(members=[1, 2, 3, 4])
        self.managed = ManagedNetworks(self.clock, self.registry, Path(self.mktemp()), own_id=lambda: 1,
                                       link=lambda node, network: None, unlink=lambda node: None,
                                       emit=lambda event, **fields: None,
                                       shared_with=lambda node: self.current.shared_with(node))
        self.trusting = True
        self.current = view(7)
        self.admit = self.managed.gate(lambda packet: self.trusting)
        self.managed.view_changed(NetworkView(), self.current)

    def test_connect_rules_decide_for_members(self):
        self.assertTrue(self.admit(packet(3, 7)))
        self.assertTrue(self.admit(packet(4, 1000)))
        self.assertFalse(self.admit(packet(3, 1000)))
        self.assertFalse(self.admit(packet(4, 22)))
        self.assertEqual(self.managed.policy_refused, {"connect": 2, "dial": 0, "datagram": 0})

    def test_datagrams_and_a_failing_rule_fail_open(self):
        self.assertFalse(self.admit(packet(3, 1000, PROTO_DATAGRAM, size=101)))
        self.assertTrue(self.admit(packet(3, 1000, PROTO_DATAGRAM, size=10)))
        self.assertEqual(self.managed.policy_errors, 1)

    def test_the_trust_gate_comes_first_and_strangers_are_not_judged(self):
        self.trusting = False
        self.assertFalse(self.admit(packet(3, 7)))
        self.trusting = True
        self.assertTrue(self.admit(packet(99, 22)))  # shares no network with us: no policy applies

    def test_outbound_dials_and_datagrams_are_refused_with_a_reason(self):
        self.managed.check_outbound(3, 80)
        with self.assertRaises(PilotError) as caught:
            self.managed.check_outbound(3, 22)
        self.assertEqual(caught.exception.code, "refused")
        self.assertIn("the policy of network 7 denies dialing node 3 port 22", caught.exception.message)
        self.assertIn("pilotctl policy get --net 7", caught.exception.hint)
        with self.assertRaises(PilotError):
            self.managed.check_outbound(3, 1001, size=10)
        self.managed.check_outbound(3, 1001)  # a dial to that port is not a datagram
        self.managed.check_outbound(99, 22)  # no shared network, no policy
        self.assertEqual(self.managed.policy_refused, {"connect": 0, "dial": 1, "datagram": 1})

    def test_the_handshake_port_is_never_refused(self):
        self.registry.policy = json.dumps({"version": 1, "default_verdict": "deny", "rules": [
            {"name": "noop", "on": "join", "match": "true", "actions": [{"type": "log", "params": {"message": "x"}}]}]})
        self.managed.refresh()
        self.managed.check_outbound(3, 444)
        self.assertTrue(self.admit(packet(3, 444)))
        self.assertFalse(self.admit(packet(3, 7)))  # elsewhere the default verdict, deny, decides
        with self.assertRaises(PilotError):
            self.managed.check_outbound(3, 7)

    def test_without_policies_the_gate_is_the_trust_gate(self):
        self.managed.view_changed(self.current, NetworkView())
        self.assertEqual(self.managed.policies, {})
        self.assertTrue(self.admit(packet(3, 22)))

    def test_a_policy_changed_elsewhere_reaches_the_gate_within_a_refresh(self):
        self.managed.startService()
        self.addCleanup(self.managed.stopService)
        self.assertFalse(self.admit(packet(3, 22)))
        self.registry.policy = json.dumps({"version": 1, "rules": [
            {"name": "open", "on": "connect", "match": "true", "actions": [{"type": "allow"}]}]})
        self.clock.advance(59)
        self.assertFalse(self.admit(packet(3, 22)))
        self.clock.advance(1)
        self.assertTrue(self.admit(packet(3, 22)))
        self.registry.policy = None
        self.clock.advance(60)
        self.assertEqual(self.managed.policies, {})
