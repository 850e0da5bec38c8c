"""The directory index kept up to date change by change equals the directory queried by brute force."""

import json
from collections import Counter
from types import SimpleNamespace
from unittest import mock

from hypothesis import given, settings, strategies as st
from treq.testing import StubTreq
from twisted.trial.unittest import TestCase

from pilotnet.dashboard import index as index_module, service as service_module
from pilotnet.dashboard.app import DashboardApp
from pilotnet.dashboard.history import History
from pilotnet.dashboard.index import ONLINE_CHECK, DirectoryIndex
from pilotnet.dashboard.order import KEYS, SortOrder
from pilotnet.dashboard.query import PAGE_SIZE, SORTS, NodeQuery
from pilotnet.registry.directory import Directory, Network, Node
from pilotnet.registry.replication import StandbyState
from tests.dashboard.fixtures import Polo, header
from tests.registry.fixtures import identity

STALE_AFTER = 300.0
START = 1_700_000_000.0
TAGS = ["gpu", "cpu", "team-1", "team-12", "ml"]
# "gpu" names one tag, "team-1" and "m" several.
SEARCHES = ["", "gpu", "team-1", "m", "absent"]
# Networks 1 and 2 exist, 3 does not.
NETWORKS = (1, 2)

node_ids = st.integers(1, 90)
fields = st.fixed_dictionaries({
    "polo_score": st.integers(-5, 5),
    "tags": st.lists(st.sampled_from(TAGS), max_size=3, unique=True).map(tuple),
    "task_exec": st.booleans(),
    "public": st.booleans(),
    "hostname": st.sampled_from(["", "alpha", "beta"]),
    "version": st.sampled_from(["", "1.9.0", "v1.8.2"]),
    "age": st.floats(0, 2 * STALE_AFTER),
})
operations = st.one_of(
    st.tuples(st.just("save"), node_ids, fields),
    st.tuples(st.just("remove"), node_ids),
    st.tuples(st.just("heartbeat"), node_ids),
    st.tuples(st.just("consent"), node_ids, node_ids),
    st.tuples(st.just("withdraw"), node_ids, node_ids),
    st.tuples(st.just("join"), node_ids, st.sampled_from(NETWORKS)),
    st.tuples(st.just("leave"), node_ids, st.sampled_from(NETWORKS)),
)
queries = st.builds(NodeQuery, tag=st.sampled_from(SEARCHES), online=st.booleans(),
                    tasks=st.booleans(), sort=st.sampled_from(list(SORTS)),
                    page=st.integers(1, 5), network=st.sampled_from((0,) + NETWORKS + (3,)))


def _save(directory, node_id, now, age, **values):
    directory.save_node(Node(node_id, f"key-{node_id}", last_seen=now - age, **values))


def _expected(directory, now, query):
    """``(page IDs, total)`` of ``query``: every node filtered and sorted the obvious way."""
    consents = directory.consents
    links = Counter()
    for a, b in consents:
        if a < b and (b, a) in consents:
            links.update((a, b))
    chosen = []
    network = directory.networks.get(query.network)
    for node in directory.nodes.values():
        if query.network and (network is None or node.id not in network.members):
            continue
        row = SimpleNamespace(id=node.id, polo_score=node.polo_score, trust_links=links[node.id],
                              online=node.last_seen >= now - STALE_AFTER)
        if ((not query.tag or any(query.tag in tag for tag in node.tags))
                and (row.online or not query.online) and (node.task_exec or not query.tasks)):
            chosen.append(row)
    keys = {"address": lambda r: r.id, "polo-desc": lambda r: (-r.polo_score, r.id),
            "polo-asc": lambda r: (r.polo_score, r.id),
            "trust-desc": lambda r: (-r.trust_links, r.id),
            "status": lambda r: (not r.online, r.id)}
    chosen.sort(key=keys[query.sort])
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    start = (min(query.page, pages) - 1) * PAGE_SIZE
    return [r.id for r in chosen[start:start + PAGE_SIZE]], len(chosen)


