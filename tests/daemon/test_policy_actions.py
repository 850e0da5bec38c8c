"""The expression-policy actions and the join, leave and cycle events, on a task.Clock."""

import json
import random
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings, strategies as st
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon import policy_actions
from pilotnet.daemon.managed import ManagedNetworks
from pilotnet.daemon.networks import NetworkView
from pilotnet.policy.document import ACTIONS, Directive, Policy
from pilotnet.policy.managed import ManagedEngine, ManagedRules
from tests.daemon.test_managed import RULES, FakeRegistry, packet, view

EVERYONE = frozenset(range(1, 9))


def policy(*rules, cycle=None):
    document = {"version": 1, "rules": [
        {"name": name, "on": on, "match": match, "actions": actions} for name, on, match, actions in rules]}
    if cycle:
        document["config"] = {"cycle": cycle}
    return json.dumps(document)


def action(kind, **params):
    return {"type": kind, "params": params} if params else {"type": kind}


class PolicyActionTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.registry = FakeRegistry(members=sorted(EVERYONE))
        self.linked, self.unlinked, self.events = [], [], []
        self.current = view(5, members=EVERYONE)
        self.managed = ManagedNetworks(
            self.clock, self.registry, Path(self.mktemp()), own_id=lambda: 1,
            link=lambda node, network: self.linked.append((node, network)),
            unlink=lambda node: self.unlinked.append(node),
            emit=lambda event, **fields: self.events.append((event, fields)), rng=random.Random(3),
            shared_with=lambda node: self.current.shared_with(node))
        self.managed.view = self.current
        self.managed.joined(5, RULES, None)  # a managed set of 3 of the 7 others
        self.admit = self.managed.gate(lambda packet: True)

    def use(self, document):
        self.managed._apply_policy(5, document)

    def peers(self):
        return set(self.managed.engine(5).peers)

    def events_named(self, name):
        return [fields for event, fields in self.events if event == name]

    def test_join_events_tag_and_send_webhooks(self):
        self.use(policy(("greet", "join", "members > 2", [action("tag", add="newcomer"),
                                                           action("webhook", event="member-joined")])))
        smaller = view(5, members=EVERYONE - {8})
        self.managed.view_changed(self.current, smaller)
        self.assertEqual(self.events_named("policy.member-joined"), [])  # a leave only
        self.managed.view_changed(smaller, self.current)
        self.assertEqual(self.events_named("policy.member-joined"),
                         [{"network_id": 5, "rule": "greet", "trigger": "join", "peer_id": 8}])
        self.assertEqual(self.managed.actions.tags(5, 8), ["newcomer"])
        self.assertIn("newcomer", self.managed._variables(self.current.networks[5], 8, 0, 0)["peer_tags"])

    def test_leave_events_fire_for_members_who_go(self):
        self.use(policy(("bye", "leave", "peer_id == 8", [action("webhook", event="gone")])))
        self.managed.view_changed(self.current, view(5, members=EVERYONE - {7, 8}))
        self.assertEqual([fields["peer_id"] for fields in self.events_named("policy.gone")], [8])

    def test_tags_can_be_removed_and_bad_tags_are_ignored(self):
        self.use(policy(("mark", "connect", "port == 1", [action("tag", add=["a", "Bad Tag!"]), action("allow")]),
                        ("unmark", "connect", "port == 2", [action("tag", remove="a"), action("allow")])))
        self.assertTrue(self.admit(packet(3, 1)))
        self.assertEqual(self.managed.actions.tags(5, 3), ["a"])
        self.assertTrue(self.admit(packet(3, 2)))
        self.assertEqual(self.managed.actions.tags(5, 3), [])

    def test_evict_drops_the_peer_of_the_event_and_its_trust(self):
        victim = min(self.peers())
        self.use(policy(("kick-on-22", "connect", "port == 22", [action("evict"), action("deny")])))
        self.assertFalse(self.admit(packet(victim, 22)))
        self.assertNotIn(victim, self.peers())
        self.assertEqual(self.unlinked, [victim])
        self.assertFalse(self.admit(packet(victim, 22)))  # no longer in the set: nothing more to do
        self.assertEqual(self.unlinked, [victim])

    def test_evict_where_judges_every_peer_of_the_set(self):
        low, *rest = sorted(self.peers())
        for node in rest:
            self.managed.score(5, node, 5, "")
        self.use(policy(("sweep", "cycle", "true", [action("evict_where", match="peer_score < 1")]), cycle="10s"))
        self.clock.advance(10)
        self.assertEqual((self.peers(), self.unlinked), (set(rest), [low]))
        self.assertEqual(self.events_named("policy.cycle"), [{"network_id": 5, "cycle_num": 1, "actions": 1}])

    def test_prune_and_fill_by_count(self):
        before = self.peers()
        self.use(policy(("churn", "cycle", "cycle_num == 1", [action("prune", count=2), action("fill", count=1)]),
                        cycle="1m"))
        self.clock.advance(60)
        self.assertEqual(len(self.unlinked), 2)
        self.assertEqual(len(self.peers()), 2)
        added = self.peers() - before
        self.assertEqual(len(added), 1)
        self.assertIn((added.pop(), 5), self.linked)
        self.clock.advance(60)  # cycle_num 2: the rule does not match
        self.assertEqual(len(self.unlinked), 2)

    def test_prune_trust_keeps_its_minimum_and_fill_trust_reaches_its_target(self):
        self.use(policy(("thin", "cycle", "peer_count >= 3", [action("prune_trust", percent=100, min=1)]),
                        ("thicken", "cycle", "peer_count < 3", [action("fill_trust", target=3)]), cycle="1m"))
        self.clock.advance(60)
        self.assertEqual(len(self.peers()), 1)
        self.assertEqual(self.events_named("policy.prune_trust")[0]["changed"], 2)
        self.clock.advance(60)
        self.assertEqual(len(self.peers()), 3)
        self.assertEqual(self.events_named("policy.fill_trust")[0]["peers"], 3)

    def test_set_actions_need_a_managed_network(self):
        self.managed.left(5)
        self.current = view(7, members=EVERYONE)
        self.managed.view = self.current
        self.managed._apply_policy(7, policy(("kick", "connect", "true", [action("evict"), action("allow")])))
        self.assertTrue(self.admit(packet(3, 80)))
        self.assertEqual((self.unlinked, self.managed.actions.skipped["unmanaged"]), ([], 1))

    def test_trust_changes_and_webhooks_are_budgeted_per_network(self):
        self.use(policy(("noisy", "connect", "true", [action("webhook", event="hit"), action("allow")])))
        for _ in range(policy_actions.ACTION_BURST + 10):
            self.admit(packet(3, 80))
        self.assertEqual(len(self.events_named("policy.hit")), policy_actions.ACTION_BURST)
        self.assertEqual(self.managed.actions.skipped["budget"], 10)
        self.clock.advance(policy_actions.ACTION_WINDOW / policy_actions.ACTION_BURST)
        self.admit(packet(3, 80))
        self.assertEqual(len(self.events_named("policy.hit")), policy_actions.ACTION_BURST + 1)

    def test_a_fill_is_cut_to_the_budget(self):
        self.managed.engine(5).rules.links = 100
        self.current = view(5, members=frozenset(range(1, 200)))
        self.managed.view = self.current
        self.use(policy(("grow", "cycle", "true", [action("fill", count=1000)]), cycle="1m"))
        self.clock.advance(60)
        self.assertEqual(len(self.peers()), 3 + policy_actions.ACTION_BURST)

    def test_webhook_event_names_are_checked(self):
        self.use(policy(("bad", "connect", "true", [action("webhook", event="../../x"), action("allow")])))
        self.admit(packet(3, 80))
        self.assertEqual((self.events, self.managed.actions.skipped["invalid"]), ([], 1))

    def test_the_cycle_runner_follows_the_policy_and_stops_when_it_goes(self):
        self.use(policy(("tick", "cycle", "true", [action("webhook", event="tick")]), cycle="30s"))
        self.clock.advance(30)
        self.use(policy(("tick", "cycle", "true", [action("webhook", event="tick")]), cycle="1m"))
        self.clock.advance(59)
        self.assertEqual(len(self.events_named("policy.tick")), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.events_named("policy.tick")), 2)
        self.assertEqual([e["cycle_num"] for e in self.events_named("policy.cycle")], [1, 1])  # a new cycle: anew
        self.managed.view_changed(self.current, NetworkView())
        self.clock.advance(600)
        self.assertEqual(len(self.events_named("policy.tick")), 2)

    def test_a_policy_without_cycle_rules_runs_no_cycle(self):
        self.use(policy(("gate", "connect", "true", [action("allow")]), cycle="10s"))
        self.clock.advance(100)
        self.assertEqual(self.events_named("policy.cycle"), [])

    def test_a_failing_cycle_rule_is_counted_and_the_cycle_goes_on(self):
        self.use(policy(("broken", "cycle", "members + 'x' == 1", [action("prune", count=1)]), cycle="10s"))
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual((self.managed.policy_errors, self.unlinked), (2, []))


