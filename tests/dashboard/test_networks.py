"""The networks panel and the directory filtered to a network, through the dashboard's routes."""

from twisted.trial.unittest import TestCase

from tests.dashboard.fixtures import HOSTILE, Polo
from tests.registry.fixtures import ADMIN_TOKEN


class NetworkPanelTests(TestCase):
    def setUp(self):
        self.polo = Polo(self)
        self.ids = [self.polo.add(number, online=number != 3) for number in range(1, 6)]
        self.network = self.create(self.ids[0], "research", "open")
        for node_id in self.ids[1:3]:
            self.polo.directory.networks[self.network].members.add(node_id)
            self.polo.directory.save_network(self.polo.directory.networks[self.network])
        self.guarded = self.create(self.ids[3], "vault", "token", token="never-shown")
        self.polo.commit()

    def create(self, owner, name, join_rule, **fields):
        reply = self.polo.driven.ok({"type": "create_network", "node_id": owner, "name": name,
                                     "join_rule": join_rule, "admin_token": ADMIN_TOKEN, **fields})
        self.polo.commit()
        return reply["network_id"]

    def test_each_network_with_members_online_total_and_join_rule(self):
        networks = self.polo.json("/api/stats?summary=1")["networks"]
        self.assertEqual([(n["name"], n["online_members"], n["members"], n["join_rule"]) for n in networks],
                         [("backbone", 4, 5, ""), ("research", 2, 3, "open"), ("vault", 1, 1, "token")])
        page = self.polo.html("/")
        self.assertIn(f'<a href="/?network={self.network}#directory"', page)
        self.assertIn("<td>token</td>", page)
        self.assertNotIn("never-shown", page)

    def test_the_directory_filtered_to_a_network(self):
        listed = self.polo.json(f"/api/nodes?network={self.network}")
        self.assertEqual(listed["total"], 3)
        self.assertEqual(listed["query"]["network"], self.network)
        self.assertEqual(self.polo.json(f"/api/nodes?network={self.network}&online=1")["total"], 2)
        fragment = self.polo.html(f"/fragment/directory?network={self.network}")
        self.assertIn("Members of network <strong>research</strong>", fragment)
        self.assertEqual(fragment.count('class="node"'), 3)
        self.assertEqual(self.polo.json("/api/nodes?network=999")["total"], 0)

    def test_membership_changes_show_at_once(self):
        self.assertEqual(self.polo.json(f"/api/nodes?network={self.guarded}")["total"], 1)
        self.polo.driven.ok({"type": "join_network", "node_id": self.ids[4], "network_id": self.guarded,
                             "token": "never-shown", "admin_token": ADMIN_TOKEN})
        self.polo.commit()
        self.assertEqual(self.polo.json(f"/api/nodes?network={self.guarded}")["total"], 2)

    def test_a_bad_network_is_a_clear_error(self):
        for bad in ("x", "70000", "-1"):
            response, body = self.polo.get(f"/api/nodes?network={bad}")
            self.assertEqual(response.code, 400, bad)

    def test_network_names_are_text(self):
        network = self.polo.directory.networks[self.network]
        network.name = HOSTILE
        self.polo.directory.save_network(network)
        self.polo.commit()
        page = self.polo.html(f"/?network={self.network}")
        self.assertNotIn(HOSTILE, page)
        self.assertIn("&lt;img", page)