class IndexMatchesBruteForceTests(TestCase):
    @settings(max_examples=60, deadline=None)
    @given(initial=st.dictionaries(node_ids, fields, max_size=80),
           steps=st.lists(st.tuples(st.lists(operations, max_size=12),
                                    st.floats(ONLINE_CHECK, STALE_AFTER)), max_size=8),
           asked=st.lists(queries, min_size=1, max_size=6),
           sort_cost=st.sampled_from([0, 4, 10**9]),
           match_sets=st.sampled_from([1, 16]),
           build_step=st.sampled_from([None, 1, 7]))
    def test_indexed_queries_equal_brute_force_after_random_changes(
            self, initial, steps, asked, sort_cost, match_sets, build_step):
        """Pages walked or sorted (``sort_cost``), kept match sets evicted or not, the index
        built at once or in steps, with changes made during the build."""
        now = START
        directory = Directory()
        for network_id in NETWORKS:
            directory.save_network(Network(network_id, f"net-{network_id}", "open", "", set(), now))
        for node_id, values in initial.items():
            _save(directory, node_id, now, **values)
            if node_id % 3:
                directory.add_member(directory.networks[1 + node_id % 2], node_id)
        registry = SimpleNamespace(directory=directory, offline_after=STALE_AFTER)
        with mock.patch.object(index_module, "SORT_COST", sort_cost), \
                mock.patch.object(index_module, "MAX_MATCH_SETS", match_sets):
            index = DirectoryIndex(registry, now, build=build_step is None)
            while index.building:
                if steps:
                    for operation, node_id, *rest in steps[0][0][:2]:
                        self._apply(directory, now, operation, node_id, rest)
                    index.note(directory.take_changes())
                index.build_step(build_step)
            index.refresh(now)
            for query in asked:
                index.select(query)  # sort orders exist before the changes, so they are updated
            for batch, elapsed in steps:
                now += elapsed
                for operation, node_id, *rest in batch:
                    self._apply(directory, now, operation, node_id, rest)
                index.note(directory.take_changes())
                index.refresh(now)
                for query in asked:
                    page = index.select(query)
                    self.assertEqual(([row.id for row in page.rows], page.total),
                                     _expected(directory, now, query), query)
        fresh = DirectoryIndex(registry, now)
        self.assertEqual(index.rows, fresh.rows)
        self.assertEqual((index.counts(), index.versions, index.edges, index.networks),
                         (fresh.counts(), fresh.versions, fresh.edges, fresh.networks))

    def _apply(self, directory, now, operation, node_id, rest):
        if operation == "save":
            _save(directory, node_id, now, **rest[0])
        elif operation == "remove":
            directory.remove_node(node_id)
        elif operation == "heartbeat" and node_id in directory.nodes:
            directory.touch(directory.nodes[node_id], now)
        elif operation == "consent":
            directory.consent(node_id, rest[0])
        elif operation == "withdraw":
            directory.withdraw(node_id, rest[0])
        elif operation == "join":
            directory.add_member(directory.networks[rest[0]], node_id)
        elif operation == "leave":
            directory.remove_member(directory.networks[rest[0]], node_id)


class OnlineSweepTests(TestCase):
    def test_each_check_looks_at_the_budget_and_a_sweep_reaches_every_node(self):
        directory = Directory()
        for node_id in range(1, 6):
            _save(directory, node_id, START, 0.0)
        directory.take_changes()
        registry = SimpleNamespace(directory=directory, offline_after=STALE_AFTER)
        with mock.patch.object(index_module, "ONLINE_BUDGET", 2):
            index = DirectoryIndex(registry, START)
            self.assertEqual(index.counts()["active_nodes"], 5)
            now = START + STALE_AFTER + 1
            online = []
            for _ in range(3):
                index.refresh(now)
                online.append(index.counts()["active_nodes"])
                now += ONLINE_CHECK
        # Nodes 1 and 2 turn offline, then 3 and 4, then 5.
        self.assertEqual(online, [3, 1, 0])


class SortOrderTests(TestCase):
    @settings(max_examples=50, deadline=None)
    @given(scores=st.dictionaries(node_ids, st.integers(-3, 3)),
           moves=st.dictionaries(node_ids, st.one_of(st.none(), st.integers(-3, 3))))
    def test_a_moved_order_equals_a_fresh_sort(self, scores, moves):
        def row(node_id, score):
            return SimpleNamespace(id=node_id, polo_score=score)

        order = SortOrder("polo-desc", [row(i, s) for i, s in scores.items()])
        removed = [row(i, scores[i]) for i in moves if i in scores]
        added = [row(i, s) for i, s in moves.items() if s is not None]
        scores.update(moves)
        order.update(removed, added)
        now = {i: s for i, s in scores.items() if s is not None}
        self.assertEqual(list(order.ids()),
                         sorted(now, key=lambda i: (-now[i], i)))

    def test_packed_keys_order_like_the_sort_they_name(self):
        rows = [SimpleNamespace(id=i, polo_score=p, trust_links=t, online=o)
                for i, p, t, o in ((5, -2, 0, True), (3, 7, 2, False), (0xFFFFFFFE, -2, 2, True))]
        expected = {"address": [3, 5, 0xFFFFFFFE], "polo-desc": [3, 5, 0xFFFFFFFE],
                    "polo-asc": [5, 0xFFFFFFFE, 3], "trust-desc": [3, 0xFFFFFFFE, 5],
                    "status": [5, 0xFFFFFFFE, 3]}
        for sort in KEYS:
            self.assertEqual(list(SortOrder(sort, rows).ids()), expected[sort], sort)