PARAM_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                         st.text(max_size=20), st.lists(st.text(max_size=40), max_size=20),
                         st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


class HostileParameterTests(SynchronousTestCase):
    """Parameters of any shape (a policy is written by a network's admin, not by us) never crash or overrun."""

    @example(kind="fill", params={"count": float("inf")}, node=None)
    @example(kind="prune_trust", params={"percent": float("-inf"), "min": float("nan")}, node=None)
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(kind=st.sampled_from(sorted(ACTIONS)), params=st.dictionaries(
        st.sampled_from(["count", "percent", "min", "target", "add", "remove", "event", "delta", "topic",
                         "message"]), PARAM_VALUES, max_size=4), node=st.one_of(st.none(), st.integers(0, 12)))
    def test_any_parameters(self, kind, params, node):
        linked, unlinked = [], []
        engine = ManagedEngine(5, ManagedRules.from_checked(RULES), 1, 0.0, random.Random(1))
        engine.bootstrap(range(1, 9), 0.0)
        actions = policy_actions.PolicyActions(
            engines={5: engine}, members=lambda network: range(1, 9), link=lambda *a: linked.append(a),
            unlink=unlinked.append, emit=lambda event, **fields: None, save=lambda engine: None)
        document = Policy({}, [], "allow", None, 0)
        directive = Directive(kind, "r", params)
        actions.act(document, 5, node, [directive] * 3, "connect", 10.0)
        self.assertLessEqual(len(engine.peers), engine.rules.links)
        self.assertLessEqual(len(linked) + len(unlinked), policy_actions.ACTION_BURST)
        self.assertLessEqual(len(actions.tags(5, node or 0)), policy_actions.MAX_LOCAL_TAGS)
