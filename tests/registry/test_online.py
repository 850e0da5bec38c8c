"""The online count behind ``pilot_nodes_online``: exact for small directories, bounded work for large ones."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.registry.directory import Directory, Node
from pilotnet.registry.online import OnlineCount


class CountedNodes(dict):
    """The directory's node table, counting the look-ups a count makes."""

    looked_up = 0

    def get(self, key, default=None):
        self.looked_up += 1
        return super().get(key, default)


class OnlineCountTests(SynchronousTestCase):
    def setUp(self):
        self.directory = Directory()
        self.directory.nodes = CountedNodes()

    def add(self, node_id, last_seen):
        self.directory.nodes[node_id] = Node(id=node_id, public_key=f"key-{node_id}", last_seen=last_seen)

    def test_exact_while_the_directory_fits_the_budget(self):
        count = OnlineCount(self.directory, budget=10)
        self.assertEqual(count(100.0), 0)
        for node_id, seen in ((1, 150.0), (2, 90.0), (3, 100.0)):
            self.add(node_id, seen)
        self.assertEqual(count(100.0), 2)
        self.assertEqual(count(120.0), 1)
        del self.directory.nodes[1]
        self.assertEqual(count(100.0), 1)

    def test_each_call_checks_at_most_the_budget_and_the_parts_add_up(self):
        for node_id in range(1, 11):
            self.add(node_id, 200.0 if node_id % 2 else 50.0)
        count = OnlineCount(self.directory, budget=3)
        answers = []
        for _ in range(4):  # four parts of at most 3 nodes: the whole directory once
            before = self.directory.nodes.looked_up
            answers.append(count(100.0))
            self.assertLessEqual(self.directory.nodes.looked_up - before, 3)
        self.assertEqual(answers[-1], 5)
        # Nodes going quiet show within one more sweep, as does a smaller directory.
        for node_id in (1, 3, 5):
            self.directory.nodes[node_id].last_seen = 50.0
        for node_id in (9, 10):
            del self.directory.nodes[node_id]
        answers = [count(100.0) for _ in range(3)]
        self.assertEqual(answers[-1], 1)
        self.assertEqual(count(100.0), 1)

    def test_a_replaced_node_table_is_followed(self):
        count = OnlineCount(self.directory, budget=10)
        self.add(1, 150.0)
        self.assertEqual(count(100.0), 1)
        self.directory.nodes = {}
        self.assertEqual(count(100.0), 0)
