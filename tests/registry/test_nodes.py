"""Registration, liveness and node settings, driven without sockets."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.registry.directory import Directory
from pilotnet.ratelimit import RateLimiter
from tests.registry.fixtures import ADMIN_TOKEN, DrivenRegistry, identity


class RegisterTests(SynchronousTestCase):
    def setUp(self):
        self.r = DrivenRegistry()
        self.alice = identity(1)

    def test_first_registration(self):
        reply = self.r.ok({"type": "register", "public_key": self.alice.public_key_b64,
                           "listen_addr": "10.0.0.1:4000"})
        self.assertEqual(reply["node_id"], 1)
        self.assertEqual(reply["address"], "0:0000.0000.0001")
        self.assertEqual(reply["network_id"], 0)
        self.assertEqual(reply["public_key"], self.alice.public_key_b64)
        # The endpoint is the TCP source IP with the announced port.
        self.assertEqual(reply["observed_addr"], "198.51.100.7:4000")

    def test_same_key_keeps_id_and_new_keys_get_new_ids(self):
        first = self.r.register(self.alice)
        self.assertEqual(self.r.register(identity(2)), first + 1)
        self.assertEqual(self.r.register(self.alice), first)

    def test_ipv6_peer_and_unparsable_listen_addr(self):
        reply = self.r.ok({"type": "register", "public_key": self.alice.public_key_b64,
                           "listen_addr": "nonsense"}, peer=("2001:db8::1", 5555))
        self.assertEqual(reply["observed_addr"], "[2001:db8::1]:5555")

    def test_identity_only_registration(self):
        reply = self.r.ok({"type": "register", "public_key": self.alice.public_key_b64})
        self.assertEqual(reply["observed_addr"], "")

    def test_public_key_required_and_checked(self):
        self.assertEqual(self.r.error({"type": "register"}), "registration requires public_key")
        self.assertIn("not valid base64", self.r.error({"type": "register", "public_key": "!!"}))
        self.assertIn("32 bytes", self.r.error({"type": "register", "public_key": "AAAA"}))
        self.assertIn("expected a string",
                      self.r.error({"type": "register", "public_key": self.alice.public_key_b64,
                                    "owner": 5}))

    def test_hostname_attached_or_reported(self):
        reply = self.r.ok({"type": "register", "public_key": self.alice.public_key_b64,
                           "hostname": "alice"})
        self.assertEqual(reply["hostname"], "alice")
        taken = self.r.ok({"type": "register", "public_key": identity(2).public_key_b64,
                           "hostname": "alice"})
        self.assertEqual(taken["hostname_error"], 'hostname "alice" already in use')
        self.assertNotIn("hostname", taken)
        bad = self.r.ok({"type": "register", "public_key": identity(3).public_key_b64,
                         "hostname": "Bad_Name"})
        self.assertIn("lowercase", bad["hostname_error"])

    def test_registration_rate_limit_per_ip_spares_known_keys(self):
        r = DrivenRegistry(register_limiter=RateLimiter(burst=2, window=60.0))
        r.register(identity(1))
        r.register(identity(2))
        error = r.error({"type": "register", "public_key": identity(3).public_key_b64})
        self.assertEqual(error, "rate limited: too many registrations from 198.51.100.7")
        r.register(identity(1))
        r.register(identity(4), peer=("203.0.113.9", 1))
        r.now += 30
        r.register(identity(3))

    def test_owner_recovery_when_enabled_recovers_an_offline_node_only(self):
        r = DrivenRegistry(allow_owner_recovery=True)
        node_id = r.register(self.alice, owner="alice@example.com")
        thief = identity(9)
        error = r.error({"type": "register", "public_key": thief.public_key_b64,
                         "owner": "alice@example.com"})
        self.assertIn("online with another key", error)
        r.ok({"type": "deregister", "node_id": node_id}, signer=self.alice)
        self.assertEqual(r.register(thief, owner="alice@example.com"), node_id)
        # The lost key no longer maps to the recovered node.
        self.assertNotEqual(r.register(self.alice), node_id)

    def test_owner_string_is_no_credential_by_default(self):
        """The takeover: a new key with a dead node's owner string.  It gets a new ID."""
        node_id = self.r.register(self.alice, owner="alice@example.com")
        self.r.ok({"type": "deregister", "node_id": node_id}, signer=self.alice)
        thief = identity(9)
        stolen = self.r.register(thief, owner="alice@example.com")
        self.assertNotEqual(stolen, node_id)
        self.assertEqual(self.r.registry.directory.owner_index["alice@example.com"], node_id)
        # A second machine of the same owner, while the first is online, is a new node too.
        self.assertEqual(self.r.register(self.alice, owner="alice@example.com"), node_id)
        other = self.r.register(identity(10), owner="alice@example.com")
        self.assertNotIn(other, (node_id, stolen))


