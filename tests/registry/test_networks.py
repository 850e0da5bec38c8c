"""Networks at the registry: every message of controlplane §1.9.2, its refusals and limits."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.registry import network_rules
from pilotnet.registry.challenges import sign_fresh_request, sign_request
from pilotnet.registry.networks import INVITE_TTL, MAX_INVITES
from pilotnet.registry.requests import RequestError
from tests.registry.fixtures import ADMIN_TOKEN, DrivenRegistry, identity

EXPR_POLICY = {"version": 1, "rules": [{"name": "allow-web", "on": "connect", "match": "port == 80",
                                        "actions": [{"type": "allow"}]}]}
RULES = {"links": 5, "cycle": "1h", "prune": 1, "prune_by": "score", "fill": 2,
         "fill_how": "random"}


class _Team(SynchronousTestCase):
    """Four registered nodes: the owner, two members-to-be and a stranger."""

    def setUp(self):
        self.r = DrivenRegistry()
        self.keys = {name: identity(number) for number, name in
                     enumerate(("owner", "admin", "member", "stranger"), start=1)}
        self.ids = {name: self.r.register(key, peer=(f"203.0.113.{n}", 1))
                    for n, (name, key) in enumerate(self.keys.items(), start=1)}

    def create(self, **fields):
        request = {"type": "create_network", "node_id": self.ids["owner"], "name": "team",
                   "admin_token": ADMIN_TOKEN, **fields}
        return self.r.send(request)

    def as_node(self, name, request):
        """``request`` sent by the named node, signed over every field (fresh form)."""
        return self.r.signed(self.keys[name], dict(request, node_id=self.ids[name]))

    def join(self, name, network_id, **fields):
        return self.as_node(name, {"type": "join_network", "network_id": network_id, **fields})

    def enterprise(self, join_rule="open", **fields):
        """An enterprise network with admin and member joined (admin promoted)."""
        network_id = self.create(enterprise=True, join_rule=join_rule, **fields)["network_id"]
        if join_rule == "invite":
            for name in ("admin", "member"):
                self.admin_invite(network_id, name)
                self.assertEqual(self.respond(name, network_id, True)["type"], "respond_invite_ok")
        else:
            for name in ("admin", "member"):
                self.assertEqual(self.join(name, network_id)["type"], "join_network_ok")
        self.assertEqual(self.as_node("owner", {"type": "promote_member", "network_id": network_id,
                                                "target_node_id": self.ids["admin"]})["role"], "admin")
        return network_id

    def admin_invite(self, network_id, name):
        return self.r.send({"type": "invite_to_network", "network_id": network_id,
                            "inviter_id": self.ids["owner"], "target_node_id": self.ids[name],
                            "admin_token": ADMIN_TOKEN})

    def respond(self, name, network_id, accept):
        return self.as_node(name, {"type": "respond_invite", "network_id": network_id,
                                   "accept": accept})

    def role(self, network_id, name):
        reply = self.r.send({"type": "get_member_role", "network_id": network_id,
                             "target_node_id": self.ids[name]})
        return reply.get("role", reply.get("error"))


class CreateTests(_Team):
    def test_creator_is_owner_and_reply_has_the_reference_fields(self):
        reply = self.create(enterprise=True, rules=RULES)
        self.assertEqual(reply, {"type": "create_network_ok", "network_id": 1, "name": "team",
                                 "join_rule": "open", "enterprise": True, "managed": True})
        self.assertEqual(self.role(1, "owner"), "owner")

    def test_invite_rule_needs_enterprise(self):
        self.assertEqual(self.create(join_rule="invite")["error"],
                         "enterprise feature: invite-only networks require the enterprise flag")
        self.assertEqual(self.create(join_rule="invite", enterprise=True)["join_rule"], "invite")

    def test_creator_must_be_registered(self):
        self.assertEqual(self.create(node_id=99)["error"], "node 99 not registered")

    def test_rules_and_expr_policy_as_string_or_object(self):
        import json
        network_id = self.create(rules=json.dumps(RULES), expr_policy=json.dumps(EXPR_POLICY))["network_id"]
        listed = self.r.ok({"type": "list_networks"})["networks"][1]
        self.assertEqual((listed["managed"], listed["rules"], listed["has_expr_policy"]),
                         (True, RULES, True))
        reply = self.join("member", network_id)
        self.assertEqual((reply["rules"], reply["expr_policy"]), (RULES, EXPR_POLICY))

    def test_bad_rules_and_policies_refused(self):
        self.assertEqual(self.create(rules=dict(RULES, cycle="30s"))["error"],
                         "rules: cycle must be >= 1m (got 30s)")
        self.assertIn("invalid JSON", self.create(rules="{")["error"])
        self.assertEqual(self.create(expr_policy={"version": 2, "rules": [{}]})["error"],
                         "invalid expr_policy: unsupported version 2 (want 1)")
        self.assertIn("rules required", self.create(expr_policy={"version": 1, "rules": []})["error"])

    def test_deeply_nested_json_text_is_refused_not_an_internal_error(self):
        deep = "[" * 30000 + "]" * 30000
        self.assertIn("nested too deeply", self.create(expr_policy=deep)["error"])

    def test_network_admin_token_and_tokens_are_bounded(self):
        self.assertIn("too long", self.create(network_admin_token="x" * 300)["error"])


class JoinLeaveTests(_Team):
    def test_open_join_gives_the_per_network_address(self):
        network_id = self.create()["network_id"]
        reply = self.join("member", network_id)
        self.assertEqual(reply, {"type": "join_network_ok", "network_id": 1,
                                 "address": f"1:0001.0000.000{self.ids['member']}"})
        self.assertEqual(self.role(network_id, "member"), "member")
        listed = self.r.ok({"type": "list_nodes", "network_id": network_id})["nodes"]
        self.assertEqual([(n["node_id"], n["role"], n["address"][:7]) for n in listed],
                         [(self.ids["owner"], "owner", "1:0001."), (self.ids["member"], "member", "1:0001.")])

    def test_token_join_refuses_a_wrong_token(self):
        network_id = self.create(join_rule="token", token="s3cret")["network_id"]
        self.assertEqual(self.join("member", network_id, token="guess")["error"],
                         f"invalid token for network {network_id}")
        self.assertEqual(self.join("member", network_id)["error"],
                         f"invalid token for network {network_id}")
        self.assertEqual(self.join("member", network_id, token="s3cret")["type"], "join_network_ok")

    def test_invite_network_cannot_be_joined(self):
        network_id = self.create(join_rule="invite", enterprise=True)["network_id"]
        self.assertEqual(self.join("member", network_id)["error"],
                         "invite-only networks require invite_to_network + respond_invite flow")

    def test_member_limit(self):
        network_id = self.enterprise()
        self.r.ok({"type": "set_network_policy", "network_id": network_id, "max_members": 3,
                   "admin_token": ADMIN_TOKEN})
        self.assertEqual(self.join("stranger", network_id)["error"], "network membership limit reached")

    def test_a_go_client_legacy_signature_is_accepted_over_tls_only(self):
        network_id = self.create()["network_id"]
        request = {"type": "join_network", "node_id": self.ids["member"], "network_id": network_id}
        self.assertIn("accepted only over TLS", self.r.signed_legacy(self.keys["member"], request)["error"])
        self.assertEqual(self.r.signed_legacy(self.keys["member"], request, over_tls=True)["type"],
                         "join_network_ok")

    def test_admin_token_joins_for_a_node(self):
        network_id = self.create(join_rule="token", token="t")["network_id"]
        reply = self.r.send({"type": "join_network", "node_id": self.ids["member"],
                             "network_id": network_id, "admin_token": ADMIN_TOKEN})
        self.assertEqual(reply["type"], "join_network_ok")

    def test_leave_and_owner_must_transfer_first(self):
        network_id = self.enterprise()
        self.assertEqual(self.as_node("owner", {"type": "leave_network", "network_id": network_id})["error"],
                         "cannot leave network: owner must transfer ownership first")
        self.assertEqual(self.as_node("admin", {"type": "leave_network", "network_id": network_id})["type"],
                         "leave_network_ok")
        self.assertIn("not a member", self.role(network_id, "admin"))
        # Rejoining starts again as a plain member.
        self.join("admin", network_id)
        self.assertEqual(self.role(network_id, "admin"), "member")

    def test_leave_clears_invites_to_and_from_the_node(self):
        network_id = self.enterprise(join_rule="invite")
        self.as_node("admin", {"type": "invite_to_network", "network_id": network_id,
                               "inviter_id": self.ids["admin"], "target_node_id": self.ids["stranger"]})
        self.assertEqual(len(self.r.registry.directory.invites_of(self.ids["stranger"])), 1)
        self.as_node("admin", {"type": "leave_network", "network_id": network_id})
        self.assertEqual(self.r.registry.directory.invites_of(self.ids["stranger"]), {})


class InviteTests(_Team):
    def poll(self, name):
        return self.as_node(name, {"type": "poll_invites"})

    def test_invite_flow_on_an_enterprise_network(self):
        network_id = self.create(join_rule="invite", enterprise=True)["network_id"]
        reply = self.as_node("owner", {"type": "invite_to_network", "network_id": network_id,
                                       "inviter_id": self.ids["owner"],
                                       "target_node_id": self.ids["member"]})
        self.assertEqual(reply, {"type": "invite_to_network_ok", "network_id": network_id,
                                 "target_node_id": self.ids["member"]})
        again = self.admin_invite(network_id, "member")
        self.assertEqual(again["status"], "already_invited")
        invites = self.poll("member")["invites"]
        self.assertEqual(invites, [{"network_id": network_id, "inviter_id": self.ids["owner"],
                                    "timestamp": int(self.r.now)}])
        self.assertEqual(self.poll("member")["invites"], invites)  # polling does not consume
        accepted = self.respond("member", network_id, True)
        self.assertEqual(accepted["accepted"], True)
        self.assertEqual(accepted["address"], f"{network_id}:0001.0000.000{self.ids['member']}")
        self.assertEqual(self.poll("member")["invites"], [])
        self.assertEqual(self.role(network_id, "member"), "member")
        self.assertEqual(self.respond("member", network_id, True)["error"],
                         f"no pending invite for node {self.ids['member']} to network {network_id}")

    def test_reject_consumes_the_invite(self):
        network_id = self.create(join_rule="invite", enterprise=True)["network_id"]
        self.admin_invite(network_id, "member")
        self.assertEqual(self.respond("member", network_id, False)["accepted"], False)
        self.assertIn("not a member", self.role(network_id, "member"))
        self.assertEqual(self.poll("member")["invites"], [])

    def test_invite_refusals(self):
        open_id = self.create(enterprise=True)["network_id"]
        plain_id = self.create(name="plain")["network_id"]
        invite_id = self.enterprise(join_rule="invite", name="club")

        def invite(inviter, network_id, target):
            return self.as_node(inviter, {"type": "invite_to_network", "network_id": network_id,
                                          "inviter_id": self.ids[inviter],
                                          "target_node_id": self.ids[target]})["error"]
        self.assertEqual(invite("owner", plain_id, "stranger"), "enterprise feature: requires enterprise network")
        self.assertEqual(invite("owner", open_id, "stranger"), f"network {open_id} is not invite-only (rule: open)")
        self.assertEqual(invite("member", invite_id, "stranger"),
                         f"rbac: inviter {self.ids['member']} has role 'member', requires owner or admin")
        self.assertEqual(invite("stranger", invite_id, "stranger"), "cannot invite yourself")
        self.assertEqual(invite("stranger", invite_id, "owner"),
                         f"inviter {self.ids['stranger']} is not a member of network {invite_id}")
        self.assertEqual(invite("owner", invite_id, "member"),
                         f"node {self.ids['member']} is already a member of network {invite_id}")
        forged = sign_fresh_request(self.keys["stranger"], {
            "type": "invite_to_network", "network_id": invite_id, "inviter_id": self.ids["owner"],
            "target_node_id": self.ids["stranger"]}, self.r.now)
        self.assertEqual(self.r.send(forged)["error"], "signature verification failed")

    def test_an_admin_invites_and_the_network_admin_token_stands_in(self):
        network_id = self.enterprise(join_rule="invite", network_admin_token="team-key")
        reply = self.r.send({"type": "invite_to_network", "network_id": network_id,
                             "inviter_id": self.ids["member"], "target_node_id": self.ids["stranger"],
                             "admin_token": "team-key"})
        self.assertEqual(reply["type"], "invite_to_network_ok")

    def test_inbox_limit(self):
        directory = self.r.registry.directory
        for network_id in range(1, MAX_INVITES + 1):
            directory.add_invite(self.ids["member"], 1000 + network_id, self.ids["owner"], self.r.now)
        network_id = self.create(join_rule="invite", enterprise=True)["network_id"]
        refused = self.admin_invite(network_id, "member")
        self.assertEqual((refused["error"], refused["code"]),
                         (f"invite inbox full for node {self.ids['member']}", "refused"))

    def test_invites_expire_after_thirty_days(self):
        network_id = self.create(join_rule="invite", enterprise=True)["network_id"]
        self.admin_invite(network_id, "member")
        self.r.now += INVITE_TTL + 1
        self.assertEqual(self.poll("member")["invites"], [])
        self.assertEqual(self.respond("member", network_id, True)["error"],
                         f"invite for node {self.ids['member']} to network {network_id} has expired")
        self.assertNotIn("status", self.admin_invite(network_id, "member"))  # a new invite, not a duplicate

    def test_full_network_keeps_the_invite(self):
        network_id = self.create(join_rule="invite", enterprise=True)["network_id"]
        self.r.ok({"type": "set_network_policy", "network_id": network_id, "max_members": 1,
                   "admin_token": ADMIN_TOKEN})
        self.admin_invite(network_id, "member")
        self.assertEqual(self.respond("member", network_id, True)["error"], "network membership limit reached")
        self.assertEqual(len(self.poll("member")["invites"]), 1)

    def test_poll_and_respond_need_the_nodes_signature(self):
        network_id = self.create(join_rule="invite", enterprise=True)["network_id"]
        forged = sign_fresh_request(self.keys["stranger"], {"type": "poll_invites",
                                                            "node_id": self.ids["member"]}, self.r.now)
        self.assertEqual(self.r.send(forged)["error"], "signature verification failed")
        self.assertEqual(self.r.send({"type": "respond_invite", "node_id": self.ids["member"],
                                      "network_id": network_id, "accept": True})["error"],
                         "signature required for authenticated node")

    def test_legacy_poll_signature_over_tls(self):
        reply = self.r.signed_legacy(self.keys["member"], {"type": "poll_invites", "node_id": self.ids["member"]},
                                     over_tls=True)
        self.assertEqual(reply, {"type": "poll_invites_ok", "invites": []})


class RoleTests(_Team):
    def manage(self, name, kind, network_id, **fields):
        return self.as_node(name, {"type": kind, "network_id": network_id, **fields})

    def test_a_member_cannot_kick(self):
        network_id = self.enterprise()
        reply = self.manage("member", "kick_member", network_id, target_node_id=self.ids["admin"])
        self.assertEqual(reply["error"], f"rbac: node {self.ids['member']} has role 'member', "
                                         "requires one of [owner admin]")

    def test_an_admin_cannot_promote(self):
        network_id = self.enterprise()
        reply = self.manage("admin", "promote_member", network_id, target_node_id=self.ids["member"])
        self.assertEqual(reply["error"], f"rbac: node {self.ids['admin']} has role 'admin', "
                                         "requires one of [owner]")

    def test_an_admin_kicks_a_member_but_nobody_kicks_the_owner(self):
        network_id = self.enterprise()
        self.assertEqual(self.manage("admin", "kick_member", network_id,
                                     target_node_id=self.ids["owner"])["error"], "cannot kick the network owner")
        reply = self.manage("admin", "kick_member", network_id, target_node_id=self.ids["member"])
        self.assertEqual(reply, {"type": "kick_member_ok", "network_id": network_id,
                                 "target_node_id": self.ids["member"]})
        self.assertIn("not a member", self.role(network_id, "member"))
        self.assertFalse(self.r.ok({"type": "check_trust", "node_id": self.ids["owner"],
                                    "peer_id": self.ids["member"]})["trusted"])

    def test_a_stranger_and_an_unsigned_claim_are_refused(self):
        network_id = self.enterprise()
        self.assertEqual(self.manage("stranger", "kick_member", network_id,
                                     target_node_id=self.ids["member"])["error"],
                         f"rbac: node {self.ids['stranger']} has no role in network {network_id}")
        # Naming the owner is not being the owner: the reference took node_id on its word.
        unsigned = self.r.send({"type": "kick_member", "network_id": network_id,
                                "node_id": self.ids["owner"], "target_node_id": self.ids["member"]})
        self.assertIn("needs the node's signature", unsigned["error"])
        forged = sign_fresh_request(self.keys["member"], {
            "type": "kick_member", "network_id": network_id, "node_id": self.ids["owner"],
            "target_node_id": self.ids["admin"]}, self.r.now)
        self.assertEqual(self.r.send(forged)["error"], "signature verification failed")
        self.assertEqual(self.r.send({"type": "kick_member", "network_id": network_id,
                                      "target_node_id": self.ids["member"]})["error"],
                         "rbac: node_id required for role-based authorization")

    def test_a_signed_kick_cannot_be_replayed(self):
        network_id = self.enterprise()
        request = sign_fresh_request(self.keys["owner"], {
            "type": "kick_member", "network_id": network_id, "node_id": self.ids["owner"],
            "target_node_id": self.ids["member"]}, self.r.now)
        self.assertEqual(self.r.send(request)["type"], "kick_member_ok")
        self.join("member", network_id)
        self.assertIn("replay", self.r.send(request)["error"])

    def test_wrong_tokens_are_refused(self):
        network_id = self.enterprise(network_admin_token="team-key")
        for token in ("nope", "", "team-key-2"):
            reply = self.r.send({"type": "kick_member", "network_id": network_id,
                                 "target_node_id": self.ids["member"], "admin_token": token})
            self.assertEqual(reply["error"], "rbac: node_id required for role-based authorization")
        reply = self.r.send({"type": "kick_member", "network_id": network_id,
                             "target_node_id": self.ids["member"], "admin_token": "team-key"})
        self.assertEqual(reply["type"], "kick_member_ok")

    def test_promote_demote(self):
        network_id = self.enterprise()
        self.assertEqual(self.manage("owner", "promote_member", network_id,
                                     target_node_id=self.ids["admin"])["error"],
                         f"node {self.ids['admin']} is already an admin")
        self.assertEqual(self.manage("owner", "demote_member", network_id,
                                     target_node_id=self.ids["member"])["error"],
                         f"node {self.ids['member']} is already a member")
        self.assertEqual(self.manage("owner", "demote_member", network_id,
                                     target_node_id=self.ids["owner"])["error"], "cannot demote the owner")
        self.assertEqual(self.manage("owner", "promote_member", network_id,
                                     target_node_id=self.ids["owner"])["error"], "cannot promote the owner")
        self.assertEqual(self.manage("owner", "demote_member", network_id,
                                     target_node_id=self.ids["admin"])["role"], "member")
        self.assertEqual(self.role(network_id, "admin"), "member")

    def test_roles_need_enterprise(self):
        network_id = self.create()["network_id"]
        self.join("member", network_id)
        self.assertEqual(self.manage("owner", "promote_member", network_id,
                                     target_node_id=self.ids["member"])["error"],
                         "enterprise feature: requires enterprise network")

    def test_transfer_ownership(self):
        network_id = self.enterprise()
        self.assertEqual(self.manage("owner", "transfer_ownership", network_id)["error"],
                         "new_owner_id is required")
        self.assertIn("not a member", self.manage("owner", "transfer_ownership", network_id,
                                                  new_owner_id=self.ids["stranger"])["error"])
        reply = self.manage("owner", "transfer_ownership", network_id, new_owner_id=self.ids["member"])
        self.assertEqual((reply["old_owner"], reply["new_owner"]), (self.ids["owner"], self.ids["member"]))
        self.assertEqual((self.role(network_id, "owner"), self.role(network_id, "member")), ("admin", "owner"))
        self.assertEqual(self.as_node("owner", {"type": "leave_network", "network_id": network_id})["type"],
                         "leave_network_ok")

    def test_enterprise_flag_needs_the_global_token_and_assigns_an_owner(self):
        network_id = self.create()["network_id"]
        self.assertEqual(self.r.send({"type": "set_network_enterprise", "network_id": network_id,
                                      "enterprise": True})["error"],
                         "set_network_enterprise requires admin token")
        self.r.registry.directory.set_role(network_id, self.ids["owner"], "member")
        reply = self.r.ok({"type": "set_network_enterprise", "network_id": network_id, "enterprise": True,
                           "admin_token": ADMIN_TOKEN})
        self.assertIs(reply["enterprise"], True)
        self.assertEqual(self.role(network_id, "owner"), "owner")
        self.assertEqual(self.r.send({"type": "set_network_enterprise", "network_id": 0, "enterprise": True,
                                      "admin_token": ADMIN_TOKEN})["error"],
                         "cannot set enterprise on the backbone network")


class DeleteRenameTests(_Team):
    def test_owner_deletes_admin_may_not(self):
        network_id = self.enterprise(join_rule="invite")
        self.admin_invite(network_id, "stranger")
        self.assertIn("requires one of [owner]", self.as_node(
            "admin", {"type": "delete_network", "network_id": network_id})["error"])
        self.assertEqual(self.as_node("owner", {"type": "delete_network", "network_id": network_id}),
                         {"type": "delete_network_ok", "network_id": network_id})
        directory = self.r.registry.directory
        self.assertEqual((directory.networks, directory.member_roles, directory.invites), ({}, {}, {}))
        self.assertEqual(self.r.send({"type": "delete_network", "network_id": 0,
                                      "admin_token": ADMIN_TOKEN})["error"], "cannot delete the backbone network")

    def test_rename(self):
        network_id = self.enterprise()
        self.create(name="other")
        self.assertEqual(self.as_node("admin", {"type": "rename_network", "network_id": network_id,
                                                "name": "other"})["error"], 'network "other" already exists')
        self.assertIn("invalid network name", self.as_node(
            "admin", {"type": "rename_network", "network_id": network_id, "name": "Bad Name"})["error"])
        self.assertEqual(self.as_node("admin", {"type": "rename_network", "network_id": network_id,
                                                "name": "crew"})["name"], "crew")
        self.assertIn("requires one of [owner admin]", self.as_node(
            "member", {"type": "rename_network", "network_id": network_id, "name": "mine"})["error"])


class PolicyTests(_Team):
    def set_policy(self, network_id, **fields):
        return self.r.send({"type": "set_network_policy", "network_id": network_id,
                            "admin_token": ADMIN_TOKEN, **fields})

    def test_set_merges_and_get_reads(self):
        network_id = self.enterprise()
        reply = self.set_policy(network_id, allowed_ports=[80, 443, 80], description="web team")
        self.assertEqual((reply["allowed_ports"], reply["max_members"], reply["description"]),
                         ([80, 443], 0, "web team"))
        self.set_policy(network_id, max_members=10)
        got = self.r.ok({"type": "get_network_policy", "network_id": network_id})
        self.assertEqual(got, {"type": "get_network_policy_ok", "network_id": network_id, "max_members": 10,
                               "allowed_ports": [80, 443], "description": "web team"})
        listed = self.r.ok({"type": "list_networks"})["networks"][1]
        self.assertEqual((listed["max_members"], listed["description"]), (10, "web team"))

    def test_limits(self):
        network_id = self.enterprise()
        self.assertEqual(self.set_policy(network_id, max_members=10001)["error"],
                         "invalid max_members (must be integer 0-10000)")
        self.assertEqual(self.set_policy(network_id, max_members=2)["error"],
                         "cannot set max_members to 2: network already has 3 members")
        self.assertEqual(self.set_policy(network_id, allowed_ports=list(range(1, 102)))["error"],
                         "too many allowed_ports (max 100)")
        for bad in (0, 65536, "80", 1.5, True):
            self.assertEqual(self.set_policy(network_id, allowed_ports=[bad])["error"],
                             "invalid port number in allowed_ports (must be integer 1-65535)")
        self.assertEqual(self.set_policy(network_id, description="d" * 257)["error"],
                         "policy description too long (max 256 chars)")
        self.assertEqual(len(self.set_policy(network_id, allowed_ports=list(range(1, 101)))["allowed_ports"]), 100)

    def test_member_cannot_set_and_plain_network_refused(self):
        network_id = self.enterprise()
        self.assertIn("requires one of [owner admin]", self.as_node(
            "member", {"type": "set_network_policy", "network_id": network_id, "max_members": 5})["error"])
        self.assertEqual(self.as_node("admin", {"type": "set_network_policy", "network_id": network_id,
                                                "max_members": 5})["max_members"], 5)
        plain = self.create(name="plain")["network_id"]
        self.assertEqual(self.set_policy(plain, max_members=5)["error"],
                         "enterprise feature: requires enterprise network")

    def test_expr_policy_set_get_clear(self):
        network_id = self.enterprise()
        reply = self.as_node("admin", {"type": "set_expr_policy", "network_id": network_id,
                                       "expr_policy": EXPR_POLICY})
        self.assertIs(reply["cleared"], False)
        self.assertEqual(self.r.ok({"type": "get_expr_policy", "network_id": network_id})["expr_policy"],
                         EXPR_POLICY)
        self.assertIn("requires one of [owner admin]", self.as_node(
            "member", {"type": "set_expr_policy", "network_id": network_id, "expr_policy": ""})["error"])
        for cleared in ("", "null", None):
            self.assertIs(self.r.ok({"type": "set_expr_policy", "network_id": network_id,
                                     "expr_policy": cleared, "admin_token": ADMIN_TOKEN})["cleared"], True)
        self.assertIsNone(self.r.ok({"type": "get_expr_policy", "network_id": network_id})["expr_policy"])

    def test_member_tags(self):
        network_id = self.enterprise()
        reply = self.as_node("admin", {"type": "set_member_tags", "network_id": network_id,
                                       "target_node_id": self.ids["member"], "tags": ["#gpu", "eu", "gpu"]})
        self.assertEqual(reply["tags"], ["gpu", "eu"])
        one = self.r.ok({"type": "get_member_tags", "network_id": network_id, "target_node_id": self.ids["member"]})
        self.assertEqual(one["tags"], ["gpu", "eu"])
        everyone = self.r.ok({"type": "get_member_tags", "network_id": network_id, "target_node_id": 0})
        self.assertEqual(everyone["members"], {str(self.ids["member"]): ["gpu", "eu"]})
        listed = self.r.ok({"type": "list_nodes", "network_id": network_id})["nodes"]
        self.assertEqual([n.get("member_tags") for n in listed], [None, None, ["gpu", "eu"]])
        self.assertEqual(self.as_node("admin", {"type": "set_member_tags", "network_id": network_id,
                                                "target_node_id": self.ids["member"],
                                                "tags": [f"t{i}" for i in range(11)]})["error"],
                         "too many tags (max 10)")
        self.assertIn("not a member", self.as_node("admin", {
            "type": "set_member_tags", "network_id": network_id, "target_node_id": self.ids["stranger"],
            "tags": ["x"]})["error"])
        self.assertIn("requires one of", self.as_node("member", {
            "type": "set_member_tags", "network_id": network_id, "target_node_id": self.ids["member"],
            "tags": []})["error"])


class KeyInfoTests(_Team):
    def test_key_info_and_expiry(self):
        info = self.r.ok({"type": "get_key_info", "node_id": self.ids["member"]})
        self.assertEqual((info["rotate_count"], info["key_age_days"], "expires_at" in info), (0, 0, False))
        self.assertEqual(info["created_at"], "2023-11-14T22:13:20Z")
        request = {"type": "set_key_expiry", "expires_at": "2023-12-01T00:00:00Z"}
        self.assertIn("enterprise feature", self.as_node("member", request)["error"])
        network_id = self.enterprise()
        self.assertIn("must be in the future",
                      self.as_node("member", dict(request, expires_at="2020-01-01T00:00:00Z"))["error"])
        self.assertIn("at most 10 years",
                      self.as_node("member", dict(request, expires_at="2040-01-01T00:00:00Z"))["error"])
        self.assertIn("not an RFC 3339 time", self.as_node("member", dict(request, expires_at="soon"))["error"])
        self.assertEqual(self.as_node("member", request)["expires_at"], "2023-12-01T00:00:00Z")
        self.assertEqual(network_id, 1)
        heartbeat = {"type": "heartbeat", "node_id": self.ids["member"]}
        self.assertNotIn("key_expiry_warning", self.r.signed(self.keys["member"], heartbeat))
        self.r.now = 1_701_388_800.0 - 3600
        self.assertIs(self.r.signed(self.keys["member"], heartbeat)["key_expiry_warning"], True)
        self.r.now += 3600
        self.assertEqual(self.r.signed(self.keys["member"], heartbeat)["error"],
                         f"node {self.ids['member']}: key expired at 2023-12-01T00:00:00Z")
        again = {"type": "register", "public_key": self.keys["member"].public_key_b64}
        self.assertIn("key expired", self.r.signed(self.keys["member"], again)["error"])
        self.assertEqual(self.as_node("member", dict(request, expires_at="never"))["expires_at"], "")

    def test_rotation_is_counted(self):
        new = identity(42)
        rotated = sign_request(self.keys["member"], {"type": "rotate_key", "node_id": self.ids["member"],
                                                     "new_public_key": new.public_key_b64})
        self.assertEqual(self.r.send(rotated, over_tls=True)["type"], "rotate_key_ok")
        self.r.now += 3 * 86400
        info = self.r.ok({"type": "get_key_info", "node_id": self.ids["member"]})
        self.assertEqual((info["rotate_count"], info["key_age_days"]), (1, 3))


class StandbyTests(_Team):
    def test_standby_answers_the_reference_reads_only(self):
        network_id = self.enterprise()
        self.r.registry.read_only = True
        self.assertEqual(self.role(network_id, "admin"), "admin")
        self.r.ok({"type": "get_network_policy", "network_id": network_id})
        self.r.ok({"type": "get_key_info", "node_id": self.ids["member"]})
        self.assertEqual(self.as_node("member", {"type": "poll_invites"})["type"], "poll_invites_ok")
        for kind in ("kick_member", "set_member_tags", "get_member_tags", "get_expr_policy"):
            self.assertIn("standby mode", self.r.send({"type": kind, "network_id": network_id,
                                                       "admin_token": ADMIN_TOKEN})["error"])


class RuleParserTests(SynchronousTestCase):
    """The setting parsers take any JSON value: a value or a RequestError, never anything else."""

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
        max_leaves=20)

    @settings(max_examples=300, deadline=None)
    @given(json_values)
    def test_parsers_accept_or_refuse(self, value):
        for parse in (network_rules.parse_rules, network_rules.parse_expr_policy,
                      network_rules.parse_allowed_ports, network_rules.parse_max_members,
                      network_rules.parse_description):
            try:
                parse(value)
            except RequestError:
                pass

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.sampled_from(sorted(RULES) + ["grace"]),
                           st.integers(-5, 20) | st.sampled_from(["1h", "30s", "2m", "x", "", "score", "random",
                                                                  "age", "1h30m", "-1m"])))
    def test_rules_that_pass_are_valid(self, raw):
        try:
            rules = network_rules.parse_rules(raw)
        except RequestError:
            return
        self.assertTrue(1 <= rules["links"] and 0 <= rules["prune"] <= rules["links"]
                        and 0 <= rules["fill"] <= rules["links"])
        self.assertIn(rules["prune_by"], network_rules.PRUNE_STRATEGIES)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(-10, 70000), max_size=120))
    def test_ports_that_pass_are_distinct_and_in_range(self, ports):
        try:
            parsed = network_rules.parse_allowed_ports(ports)
        except RequestError:
            self.assertTrue(len(ports) > 100 or any(not 1 <= p <= 65535 for p in ports))
            return
        self.assertEqual(list(parsed), list(dict.fromkeys(ports)))
