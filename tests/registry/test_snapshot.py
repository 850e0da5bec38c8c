"""Import of a Go registry snapshot (a small one written from the format description)."""

import json
import os

from twisted.python import usage
from twisted.trial.unittest import TestCase

from pilotnet.registry.challenges import sign_fresh_request, sign_request
from pilotnet.registry.directory import Directory
from pilotnet.registry.handlers import Registry
from pilotnet.registry.snapshot import SnapshotError, import_go_snapshot, read_go_snapshot
from pilotnet.registry.store import RegistryStore
from pilotnet.registry.tap import RegistryOptions
from tests.registry.fixtures import PEER, identity

NOW = 1_780_000_000.0
ALICE, BOB, CAROL, GONE = identity(1), identity(2), identity(3), identity(4)


def _snapshot():
    """The shape a Go registry writes (UP fields, plus a few FK ones we ignore or map)."""
    return {
        "version": 1, "next_node": 5, "next_net": 3,
        "nodes": {
            "1": {"id": 1, "owner": "alice@example.com", "public_key": ALICE.public_key_b64,
                  "real_addr": "203.0.113.1:4000", "networks": [0, 1], "public": True,
                  "last_seen": "2026-05-26T10:00:00.123456789Z", "hostname": "alice",
                  "tags": ["gpu", "eu"], "polo_score": 42, "task_exec": True,
                  "lan_addrs": ["10.0.0.1:4000"], "version": "1.9.0"},
            "2": {"id": 2, "public_key": BOB.public_key_b64, "real_addr": "203.0.113.2:4000",
                  "networks": [0], "last_seen": "2026-05-26T10:00:01Z"},
            "3": {"id": 3, "public_key": CAROL.public_key_b64, "networks": [0, 2],
                  "last_seen": "2026-05-26T10:00:02.5+02:00"},
        },
        "networks": {
            "0": {"id": 0, "name": "backbone", "join_rule": "open", "members": [1, 2, 3],
                  "created": "2026-01-01T00:00:00Z"},
            "1": {"id": 1, "name": "lab", "join_rule": "token", "token": "lab-token",
                  "members": [1], "created": "2026-02-01T00:00:00Z"},
            "2": {"id": 2, "name": "corp", "join_rule": "invite", "members": [1, 3],
                  "created": "2026-03-01T00:00:00Z", "enterprise": True,
                  "member_roles": {"3": "owner", "1": "admin"}, "admin_token": "corp-key",
                  "policy": {"max_members": 50, "allowed_ports": [80, 443], "description": "corp"},
                  "member_tags": {"1": ["gpu"]}},
        },
        "trust_pairs": ["1:2"],
        "pub_key_idx": {ALICE.public_key_b64: 1, BOB.public_key_b64: 2,
                        CAROL.public_key_b64: 3, GONE.public_key_b64: 4},
        "handshake_inbox": {"3": [{"from_node_id": 1, "justification": "hello",
                                   "timestamp": "2026-05-26T09:59:00.000000001Z"}]},
        "handshake_responses": {"1": [{"from_node_id": 3, "accept": False,
                                       "timestamp": "2026-05-26T09:59:30Z"}]},
        "invite_inbox": {"2": [{"network_id": 2, "inviter_id": 3,
                                "timestamp": "2026-05-26T09:58:00Z"}]},
        "audit_log": [], "checksum": "0" * 64,
    }