class HeartbeatTests(SynchronousTestCase):
    def setUp(self):
        self.r = DrivenRegistry(stale_after=300.0)
        self.alice = identity(1)
        self.node = self.r.register(self.alice)

    def test_heartbeat(self):
        reply = self.r.ok({"type": "heartbeat", "node_id": self.node}, signer=self.alice)
        self.assertEqual(reply["time"], int(self.r.now))

    def test_remembered_heartbeat_signature_is_per_key_and_signature(self):
        beat = {"type": "heartbeat", "node_id": self.node}
        self.r.ok(beat, signer=self.alice)
        self.r.ok(beat, signer=self.alice)
        self.assertEqual(self.r.error(beat, signer=identity(2)), "signature verification failed")
        self.assertEqual(self.r.error(dict(beat, listen_addr="1.2.3.4:5"), signer=identity(2)),
                         "signature verification failed")
        new = identity(5)
        self.r.ok({"type": "rotate_key", "node_id": self.node,
                   "new_public_key": new.public_key_b64}, signer=self.alice)
        self.assertEqual(self.r.error(beat, signer=self.alice), "signature verification failed")
        self.r.ok(beat, signer=new)

    def test_missing_forged_and_unknown(self):
        self.assertEqual(self.r.error({"type": "heartbeat", "node_id": self.node}),
                         "signature required for authenticated node")
        self.assertEqual(self.r.error({"type": "heartbeat", "node_id": self.node},
                                      signer=identity(2)), "signature verification failed")
        self.assertEqual(self.r.error({"type": "heartbeat", "node_id": self.node,
                                       "signature": 12}), "signature verification failed")
        self.assertEqual(self.r.error({"type": "heartbeat", "node_id": 77}, signer=self.alice),
                         "node 77: node not found")
        self.assertIn("node_id required", self.r.error({"type": "heartbeat"}))
        self.assertIn("expected an integer", self.r.error({"type": "heartbeat", "node_id": True}))

    def test_listen_addr_is_signed_and_moves_endpoint(self):
        self.r.ok({"type": "heartbeat", "node_id": self.node, "listen_addr": "1.2.3.4:7000"},
                  signer=self.alice, peer=("192.0.2.1", 1))
        self.assertEqual(self.r.registry.directory.nodes[self.node].real_addr, "192.0.2.1:7000")

    def test_reaping_frees_hostname_and_keeps_the_id(self):
        self.r.ok({"type": "set_hostname", "node_id": self.node, "hostname": "alice"},
                  signer=self.alice)
        self.r.now += 200
        self.r.ok({"type": "heartbeat", "node_id": self.node}, signer=self.alice)
        self.assertEqual(self.r.registry.reap(self.r.now + 299), [])
        self.r.now += 301
        self.assertEqual(self.r.registry.reap(self.r.now), [self.node])
        self.assertIn("not found", self.r.error({"type": "lookup", "node_id": self.node}))
        self.assertIn("not found", self.r.error({"type": "heartbeat", "node_id": self.node},
                                                signer=self.alice))
        other = self.r.register(identity(2), hostname="alice")
        self.assertEqual(self.r.registry.directory.nodes[other].hostname, "alice")
        self.assertEqual(self.r.register(self.alice), self.node)

    def test_online_count(self):
        self.r.register(identity(2))
        self.assertEqual(self.r.registry.online_count(self.r.now), 2)
        self.assertEqual(self.r.registry.online_count(self.r.now + 301), 0)


