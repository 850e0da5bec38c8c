"""Trust consent, the visibility gate, relayed handshakes, punch, networks, beacons."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.registry.challenges import sign_fresh_request
from tests.registry.fixtures import ADMIN_TOKEN, DrivenRegistry, identity


class _TwoNodes(SynchronousTestCase):
    def setUp(self):
        self.r = DrivenRegistry()
        self.alice, self.bob = identity(1), identity(2)
        self.a = self.r.register(self.alice)
        self.b = self.r.register(self.bob, peer=("203.0.113.2", 1))

    def resolve(self, requester, requester_id, target_id):
        return self.r.signed(requester, {"type": "resolve", "node_id": target_id,
                                         "requester_id": requester_id})

    def report(self, who, node_id, peer_id, kind="report_trust"):
        return self.r.ok({"type": kind, "node_id": node_id, "peer_id": peer_id}, signer=who)


class VisibilityTests(_TwoNodes):
    def test_private_endpoint_withheld(self):
        self.assertEqual(self.resolve(self.alice, self.a, self.b)["error"],
                         f"resolve denied: node {self.b} is private (establish mutual trust first)")

    def test_public_node_resolves(self):
        self.r.ok({"type": "set_visibility", "node_id": self.b, "public": True}, signer=self.bob)
        reply = self.resolve(self.alice, self.a, self.b)
        self.assertEqual(reply["real_addr"], "203.0.113.2:4000")
        self.assertEqual(reply["public_key"], self.bob.public_key_b64)

    def test_requester_must_be_registered_and_sign(self):
        self.assertEqual(self.resolve(self.alice, 50, self.b)["error"],
                         "resolve denied: requester node 50 is not registered")
        self.assertEqual(self.resolve(self.bob, self.a, self.b)["error"],
                         "signature verification failed")
        self.assertEqual(self.resolve(self.alice, self.a, 77)["error"], "node 77: node not found")

    def test_one_sided_report_is_not_enough(self):
        reply = self.report(self.alice, self.a, self.b)
        self.assertIs(reply["mutual"], False)
        self.assertIn("private", self.resolve(self.alice, self.a, self.b)["error"])
        self.assertIs(self.r.ok({"type": "check_trust", "node_id": self.a,
                                 "peer_id": self.b})["trusted"], False)
        self.assertIs(self.report(self.bob, self.b, self.a)["mutual"], True)
        self.assertEqual(self.resolve(self.alice, self.a, self.b)["type"], "resolve_ok")
        self.assertEqual(self.resolve(self.bob, self.b, self.a)["type"], "resolve_ok")
        self.assertIs(self.r.ok({"type": "check_trust", "node_id": self.b,
                                 "peer_id": self.a})["trusted"], True)

    def test_report_trust_errors(self):
        self.assertEqual(self.r.error({"type": "report_trust", "node_id": self.a,
                                       "peer_id": self.b}, signer=self.bob),
                         "signature verification failed")
        self.assertEqual(self.r.error({"type": "report_trust", "node_id": self.a,
                                       "peer_id": 99}, signer=self.alice), "node 99: node not found")
        self.assertIn("yourself", self.r.error({"type": "report_trust", "node_id": self.a,
                                                "peer_id": self.a}, signer=self.alice))

    def test_revoke_by_either_side_breaks_the_pair(self):
        self.report(self.alice, self.a, self.b)
        self.report(self.bob, self.b, self.a)
        self.report(self.bob, self.b, self.a, kind="revoke_trust")
        self.assertIn("private", self.resolve(self.alice, self.a, self.b)["error"])
        self.assertEqual(self.r.error({"type": "revoke_trust", "node_id": self.b,
                                       "peer_id": self.a}, signer=self.bob),
                         f"no trust pair between {self.b} and {self.a}")

    def test_resolve_hostname_hides_private_nodes_from_strangers(self):
        self.r.ok({"type": "set_hostname", "node_id": self.b, "hostname": "bob"}, signer=self.bob)
        stranger = self.r.error({"type": "resolve_hostname", "hostname": "bob"})
        self.assertEqual(stranger, 'hostname "bob" not found')
        self.assertEqual(self.r.error({"type": "resolve_hostname", "hostname": "nobody"}),
                         'hostname "nobody" not found')
        own = self.r.ok({"type": "resolve_hostname", "hostname": "bob", "requester_id": self.b})
        self.assertEqual(own, {"type": "resolve_hostname_ok", "node_id": self.b,
                               "address": f"0:0000.0000.000{self.b}", "public": False,
                               "hostname": "bob"})
        self.r.ok({"type": "set_visibility", "node_id": self.b, "public": True}, signer=self.bob)
        self.r.ok({"type": "resolve_hostname", "hostname": "bob"})
        self.assertEqual(self.r.error({"type": "resolve_hostname", "hostname": ""}),
                         "hostname required")

    def test_punch_gated_like_resolve(self):
        request = {"type": "punch", "requester_id": self.a, "node_a": self.a, "node_b": self.b}
        self.assertIn("is private", self.r.error(request, signer=self.alice))
        self.assertEqual(self.r.error(dict(request, requester_id=self.b + 5), signer=self.alice),
                         "punch denied: requester must be participant")
        self.assertEqual(self.r.error(request, signer=self.bob), "signature verification failed")
        self.report(self.alice, self.a, self.b)
        self.report(self.bob, self.b, self.a)
        reply = self.r.ok(request, signer=self.alice)
        self.assertEqual(reply["node_b_addr"], "203.0.113.2:4000")
        self.assertEqual(reply["node_a_addr"], "198.51.100.7:4000")


class HandshakeTests(_TwoNodes):
    def request(self, justification="hello", **extra):
        return self.r.signed(self.alice, {"type": "request_handshake", "from_node_id": self.a,
                                          "to_node_id": self.b, "justification": justification,
                                          **extra})

    def poll(self, who, node_id):
        return self.r.ok({"type": "poll_handshakes", "node_id": node_id}, signer=who)

    def test_request_poll_accept_makes_a_pair(self):
        self.assertEqual(self.request(), {"type": "request_handshake_ok", "status": "delivered"})
        inbox = self.poll(self.bob, self.b)
        self.assertEqual(inbox["requests"], [{"from_node_id": self.a, "justification": "hello",
                                              "timestamp": int(self.r.now),
                                              "public_key": self.alice.public_key_b64}])
        self.assertEqual(self.poll(self.bob, self.b)["requests"], [])  # destructive read
        reply = self.r.ok({"type": "respond_handshake", "node_id": self.b, "peer_id": self.a,
                           "accept": True}, signer=self.bob)
        self.assertEqual(reply["peer_id"], self.a)
        self.assertEqual(self.poll(self.alice, self.a)["responses"],
                         [{"from_node_id": self.b, "accept": True, "timestamp": int(self.r.now)}])
        self.assertEqual(self.resolve(self.alice, self.a, self.b)["type"], "resolve_ok")

    def test_accept_without_the_requesters_consent_is_not_a_pair(self):
        self.r.ok({"type": "respond_handshake", "node_id": self.b, "peer_id": self.a,
                   "accept": True}, signer=self.bob)
        self.assertIn("private", self.resolve(self.bob, self.b, self.a)["error"])

    def test_reject(self):
        self.request()
        self.r.ok({"type": "respond_handshake", "node_id": self.b, "peer_id": self.a,
                   "accept": False}, signer=self.bob)
        self.assertIs(self.poll(self.alice, self.a)["responses"][0]["accept"], False)
        self.assertIn("private", self.resolve(self.alice, self.a, self.b)["error"])

    def test_request_errors(self):
        self.request()
        self.assertEqual(self.request()["error"],
                         f"handshake request already pending from node {self.a}")
        self.assertEqual(self.request("x" * 1025)["error"], "justification too long (max 1024 bytes)")
        forged = self.r.signed(self.bob, {"type": "request_handshake", "from_node_id": self.a,
                                          "to_node_id": self.b})
        self.assertEqual(forged["error"], "signature verification failed")
        self.assertEqual(self.r.error({"type": "poll_handshakes", "node_id": self.b}),
                         "signature required for authenticated node")

    def test_inbox_is_bounded(self):
        for number in range(10, 110):
            sender = identity(number)
            sender_id = self.r.register(sender)
            self.r.ok({"type": "request_handshake", "from_node_id": sender_id,
                       "to_node_id": self.b}, signer=sender)
        refused = self.request()
        self.assertEqual((refused["error"], refused["code"]),
                         (f"handshake inbox full for node {self.b}", "refused"))


class HandshakeByNameTests(_TwoNodes):
    """Asking a private node known only by its hostname, without learning whether or where it is."""

    DELIVERED = {"type": "request_handshake_by_name_ok", "status": "delivered"}

    def setUp(self):
        super().setUp()
        self.r.ok({"type": "set_hostname", "node_id": self.b, "hostname": "bob"}, signer=self.bob)

    def request(self, hostname="bob", signer=None, justification="hello"):
        return self.r.signed(signer or self.alice, {"type": "request_handshake_by_name", "from_node_id": self.a,
                                                    "to_hostname": hostname, "justification": justification})

    def test_the_holder_gets_the_request_and_approving_makes_the_name_resolve(self):
        hidden = self.r.send({"type": "resolve_hostname", "hostname": "bob", "requester_id": self.a})
        self.assertEqual(hidden["code"], "not_found")
        self.assertEqual(self.request(), self.DELIVERED)
        inbox = self.r.ok({"type": "poll_handshakes", "node_id": self.b}, signer=self.bob)
        self.assertEqual([(r["from_node_id"], r["justification"]) for r in inbox["requests"]], [(self.a, "hello")])
        self.r.ok({"type": "respond_handshake", "node_id": self.b, "peer_id": self.a, "accept": True},
                  signer=self.bob)
        found = self.r.ok({"type": "resolve_hostname", "hostname": "bob", "requester_id": self.a})
        self.assertEqual(found["node_id"], self.b)

    def test_the_reply_tells_a_stranger_nothing(self):
        """Unknown name, own name, duplicate, full inbox: the same reply, so names cannot be enumerated."""
        for hostname in ("nobody", "bob", "bob"):
            self.assertEqual(self.request(hostname), self.DELIVERED)
        for number in range(10, 110):
            sender = identity(number)
            sender_id = self.r.register(sender)
            self.r.ok({"type": "request_handshake_by_name", "from_node_id": sender_id, "to_hostname": "bob"},
                      signer=sender)
        self.assertEqual(len(self.r.ok({"type": "poll_handshakes", "node_id": self.b},
                                       signer=self.bob)["requests"]), 100)
        self.r.ok({"type": "set_hostname", "node_id": self.a, "hostname": "alice"}, signer=self.alice)
        self.assertEqual(self.request("alice"), self.DELIVERED)
        self.assertEqual(self.r.ok({"type": "poll_handshakes", "node_id": self.a},
                                   signer=self.alice)["requests"], [])

    def test_the_request_is_signed_by_the_requester_over_the_name(self):
        self.assertEqual(self.request(signer=self.bob)["error"], "signature verification failed")
        forged = sign_fresh_request(self.alice, {"type": "request_handshake_by_name", "from_node_id": self.a,
                                                 "to_hostname": "someone"}, self.r.now)
        forged["to_hostname"] = "bob"  # a signature for one name is no good for another
        self.assertEqual(self.r.send(forged)["error"], "signature verification failed")
        self.assertEqual(self.request(justification="x" * 1025)["error"], "justification too long (max 1024 bytes)")


class NetworkTests(_TwoNodes):
    def create(self, **fields):
        request = {"type": "create_network", "node_id": self.a, "name": "lab",
                   "admin_token": ADMIN_TOKEN, **fields}
        return self.r.send(request)

    def join(self, who, node_id, network_id, **fields):
        return self.r.signed(who, {"type": "join_network", "node_id": node_id,
                                   "network_id": network_id, **fields})

    def test_create_needs_the_admin_token(self):
        self.assertEqual(self.create(admin_token="nope")["error"], "invalid admin token")
        closed = DrivenRegistry(admin_token="")
        self.assertIn("network creation is disabled",
                      closed.error({"type": "create_network", "name": "x"}))

    def test_create_validation(self):
        self.assertIn("reserved", self.create(name="backbone")["error"])
        self.assertIn("invalid network name", self.create(name="Lab")["error"])
        self.assertIn("invalid join_rule", self.create(join_rule="secret")["error"])
        self.assertIn("enterprise feature", self.create(join_rule="invite")["error"])
        self.assertIn("token required", self.create(join_rule="token")["error"])
        self.assertEqual(self.create()["network_id"], 1)
        self.assertEqual(self.create()["error"], 'network "lab" already exists')

    def test_shared_network_unlocks_resolve_and_membership_flow(self):
        network_id = self.create()["network_id"]
        self.assertIn("private", self.resolve(self.alice, self.a, self.b)["error"])
        reply = self.join(self.bob, self.b, network_id)
        self.assertEqual(reply["address"], f"{network_id}:0001.0000.000{self.b}")
        self.assertEqual(self.resolve(self.alice, self.a, self.b)["type"], "resolve_ok")
        self.assertEqual(self.r.ok({"type": "lookup", "node_id": self.b})["networks"],
                         [0, network_id])
        self.assertEqual(self.join(self.bob, self.b, network_id)["error"],
                         f"node {self.b} already in network {network_id}")
        listed = self.r.ok({"type": "list_nodes", "network_id": network_id})["nodes"]
        self.assertEqual([n["node_id"] for n in listed], [self.a, self.b])
        self.r.ok({"type": "leave_network", "node_id": self.b, "network_id": network_id},
                  signer=self.bob)
        self.assertIn("not a member", self.r.error(
            {"type": "leave_network", "node_id": self.b, "network_id": network_id},
            signer=self.bob))
        self.assertIn("private", self.resolve(self.alice, self.a, self.b)["error"])

    def test_join_rules(self):
        network_id = self.create(join_rule="token", token="s3cret")["network_id"]
        self.assertEqual(self.join(self.bob, self.b, network_id, token="bad")["error"],
                         f"invalid token for network {network_id}")
        self.join(self.bob, self.b, network_id, token="s3cret")
        self.assertEqual(self.join(self.bob, self.b, 0)["error"], "cannot join the backbone network")
        self.assertEqual(self.join(self.bob, self.b, 9)["error"], "network 9: network not found")
        self.assertEqual(self.join(self.alice, self.b, network_id)["error"],
                         "signature verification failed")

    def test_listing(self):
        self.create()
        networks = self.r.ok({"type": "list_networks"})["networks"]
        self.assertEqual([(n["id"], n["name"], n["members"]) for n in networks],
                         [(0, "backbone", 2), (1, "lab", 1)])
        self.assertIn("not permitted", self.r.error({"type": "list_nodes", "network_id": 0}))
        everyone = self.r.ok({"type": "list_nodes", "network_id": 0, "admin_token": ADMIN_TOKEN})
        self.assertEqual(len(everyone["nodes"]), 2)
        self.assertNotIn("real_addr", everyone["nodes"][0])

    def test_reaped_member_listed_offline_and_rejoins(self):
        network_id = self.create()["network_id"]
        self.join(self.bob, self.b, network_id)
        self.r.now += 1000
        self.r.register(self.alice)
        self.r.registry.reap(self.r.now)
        listed = self.r.ok({"type": "list_nodes", "network_id": network_id})["nodes"]
        self.assertEqual(listed[1], {"node_id": self.b, "address": f"1:0001.0000.000{self.b}",
                                     "offline": True, "role": "member"})
        self.r.register(self.bob)
        self.assertEqual(self.r.ok({"type": "lookup", "node_id": self.b})["networks"], [0, 1])


class BeaconDirectoryTests(SynchronousTestCase):
    def test_register_list_expire(self):
        r = DrivenRegistry()
        self.assertEqual(r.ok({"type": "beacon_register", "beacon_id": 7,
                               "addr": "127.0.0.1:9001"})["beacon_id"], 7)
        self.assertEqual(r.ok({"type": "beacon_list"})["beacons"],
                         [{"id": 7, "addr": "127.0.0.1:9001"}])
        self.assertEqual(r.error({"type": "beacon_register", "beacon_id": 0, "addr": "x:1"}),
                         "beacon_id required")
        self.assertIn("invalid addr", r.error({"type": "beacon_register", "beacon_id": 1,
                                               "addr": "nowhere"}))
        r.now += 61
        self.assertEqual(r.ok({"type": "beacon_list"})["beacons"], [])
        r.registry.reap(r.now)
        self.assertEqual(r.registry.beacons, {})