class SnapshotImportTests(TestCase):
    def store(self):
        directory = self.mktemp()
        os.makedirs(directory)
        store = RegistryStore(os.path.join(directory, "registry.db"))
        self.addCleanup(store.close)
        return store

    def write(self, snapshot):
        path = self.mktemp()
        with open(path, "w") as handle:
            json.dump(snapshot, handle)
        return path

    def imported_registry(self):
        store = self.store()
        import_go_snapshot(self.write(_snapshot()), store)
        directory = Directory()
        store.load_into(directory)
        return Registry(directory)

    def ok(self, registry, request, signer=None):
        if signer is not None:
            request = sign_fresh_request(signer, request, NOW)
        reply = registry.handle(request, PEER, NOW)
        self.assertEqual(reply["type"], request["type"] + "_ok", reply)
        return reply

    def test_nodes_and_their_fields(self):
        registry = self.imported_registry()
        alice = self.ok(registry, {"type": "lookup", "node_id": 1})
        self.assertEqual(
            {k: alice[k] for k in ("hostname", "tags", "polo_score", "task_exec", "real_addr",
                                   "public", "networks", "version")},
            {"hostname": "alice", "tags": ["gpu", "eu"], "polo_score": 42, "task_exec": True,
             "real_addr": "203.0.113.1:4000", "public": True, "networks": [0, 1, 2],
             "version": "1.9.0"})
        node = registry.directory.nodes[1]
        self.assertAlmostEqual(node.last_seen, 1779789600.123456, places=5)
        self.assertEqual(registry.directory.nodes[3].last_seen, 1779782402.5)
        self.assertEqual(registry.directory.owner_index, {"alice@example.com": 1})

    def test_trust_pair_unlocks_the_private_node(self):
        registry = self.imported_registry()
        self.ok(registry, {"type": "resolve", "node_id": 2, "requester_id": 1}, ALICE)
        denied = registry.handle(sign_request(CAROL, {"type": "resolve", "node_id": 2,
                                                      "requester_id": 3}), PEER, NOW)
        self.assertIn("is private", denied["error"])

    def test_ids_kept_for_known_keys_and_allocated_after_the_counter(self):
        registry = self.imported_registry()
        for who, node_id in ((ALICE, 1), (GONE, 4), (identity(9), 5)):
            reply = self.ok(registry, {"type": "register", "public_key": who.public_key_b64})
            self.assertEqual(reply["node_id"], node_id)

    def test_inboxes_and_networks(self):
        registry = self.imported_registry()
        polled = self.ok(registry, {"type": "poll_handshakes", "node_id": 3}, CAROL)
        self.assertEqual([(r["from_node_id"], r["justification"]) for r in polled["requests"]],
                         [(1, "hello")])
        responses = self.ok(registry, {"type": "poll_handshakes", "node_id": 1}, ALICE)
        self.assertEqual(responses["responses"][0]["accept"], False)
        networks = self.ok(registry, {"type": "list_networks"})["networks"]
        self.assertEqual([(n["id"], n["name"], n["join_rule"]) for n in networks],
                         [(0, "backbone", "open"), (1, "lab", "token"), (2, "corp", "invite")])
        # The invite-only network keeps its roles, settings and pending invitation.
        refused = registry.handle(sign_fresh_request(BOB, {"type": "join_network", "node_id": 2,
                                                           "network_id": 2, "token": ""}, NOW),
                                  PEER, NOW)
        self.assertIn("invite-only", refused["error"])
        roles = [self.ok(registry, {"type": "get_member_role", "network_id": 2,
                                    "target_node_id": node_id})["role"] for node_id in (1, 3)]
        self.assertEqual(roles, ["admin", "owner"])
        policy = self.ok(registry, {"type": "get_network_policy", "network_id": 2})
        self.assertEqual((policy["max_members"], policy["allowed_ports"]), (50, [80, 443]))
        self.assertEqual(self.ok(registry, {"type": "get_member_tags", "network_id": 2,
                                            "target_node_id": 1})["tags"], ["gpu"])
        self.assertEqual(registry.directory.owner_of(registry.directory.networks[1]), 1)
        accepted = self.ok(registry, {"type": "respond_invite", "node_id": 2, "network_id": 2,
                                      "accept": True}, BOB)
        self.assertEqual(accepted["address"], "2:0002.0000.0002")
        self.ok(registry, {"type": "check_trust", "node_id": 3, "peer_id": 3})
        self.ok(registry, {"type": "join_network", "node_id": 2, "network_id": 1,
                           "token": "lab-token"}, BOB)
        self.assertEqual(registry.directory.next_net, 3)

    def test_refuses_a_store_with_state(self):
        store = self.store()
        path = self.write(_snapshot())
        import_go_snapshot(path, store)
        error = self.assertRaises(SnapshotError, import_go_snapshot, path, store)
        self.assertIn("already holds registry state", error.message)

    def test_malformed_snapshots_named(self):
        broken = _snapshot()
        broken["nodes"]["2"]["public_key"] = "not-a-key"
        for data, message in ((b"{", "not a JSON snapshot"), (b"[]", "not a Go registry"),
                              (json.dumps(broken).encode(), "nodes[2].public_key"),
                              (b'{"nodes": {"1": {"id": -1}}}', "nodes[1].id")):
            error = self.assertRaises(SnapshotError, read_go_snapshot, data)
            self.assertIn(message, error.message)

    def test_malformed_times_named(self):
        # A number once crashed the import (AttributeError); a time without an offset is not RFC 3339.
        for value in (5, "yesterday", "2026-05-26T10:00:00", "2026-05-26T10:00:00+0200"):
            broken = _snapshot()
            broken["nodes"]["2"]["last_seen"] = value
            error = self.assertRaises(SnapshotError, read_go_snapshot, json.dumps(broken).encode())
            self.assertIn("nodes[2].last_seen", error.message)

    def test_option(self):
        error = self.assertRaises(usage.UsageError, RegistryOptions().parseOptions,
                                  ["--import-snapshot", "x.json"])
        self.assertIn("needs --store", str(error))
        store_path = os.path.join(self.mktemp(), "registry.db")
        options = RegistryOptions()
        options.parseOptions(["--store", store_path, "--import-snapshot",
                              self.write(_snapshot())])
        store = RegistryStore(store_path)
        self.addCleanup(store.close)
        self.assertGreater(store.count(), 10)
        error = self.assertRaises(usage.UsageError, RegistryOptions().parseOptions,
                                  ["--store", store_path, "--import-snapshot", "missing.json"])
        self.assertIn("already holds", str(error))