class SettingsTests(SynchronousTestCase):
    def setUp(self):
        self.r = DrivenRegistry()
        self.alice = identity(1)
        self.node = self.r.register(self.alice)

    def _set(self, kind, **fields):
        return self.r.signed(self.alice, {"type": kind, "node_id": self.node, **fields})

    def test_hostname_rules(self):
        self.assertEqual(self._set("set_hostname", hostname="web-1")["hostname"], "web-1")
        cases = {
            "a" * 64: "invalid hostname: hostname too long (max 63 chars)",
            "Web": "invalid hostname: hostname must be lowercase alphanumeric with hyphens, "
                   "start/end with alphanumeric",
            "-web": "invalid hostname: hostname must be lowercase alphanumeric with hyphens, "
                    "start/end with alphanumeric",
            "localhost": 'invalid hostname: hostname "localhost" is reserved',
        }
        for hostname, message in cases.items():
            self.assertEqual(self._set("set_hostname", hostname=hostname)["error"], message)
        bob = identity(2)
        bob_id = self.r.register(bob)
        self.assertEqual(self.r.error({"type": "set_hostname", "node_id": bob_id,
                                       "hostname": "web-1"}, signer=bob),
                         f'hostname "web-1" already in use by node {self.node}')
        self.assertEqual(self._set("set_hostname", hostname="")["hostname"], "")
        self.r.ok({"type": "set_hostname", "node_id": bob_id, "hostname": "web-1"}, signer=bob)

    def test_tags(self):
        reply = self._set("set_tags", tags=["#gpu", "gpu", "ml-ops"])
        self.assertEqual(reply["tags"], ["gpu", "ml-ops"])
        self.assertEqual(self._set("set_tags", tags=[f"t{i}" for i in range(11)])["error"],
                         "too many tags (max 10)")
        self.assertEqual(self._set("set_tags", tags=["#"])["error"], "empty tag not allowed")
        self.assertIn("too long", self._set("set_tags", tags=["a" * 33])["error"])
        self.assertIn("invalid tag", self._set("set_tags", tags=["UPPER"])["error"])
        self.assertIn("list of strings", self._set("set_tags", tags="gpu")["error"])
        self.assertEqual(self._set("set_tags", tags=[])["tags"], [])

    def test_tag_and_lan_lists_held_as_tuples(self):
        # Tuples of strings drop out of the garbage collector's full passes.
        self._set("set_tags", tags=["gpu"])
        self.r.register(self.alice, lan_addrs=["10.0.0.2:4000"])
        node = self.r.registry.directory.nodes[self.node]
        self.assertEqual((node.tags, node.lan_addrs), (("gpu",), ("10.0.0.2:4000",)))
        stored = self.r.registry.directory.entity("node", str(self.node))
        self.assertEqual((stored["tags"], stored["lan_addrs"]), (["gpu"], ["10.0.0.2:4000"]))
        restored = Directory()
        restored.restore("node", str(self.node), stored)
        self.assertEqual(restored.nodes[self.node], node)

    def test_visibility_and_task_exec(self):
        self.assertEqual(self._set("set_visibility", public=True)["visibility"], "public")
        self.assertEqual(self._set("set_visibility", public=False)["visibility"], "private")
        self.assertIs(self._set("set_task_exec", enabled=True)["task_exec"], True)
        lookup = self.r.ok({"type": "lookup", "node_id": self.node})
        self.assertIs(lookup["task_exec"], True)
        self.assertIn("expected true or false", self._set("set_visibility", public="yes")["error"])

    def test_settings_require_the_nodes_signature_or_admin_token(self):
        forged = self.r.signed(identity(2), {"type": "set_visibility", "node_id": self.node,
                                             "public": True})
        self.assertEqual(forged["error"], "signature verification failed")
        self.r.ok({"type": "set_visibility", "node_id": self.node, "public": True,
                   "admin_token": ADMIN_TOKEN})
        wrong = self.r.send({"type": "set_tags", "node_id": self.node, "tags": [],
                             "admin_token": "guess"})
        self.assertEqual(wrong["error"], "signature required for authenticated node")

    def test_lookup_hides_private_endpoint(self):
        self._set("set_tags", tags=["gpu"])
        self._set("set_hostname", hostname="alice")
        private = self.r.ok({"type": "lookup", "node_id": self.node})
        self.assertNotIn("real_addr", private)
        self.assertEqual(private["networks"], [0])
        self.assertEqual(private["tags"], ["gpu"])
        self.assertEqual(private["hostname"], "alice")
        self.assertIs(private["public"], False)
        self.assertEqual(private["public_key"], self.alice.public_key_b64)
        self._set("set_visibility", public=True)
        self.assertEqual(self.r.ok({"type": "lookup", "node_id": self.node})["real_addr"],
                         "198.51.100.7:4000")
        self.assertEqual(self.r.error({"type": "lookup", "node_id": 99}), "node 99: node not found")

    def test_deregister(self):
        self._set("set_hostname", hostname="alice")
        self.assertEqual(self.r.error({"type": "deregister", "node_id": self.node},
                                      signer=identity(2)), "signature verification failed")
        self.r.ok({"type": "deregister", "node_id": self.node}, signer=self.alice)
        self.r.ok({"type": "deregister", "node_id": self.node})  # unknown: still ok
        self.assertIsNone(self.r.registry.directory.hostname_holder("alice"))
        self.assertEqual(self.r.register(self.alice), self.node)

    def test_rotate_key(self):
        new = identity(5)
        request = {"type": "rotate_key", "node_id": self.node,
                   "new_public_key": new.public_key_b64}
        self.assertEqual(self.r.error(request), "rotate_key requires a valid signature")
        self.assertEqual(self.r.error(request, signer=new), "rotate_key requires a valid signature")
        reply = self.r.ok(request, signer=self.alice)
        self.assertEqual(reply["public_key"], new.public_key_b64)
        self.assertEqual(self.r.error({"type": "heartbeat", "node_id": self.node},
                                      signer=self.alice), "signature verification failed")
        self.r.ok({"type": "heartbeat", "node_id": self.node}, signer=new)
        self.assertEqual(self.r.register(new), self.node)
        bob = identity(2)
        bob_id = self.r.register(bob)
        taken = self.r.error({"type": "rotate_key", "node_id": bob_id,
                              "new_public_key": new.public_key_b64}, signer=bob)
        self.assertEqual(taken, f"public key already registered to node {self.node}")

    def test_polo_score_bounded_and_rate_limited(self):
        get = self.r.ok({"type": "get_polo_score", "node_id": self.node})
        self.assertEqual(get["polo_score"], 0)
        self.assertEqual(self.r.ok({"type": "update_polo_score", "node_id": self.node,
                                    "delta": 5})["polo_score"], 5)
        self.assertEqual(self.r.ok({"type": "set_polo_score", "node_id": self.node,
                                    "polo_score": 1_000_000})["polo_score"], 1_000_000)
        self.assertEqual(self.r.ok({"type": "update_polo_score", "node_id": self.node,
                                    "delta": 10})["polo_score"], 1_000_000)
        self.assertIn("out of range", self.r.error({"type": "update_polo_score",
                                                    "node_id": self.node, "delta": 10**7}))
        for _ in range(27):
            self.r.ok({"type": "update_polo_score", "node_id": self.node, "delta": -1})
        self.assertIn("rate limited", self.r.error({"type": "update_polo_score",
                                                    "node_id": self.node, "delta": 1}))
        self.r.ok({"type": "update_polo_score", "node_id": self.node, "delta": 1},
                  peer=("203.0.113.1", 1))


class DispatchTests(SynchronousTestCase):
    def test_unknown_and_missing_type(self):
        r = DrivenRegistry()
        self.assertEqual(r.error({"type": "frobnicate"}), 'unknown message type: "frobnicate"')
        self.assertEqual(r.error({"type": 3}), 'unknown message type: ""')
        self.assertEqual(r.error({}), 'unknown message type: ""')

    def test_error_replies_carry_a_code(self):
        reply = DrivenRegistry().send({"type": "lookup", "node_id": 4})
        self.assertEqual(reply, {"type": "error", "error": "node 4: node not found",
                                 "code": "not_found"})

    def test_unexpected_exception_is_an_internal_error(self):
        r = DrivenRegistry()
        r.registry.routes.replace("lookup", lambda *a: 1 / 0)
        self.assertEqual(r.error({"type": "lookup"}), "internal error")
        self.flushLoggedErrors(ZeroDivisionError)