class DashboardKeepsUpTests(TestCase):
    def test_a_commit_shows_at_once_in_the_same_index(self):
        polo = Polo(self)
        first = polo.dashboard.index()
        node_id = polo.driven.register(identity(1))
        polo.server.commit()
        self.assertIs(polo.dashboard.index(), first)
        self.assertEqual(list(first.rows), [node_id])
        self.assertEqual(polo.json("/api/nodes?online=1")["total"], 1)

    def test_online_status_follows_heartbeats_and_the_clock(self):
        polo = Polo(self)
        quiet = polo.add(1)
        beating = polo.add(2, online=False)
        offline_after = polo.driven.registry.offline_after
        self.assertEqual(polo.dashboard.index().online, {quiet})
        polo.clock.advance(offline_after)
        polo.directory.touch(polo.directory.nodes[beating], polo.clock.seconds())
        polo.clock.advance(ONLINE_CHECK)
        self.assertEqual(polo.dashboard.index().online, {beating})
        self.assertEqual([n["online"] for n in polo.json("/api/nodes?sort=status")["nodes"]],
                         [True, False])

    def test_a_replaced_directory_is_indexed_afresh(self):
        polo = Polo(self)
        polo.add(1, tags=["gpu"])
        entities = polo.directory.entities()
        polo.add(2, tags=["cpu"])
        first = polo.dashboard.index()
        polo.directory.replace(entities)
        second = polo.dashboard.index()
        self.assertIsNot(second, first)
        self.assertEqual(list(second.tag_index), ["gpu"])

    def test_a_standby_follows_the_changes_its_replication_applies(self):
        polo = Polo(self)
        node_id = polo.add(1)
        polo.driven.registry.read_only = True
        first = polo.dashboard.index()
        standby = StandbyState(polo.directory, observers=polo.server.commit_observers)
        standby.receive({"type": "replication_changes", "changes": [["node", str(node_id), None]]})
        self.assertEqual(polo.dashboard.index().counts()["total_nodes"], 0)
        self.assertIs(polo.dashboard.index(), first)


class SteppedBuildTests(TestCase):
    def test_a_large_directory_is_indexed_in_steps_and_answers_503_until_done(self):
        polo = Polo(self)
        for number in range(1, 6):
            polo.add(number, tags=["gpu"])
        polo.trust(polo.numbers[1], polo.numbers[2])
        answers = []

        def between_steps():
            """Traffic between two steps: a registration, and a page asking for the nodes."""
            if not answers:
                polo.driven.register(identity(6))
                polo.server.commit()
            response, body = polo.get("/api/nodes?tag=gpu")
            answers.append((response.code, json.loads(body).get("code"),
                            header(response, "Retry-After")))

        with mock.patch.object(service_module, "BUILD_STEP", 2):
            dashboard = service_module.Dashboard(polo.server, polo.clock, History(),
                                                 freeze=between_steps)
            polo.client = StubTreq(DashboardApp(dashboard).resource())
            dashboard.startService()
            self.addCleanup(dashboard.stopService)
            response, body = polo.get("/api/stats")
            self.assertEqual((response.code, json.loads(body)["code"]), (503, "not_running"))
            self.assertIn("0 of 5 nodes", json.loads(body)["error"])
            polo.clock.advance(0)
        # 5 nodes and 2 consents, 2 a step: the page answers once the last step is done.
        self.assertEqual(answers, [(503, "not_running", "5")] * 3 + [(200, None, None)])
        stats = polo.json("/api/stats?summary=1")
        self.assertEqual((stats["total_nodes"], stats["total_trust_links"]), (6, 1))
        self.assertEqual(polo.json("/api/nodes?tag=gpu")["total"], 5)
