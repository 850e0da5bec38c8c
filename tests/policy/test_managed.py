"""The managed-network engine: rules validation, bootstrap, score, and prune/fill by score, age and activity."""

import random

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import PilotError
from pilotnet.policy.managed import ManagedEngine, ManagedRules
from pilotnet.registry.network_rules import parse_rules

RULES = {"links": 4, "cycle": "1h", "prune": 1, "prune_by": "score", "fill": 1, "fill_how": "random"}


def engine(members=range(1, 11), **rules):
    managed = ManagedEngine(5, ManagedRules.from_checked(parse_rules(dict(RULES, **rules))), own_id=1, joined_at=1000.0,
                            rng=random.Random(7))
    managed.bootstrap(members, now=1000.0)
    return managed


class RulesTests(SynchronousTestCase):
    def test_rules_as_the_registry_checks_them(self):
        rules = ManagedRules.from_checked(parse_rules('{"links": 8, "cycle": "1h30m", "prune": 2, "prune_by": "age", '
                                                     '"fill": 3, "fill_how": "random", "grace": "10m"}'))
        self.assertEqual((rules.links, rules.cycle, rules.prune, rules.prune_by, rules.fill, rules.grace),
                         (8, 5400.0, 2, "age", 3, 600.0))
        self.assertEqual(ManagedRules.from_checked(parse_rules(RULES)).grace, 0.0)


class CycleTests(SynchronousTestCase):
    def test_bootstrap_takes_links_members_never_itself(self):
        managed = engine()
        self.assertEqual(len(managed.peers), 4)
        self.assertNotIn(1, managed.peers)
        self.assertEqual(engine(members=[1, 2]).peers.keys(), {2})

    def test_prune_by_score_drops_the_lowest_and_fills_a_newcomer(self):
        managed = engine()
        low, *others = sorted(managed.peers)
        for node in others:
            managed.score(node, 5, "", now=1100.0)
        managed.score(low, -3, "jobs", now=1100.0)
        result = managed.cycle(range(1, 11), now=5000.0)
        self.assertEqual(result.pruned, [low])
        self.assertEqual(len(result.filled), 1)
        self.assertNotIn(result.filled[0], [low, 1] + others)
        self.assertEqual((result.peers, result.cycle_num), (4, 1))

    def test_prune_by_age_and_by_activity(self):
        managed = engine(prune_by="age")
        oldest = min(managed.peers)
        for node, peer in managed.peers.items():
            peer.added_at = 500.0 if node == oldest else 900.0
        self.assertEqual(managed.cycle([], now=5000.0).pruned, [oldest])
        managed = engine(prune_by="activity")
        idle = max(managed.peers)
        for node in managed.peers:
            if node != idle:
                managed.score(node, 0, "", now=2000.0)
        self.assertEqual(managed.cycle([], now=5000.0).pruned, [idle])

    def test_grace_protects_new_peers(self):
        managed = engine(grace="2h")
        self.assertEqual(managed.cycle(range(1, 11), now=1000.0 + 3600).pruned, [])
        self.assertEqual(len(managed.cycle(range(1, 11), now=1000.0 + 7201).pruned), 1)

    def test_fill_never_exceeds_links_and_skips_a_failed_member_list(self):
        managed = engine(prune=0, fill=3)
        self.assertEqual(managed.cycle(range(1, 11), now=2000.0).filled, [])
        managed.forget(next(iter(managed.peers)))
        self.assertEqual(len(managed.cycle(range(1, 11), now=2000.0).filled), 1)
        managed.forget(next(iter(managed.peers)))
        self.assertEqual(managed.cycle(None, now=2000.0).filled, [])

    def test_score_refusals(self):
        managed = engine()
        with self.assertRaises(PilotError) as caught:
            managed.score(99, 1, "", now=1.0)
        self.assertEqual(caught.exception.code, "not_found")
        with self.assertRaises(PilotError):
            managed.score(next(iter(managed.peers)), 10**9, "", now=1.0)

    def test_rankings_status_and_snapshot_round_trip(self):
        managed = engine()
        top = max(managed.peers)
        managed.score(top, 9, "gpu", now=1500.0)
        rankings = managed.rankings()
        self.assertEqual(rankings[0]["node_id"], top)
        self.assertEqual(rankings[0]["topics"], {"gpu": 9})
        self.assertEqual([row["rank"] for row in rankings], [1, 2, 3, 4])
        self.assertEqual(managed.status()["max_links"], 4)
        restored = ManagedEngine(5, managed.rules, own_id=1, joined_at=0.0)
        restored.restore(managed.snapshot())
        self.assertEqual(restored.rankings(), rankings)
        self.assertEqual(restored.joined_at, 1000.0)

    def test_restore_skips_malformed_entries(self):
        managed = ManagedEngine(5, ManagedRules.from_checked(parse_rules(RULES)), own_id=1, joined_at=0.0)
        managed.restore({"cycle_num": float("nan"), "peers": [
            {"node_id": 2, "score": float("inf")}, {"node_id": 1}, "junk", {"node_id": -4}, {"node_id": 3,
                                                                                           "topics": [1]},
            {"node_id": 5}, {"node_id": 6}, {"node_id": 7}]})
        self.assertEqual(sorted(managed.peers), [2, 3, 5, 6])
        self.assertEqual(managed.cycle_num, 0)
