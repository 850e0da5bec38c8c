"""Policy documents: the reference's validation messages, gate and action evaluation, and a fuzzer."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.policy.document import PolicyError, load, verdict

NOW = 1_000_000.0

#: The reference's example network (configs/networks/data-exchange-policy.json): services may do anything,
#: other members only echo and text.
DATA_EXCHANGE = {
    "version": 1,
    "rules": [
        {"name": "service-connect", "on": "connect",
         "match": 'has_tag(local_tags, "service") || has_tag(peer_tags, "service")', "actions": [{"type": "allow"}]},
        {"name": "block-peer-connect", "on": "connect", "match": "true", "actions": [{"type": "deny"}]},
        {"name": "allow-echo", "on": "datagram", "match": "port == 7", "actions": [{"type": "allow"}]},
        {"name": "allow-service-files", "on": "datagram",
         "match": 'port == 1001 && ((direction == "out" && has_tag(local_tags, "service")) || '
                  '(direction == "in" && has_tag(peer_tags, "service")))', "actions": [{"type": "allow"}]},
        {"name": "deny-other-data", "on": "datagram", "match": "true", "actions": [{"type": "deny"}]},
        {"name": "score-and-log", "on": "dial", "match": "port == 1000",
         "actions": [{"type": "score", "params": {"delta": 2}}, {"type": "log", "params": {"message": "dial"}}]},
        {"name": "decay", "on": "cycle", "match": "trusted_count > 2",
         "actions": [{"type": "prune_trust", "params": {"percent": 10, "min": 2, "by": "score"}}]},
        {"name": "evict-idle", "on": "cycle", "match": "true",
         "actions": [{"type": "evict_where", "params": {"match": "since(last_seen) > duration('1h')"}}]},
    ],
}


def decide(policy, event, **variables):
    directives = policy.evaluate(event, variables, NOW)
    return verdict(directives), [(d.type, d.rule) for d in directives]


class EvaluationTests(SynchronousTestCase):
    def setUp(self):
        self.policy = load(json.dumps(DATA_EXCHANGE))

    def test_first_verdict_decides_a_gate_event(self):
        self.assertEqual(decide(self.policy, "connect", peer_tags=["service"]),
                         ("allow", [("allow", "service-connect")]))
        self.assertEqual(decide(self.policy, "connect", peer_tags=["worker"]),
                         ("deny", [("deny", "block-peer-connect")]))
        self.assertEqual(decide(self.policy, "datagram", port=7)[0], "allow")
        self.assertEqual(decide(self.policy, "datagram", port=1001, direction="in", peer_tags=["service"])[0],
                         "allow")
        self.assertEqual(decide(self.policy, "datagram", port=1001, direction="in")[0], "deny")

    def test_side_effects_accumulate_and_the_default_verdict_closes(self):
        self.assertEqual(decide(self.policy, "dial", port=1000),
                         ("allow", [("score", "score-and-log"), ("log", "score-and-log"), ("allow", "_default")]))
        denying = load(dict(DATA_EXCHANGE, default_verdict="deny"))
        self.assertEqual(decide(denying, "dial", port=80), ("deny", [("deny", "_default")]))

    def test_every_matching_rule_fires_on_an_action_event(self):
        self.assertEqual(decide(self.policy, "cycle", trusted_count=5),
                         (None, [("prune_trust", "decay"), ("evict_where", "evict-idle")]))
        self.assertEqual(decide(self.policy, "cycle"), (None, [("evict_where", "evict-idle")]))
        self.assertEqual(decide(self.policy, "join", peer_id=4), (None, []))

    def test_evict_where_sees_one_peer(self):
        directive = self.policy.evaluate("cycle", {}, NOW)[-1]
        self.assertTrue(self.policy.peer_matches(directive, {"last_seen": NOW - 7200}, NOW))
        self.assertFalse(self.policy.peer_matches(directive, {"last_seen": NOW - 60}, NOW))

    def test_a_failing_rule_is_named(self):
        policy = load({"version": 1, "rules": [{"name": "typo", "on": "connect", "match": "port + 'x' == 1",
                                                "actions": [{"type": "deny"}]}]})
        with self.assertRaises(PolicyError) as caught:
            policy.evaluate("connect", {"port": 7}, NOW)
        self.assertIn("rule 'typo' eval", caught.exception.message)

    def test_the_gate_events_a_policy_can_deny(self):
        self.assertEqual(self.policy.gate_events, {"connect", "dial", "datagram"})
        cycle_only = {"version": 1, "rules": [rule(on="cycle")]}
        self.assertEqual(load(cycle_only).gate_events, frozenset())
        self.assertEqual(load(dict(cycle_only, default_verdict="deny")).gate_events, {"connect", "dial", "datagram"})

    def test_events_and_unknown_events(self):
        self.assertEqual(self.policy.events(), ["connect", "dial", "datagram", "cycle"])
        with self.assertRaises(PolicyError):
            self.policy.evaluate("teleport", {}, NOW)


def rule(**overrides):
    return dict({"name": "r", "on": "connect", "match": "true", "actions": [{"type": "allow"}]}, **overrides)


class ValidationTests(SynchronousTestCase):
    def refused(self, document, fragment):
        with self.assertRaises(PolicyError) as caught:
            load(document if isinstance(document, str) else json.dumps(document))
        self.assertIn(fragment, caught.exception.message)
        self.assertEqual(caught.exception.code, "invalid_argument")

    def test_the_reference_rules(self):
        self.refused("{", "invalid JSON")
        self.refused([], "must be a JSON object")
        self.refused({"version": 2, "rules": [rule()]}, "unsupported version 2 (want 1)")
        self.refused({"version": 1, "rules": []}, "at least one rule is required")
        self.refused({"version": 1, "default_verdict": "maybe", "rules": [rule()]}, "default_verdict must be")
        self.refused({"version": 1, "rules": [rule(name="")]}, "rule[0]: name is required")
        self.refused({"version": 1, "rules": [rule(), rule()]}, "duplicate rule name 'r'")
        self.refused({"version": 1, "rules": [rule(on="boot")]}, "unknown event type \"boot\"")
        self.refused({"version": 1, "rules": [rule(match="")]}, "match expression is required")
        self.refused({"version": 1, "rules": [rule(actions=[])]}, "at least one action is required")
        self.refused({"version": 1, "rules": [rule(actions=[{"type": "explode"}])]}, "unknown action type")
        self.refused({"version": 1, "rules": [rule(actions=[{"type": "score"}])]}, "score requires 'delta'")
        self.refused({"version": 1, "rules": [rule(actions=[{"type": "tag", "params": {}}])]},
                     "tag requires 'add' or 'remove'")
        self.refused({"version": 1, "rules": [rule(actions=[{"type": "prune_trust", "params": {"percent": 5}}])]},
                     "prune_trust requires 'min'")
        self.refused({"version": 1, "config": {"cycle": "500ms"}, "rules": [rule()]}, "config.cycle must be >= 1s")
        self.refused({"version": 1, "config": {"cycle": "soon"}, "rules": [rule()]}, "config.cycle: invalid duration")
        self.refused({"version": 1, "rules": [rule(match="port ==")]}, "rule 'r' match:")
        self.refused({"version": 1, "rules": [rule(actions=[{"type": "evict_where", "params": {"match": "("}}])]},
                     "evict_where match:")

    def test_our_size_bounds(self):
        self.refused({"version": 1, "rules": [rule(name=f"r{i}") for i in range(257)]}, "more than 256 rules")
        self.refused({"version": 1, "rules": [rule(name="n" * 65)]}, "longer than 64")
        self.refused({"version": 1, "rules": [rule(actions=[{"type": "allow"}] * 17)]}, "more than 16 actions")
        self.refused(" " * (64 * 1024 + 1), "larger than")
        self.refused("[" * 60_000, "invalid JSON")

    def test_a_valid_document_reports_its_config(self):
        policy = load({"version": 1, "config": {"cycle": "24h", "max_peers": 50}, "rules": [rule()]})
        self.assertEqual((policy.cycle, policy.max_peers, policy.default_verdict), (86400.0, 50, "allow"))


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                        lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(st.sampled_from(["version", "rules", "name", "on", "match", "actions",
                                                           "type", "params", "config", "cycle", "delta"]),
                                          children, max_size=5), max_leaves=30))
    def test_any_json_is_a_policy_or_a_policy_error(self, document):
        try:
            policy = load(json.dumps(document))
        except PolicyError:
            return
        for event in ("connect", "cycle"):
            try:
                policy.evaluate(event, {}, NOW)
            except PolicyError:
                pass
