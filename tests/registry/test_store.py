"""The SQLite store: every acknowledged change comes back after a restart."""

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.registry.directory import Directory
from pilotnet.registry.handlers import Registry
from pilotnet.registry.framing import go_json
from pilotnet.registry.challenges import sign_fresh_request
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.server import RegistryServer
from pilotnet.registry.store import RegistryStore
from tests.registry.fixtures import ADMIN_TOKEN, PEER, identity
from tests.registry.network_scenario import network_state, run_network_changes, run_sync


class StoreTests(SynchronousTestCase):
    def setUp(self):
        self.path = os.path.join(self.mktemp(), "registry.db")
        self.clock = Clock()
        self.clock.advance(1_700_000_000)

    def open(self):
        store = RegistryStore(self.path)
        self.addCleanup(store.close)
        directory = Directory(started=self.clock.seconds())
        store.load_into(directory)
        registry = Registry(directory, admin_token=ADMIN_TOKEN,
                            register_limiter=RateLimiter(burst=100, window=60.0))
        return RegistryServer(registry, self.clock, store)

    def ask(self, server, request, signer=None):
        if signer is not None:
            request = sign_fresh_request(signer, request, self.clock.seconds())
        reply = self.successResultOf(server.answer(go_json(request), PEER))
        self.assertNotEqual(reply["type"], "error", reply)
        return reply

    def test_restart_restores_everything(self):
        alice, bob = identity(1), identity(2)
        server = self.open()
        a = self.ask(server, {"type": "register", "public_key": alice.public_key_b64,
                              "listen_addr": ":4000", "owner": "a@example.com",
                              "hostname": "alice"})["node_id"]
        b = self.ask(server, {"type": "register", "public_key": bob.public_key_b64})["node_id"]
        self.ask(server, {"type": "set_tags", "node_id": a, "tags": ["gpu"]}, alice)
        self.ask(server, {"type": "set_visibility", "node_id": a, "public": True}, alice)
        self.ask(server, {"type": "report_trust", "node_id": a, "peer_id": b}, alice)
        self.ask(server, {"type": "report_trust", "node_id": b, "peer_id": a}, bob)
        self.ask(server, {"type": "request_handshake", "from_node_id": b, "to_node_id": a,
                          "justification": "hi"}, bob)
        net = self.ask(server, {"type": "create_network", "node_id": a, "name": "lab",
                                "admin_token": ADMIN_TOKEN})["network_id"]
        before = self.ask(server, {"type": "lookup", "node_id": a})
        server.store.close()

        restarted = self.open()
        self.assertEqual(self.ask(restarted, {"type": "lookup", "node_id": a}), before)
        self.assertTrue(restarted.registry.directory.trust_pair(a, b))
        inbox = self.ask(restarted, {"type": "poll_handshakes", "node_id": a}, alice)
        self.assertEqual(inbox["requests"][0]["justification"], "hi")
        self.assertEqual(restarted.registry.directory.networks[net].members, {a})
        # Counters survived: the next node and network get fresh IDs.
        self.assertEqual(self.ask(restarted, {"type": "register",
                                              "public_key": identity(3).public_key_b64})["node_id"],
                         3)
        self.assertEqual(self.ask(restarted, {"type": "create_network", "node_id": a,
                                              "name": "lab2", "admin_token": ADMIN_TOKEN})
                         ["network_id"], 2)
        # The destructive poll was stored too.
        restarted.store.close()
        self.assertEqual(self.open().registry.directory.pending_requests(a), [])

    def test_networks_roles_invites_and_policies_survive_a_restart(self):
        server = self.open()

        def register(who):
            return self.ask(server, {"type": "register", "public_key": who.public_key_b64})["node_id"]

        ids = run_sync(run_network_changes(
            lambda request, signer=None: self.ask(server, request, signer), register))
        before = network_state(server.registry.directory)
        server.store.close()
        restarted = self.open()
        self.assertEqual(network_state(restarted.registry.directory), before)
        self.assertEqual(self.ask(restarted, {"type": "get_member_role", "network_id": 1,
                                              "target_node_id": ids["admin"]})["role"], "admin")
        self.assertEqual(len(self.ask(restarted, {"type": "poll_invites", "node_id": ids["guest"]},
                                      identity(13))["invites"]), 1)

    def test_deletions_and_lazy_last_seen(self):
        alice = identity(1)
        server = self.open()
        a = self.ask(server, {"type": "register", "public_key": alice.public_key_b64,
                              "hostname": "alice"})["node_id"]
        self.clock.advance(30)
        self.ask(server, {"type": "heartbeat", "node_id": a}, alice)
        server.housekeeping()
        self.assertEqual(self.open().registry.directory.nodes[a].last_seen, self.clock.seconds())
        self.ask(server, {"type": "deregister", "node_id": a}, alice)
        restored = self.open().registry.directory
        self.assertEqual(restored.nodes, {})
        self.assertEqual(restored.hostname_index, {})
        self.assertEqual(restored.key_index, {alice.public_key_b64: a})

    def test_store_in_wal_mode(self):
        store = RegistryStore(self.path)
        self.addCleanup(store.close)
        self.assertEqual(store._db.execute("PRAGMA journal_mode").fetchone()[0], "wal")

    def test_store_files_are_owner_only_even_under_a_loose_umask(self):
        """Join tokens live in the store: other local users must not read it or its WAL."""
        previous = os.umask(0o022)
        self.addCleanup(os.umask, previous)
        server = self.open()
        self.ask(server, {"type": "register", "public_key": identity(1).public_key_b64})
        for suffix in ("", "-wal", "-shm"):
            self.assertEqual(os.stat(self.path + suffix).st_mode & 0o777, 0o600, suffix)

    def test_existing_loose_files_are_tightened(self):
        os.makedirs(os.path.dirname(self.path))
        for suffix in ("", "-wal"):
            with open(self.path + suffix, "wb"):
                pass
            os.chmod(self.path + suffix, 0o644)
        store = RegistryStore(self.path)
        self.addCleanup(store.close)
        for suffix in ("", "-wal"):
            self.assertEqual(os.stat(self.path + suffix).st_mode & 0o777, 0o600, suffix)

    def test_malformed_body_counted(self):
        server = self.open()
        self.assertEqual(self.successResultOf(server.answer(b"{", PEER))["type"], "error")
        self.assertEqual(server.malformed, 1)
