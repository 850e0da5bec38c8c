"""Blueprints and directory sync, driven without sockets."""

import json

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.registry.provisioning import read_blueprint, read_directory
from pilotnet.registry.requests import RequestError
from tests.registry.fixtures import ADMIN_TOKEN, identity
from tests.registry.test_audit import AuditedRegistry


class Provisioned(AuditedRegistry):
    def refused(self, request):
        reply = self.send({**request, "admin_token": ADMIN_TOKEN})
        assert reply["type"] == "error", reply
        return reply

    def members(self, name):
        return self.registry.directory.network_by_name(name).members


class BlueprintTests(SynchronousTestCase):
    def setUp(self):
        self.driven = Provisioned()
        self.a, self.b, self.c = (self.driven.register(identity(n)) for n in (1, 2, 3))

    def blueprint(self, **extra):
        return {"name": "team", "networks": [
            {"name": "ml", "owner": self.a, "members": [self.b]},
            {"name": "ops", "join_rule": "token", "token": "s3cret", "owner": self.b, "members": [self.a, self.c]},
        ], **extra}

    def test_networks_and_settings_in_one_request(self):
        reply = self.driven.admin({"type": "provision_network", "blueprint": self.blueprint(
            webhook={"url": "https://hooks.example.com/pilot"},
            audit_export={"format": "json", "endpoint": "https://siem.example.com/in"},
            identity={"idp_type": "oidc", "url": "https://login.example.com", "client_id": "pilot"})})
        self.assertEqual([(n["name"], n["created"], n["joined"]) for n in reply["networks"]],
                         [("ml", True, [self.b]), ("ops", True, [self.a, self.c])])
        self.assertTrue(reply["webhook"] and reply["audit_export"] and reply["idp_config"])
        self.assertEqual(self.driven.members("ml"), {self.a, self.b})
        self.assertEqual(self.driven.members("ops"), {self.a, self.b, self.c})
        status = self.driven.admin({"type": "get_provision_status"})
        self.assertEqual([(n["name"], n["blueprint"], n["members"]) for n in status["networks"]],
                         [("ml", "team", 2), ("ops", "team", 3)])
        self.assertEqual((status["webhook"], status["audit_export"], status["idp"]), (True, True, "oidc"))
        actions = self.driven.actions()
        for action in ("network.created", "network.joined", "network.provisioned", "webhook.configured",
                       "audit_export.configured", "idp.configured"):
            self.assertIn(action, actions)

    def test_enterprise_networks_with_roles_policies_and_invitations(self):
        blueprint = {"networks": [
            {"name": "secure", "enterprise": True, "owner": self.a, "members": [self.c], "admins": [self.b],
             "policy": {"max_members": 10, "allowed_ports": [7, 1001], "description": "the lab"},
             "expr_policy": ""},
            {"name": "vault", "enterprise": True, "join_rule": "invite", "owner": self.a, "members": [self.b]},
        ]}
        reply = self.driven.admin({"type": "provision_network", "blueprint": blueprint})
        secure, vault = reply["networks"]
        self.assertEqual((secure["joined"], vault["joined"], vault["invited"]), ([self.c, self.b], [], [self.b]))
        role = self.driven.admin({"type": "get_member_role", "network_id": secure["network_id"],
                                  "target_node_id": self.b})
        self.assertEqual(role["role"], "admin")
        policy = self.driven.ok({"type": "get_network_policy", "network_id": secure["network_id"]})
        self.assertEqual((policy["max_members"], policy["allowed_ports"], policy["description"]),
                         (10, [7, 1001], "the lab"))
        self.assertNotIn(self.b, self.driven.members("vault"))  # invited: it joins by accepting
        again = self.driven.admin({"type": "provision_network", "blueprint": blueprint})
        self.assertEqual(again["networks"][0]["joined"], [])  # promoted once, not twice

    def test_an_existing_network_becomes_enterprise_when_the_blueprint_says_so(self):
        self.driven.admin({"type": "create_network", "node_id": self.a, "name": "grow"})
        reply = self.driven.admin({"type": "provision_network", "blueprint": {"networks": [
            {"name": "grow", "enterprise": True, "members": [self.b], "admins": [self.b]}]}})
        self.assertEqual(reply["networks"][0]["created"], False)
        self.assertTrue(self.driven.registry.directory.network_by_name("grow").enterprise)

    def test_provisioning_again_converges(self):
        self.driven.admin({"type": "provision_network", "blueprint": self.blueprint()})
        self.driven.ok({"type": "leave_network", "node_id": self.b,
                        "network_id": self.driven.registry.directory.network_by_name("ml").id}, signer=identity(2))
        again = self.driven.admin({"type": "provision_network", "blueprint": json.dumps(self.blueprint())})
        self.assertEqual([(n["created"], n["joined"]) for n in again["networks"]], [(False, [self.b]), (False, [])])
        self.assertEqual(self.driven.members("ml"), {self.a, self.b})

    def test_a_blueprint_is_checked_whole_before_anything_changes(self):
        blueprint = self.blueprint()
        blueprint["networks"].append({"name": "late", "owner": 99})
        reply = self.driven.refused({"type": "provision_network", "blueprint": blueprint})
        self.assertEqual(reply["code"], "not_found")
        self.assertEqual(self.driven.registry.directory.networks, {})
        for feature in ({"policy": {"allowed_ports": [80]}}, {"admins": [self.b]}, {"join_rule": "invite"}):
            blueprint = self.blueprint()
            blueprint["networks"][1].update(feature)
            reply = self.driven.refused({"type": "provision_network", "blueprint": blueprint})
            self.assertIn("needs an enterprise network", reply["error"])
            self.assertEqual(self.driven.registry.directory.networks, {})

    def test_a_refused_step_stops_provisioning_and_says_where(self):
        blueprint = self.blueprint(webhook={"url": "http://169.254.169.254/"})
        reply = self.driven.refused({"type": "provision_network", "blueprint": blueprint})
        self.assertIn("provisioning stopped at set_webhook", reply["error"])
        self.assertEqual(self.driven.registry.directory.networks, {})

    def test_deprovision(self):
        self.driven.admin({"type": "provision_network", "blueprint": self.blueprint()})
        reply = self.driven.admin({"type": "deprovision_network", "name": "ml"})
        self.assertEqual(reply["deleted"], True)
        self.assertIsNone(self.driven.registry.directory.network_by_name("ml"))
        self.assertIn("network.deleted", self.driven.actions())
        self.assertEqual([n["name"] for n in self.driven.admin({"type": "get_provision_status"})["networks"]],
                         ["ops"])
        missing = self.driven.refused({"type": "deprovision_network", "name": "never"})
        self.assertEqual(missing["code"], "not_found")

    def test_admin_only(self):
        for kind in ("provision_network", "deprovision_network", "get_provision_status", "directory_sync",
                     "directory_status"):
            self.assertEqual(self.driven.send({"type": kind})["error"], "invalid admin token")


class BlueprintShapeTests(SynchronousTestCase):
    def test_refusals_name_the_place(self):
        for blueprint, words in [
            ("{", "not JSON"), ([], "must be an object"), ({"networks": [{"name": "x", "ownr": 1}]}, '"ownr"'),
            ({"netwrks": []}, '"netwrks"'), ({"networks": [{"name": "Bad Name"}]}, "networks[0]"),
            ({"networks": [{"name": "a"}, {"name": "a"}]}, "named twice"),
            ({"networks": [{"name": "a", "join_rule": "closed"}]}, "join_rule"),
            ({"networks": [{"name": "a", "policy": {"allowed_ports": [70000]}}]}, "policy"),
            ({"networks": [{"name": "a", "members": ["x"]}]}, "networks[0]"), ({}, "nothing to provision"),
            ({"webhook": "https://x"}, "webhook must be an object"),
        ]:
            with self.assertRaises(RequestError, msg=str(blueprint)) as refused:
                read_blueprint(blueprint)
            self.assertIn(words, refused.exception.message)

    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                            st.sampled_from(["name", "networks", "owner", "members", "policy", "webhook", "x"]),
                            inner, max_size=4), max_leaves=20))
    def test_any_json_is_a_blueprint_or_a_refusal(self, value):
        try:
            read_blueprint(value)
        except RequestError:
            pass

    @given(st.lists(st.dictionaries(st.sampled_from(["external_id", "role", "disabled"]),
                                    st.none() | st.booleans() | st.text(max_size=10) | st.integers()), max_size=5))
    def test_any_directory_is_read_or_refused(self, entries):
        try:
            assignments, disabled = read_directory(entries)
        except RequestError:
            return
        self.assertFalse(set(assignments) & disabled)


class DirectorySyncTests(SynchronousTestCase):
    def setUp(self):
        self.driven = Provisioned()
        self.a, self.b, self.c = (self.driven.register(identity(n)) for n in (1, 2, 3))
        self.network = self.driven.admin({"type": "create_network", "node_id": self.a, "name": "eng"})["network_id"]
        for node_id, external_id in ((self.b, "bob@example.com"), (self.c, "carol@example.com")):
            self.driven.admin({"type": "set_external_id", "node_id": node_id, "external_id": external_id})

    def sync(self, entries, **extra):
        return self.driven.admin({"type": "directory_sync", "network_id": self.network, "entries": entries, **extra})

    def test_listed_identities_join_and_the_others_wait(self):
        reply = self.sync([{"external_id": "bob@example.com"}, {"external_id": "dave@example.com"}])
        self.assertEqual((reply["matched"], reply["pending"]), ([self.b], ["dave@example.com"]))
        self.assertEqual(self.driven.members("eng"), {self.a, self.b})
        # dave registers later: his node gets the assignment when it gets his ID.
        d = self.driven.register(identity(4))
        self.driven.admin({"type": "set_external_id", "node_id": d, "external_id": "dave@example.com"})
        self.assertIn(d, self.driven.members("eng"))
        status = self.driven.admin({"type": "directory_status", "network_id": self.network})
        self.assertEqual((status["pending"], status["members"], sorted(status["matched"])), ([], 3, [self.b, d]))
        self.assertIn("directory.synced", self.driven.actions())

    def test_disabled_and_unlisted_identities_leave_members_without_one_stay(self):
        self.sync([{"external_id": "bob@example.com"}, {"external_id": "carol@example.com"}])
        reply = self.sync([{"external_id": "bob@example.com", "disabled": True}])
        self.assertEqual(reply["removed"], [self.b])
        self.assertEqual(self.driven.members("eng"), {self.a, self.c})
        reply = self.sync([], remove_unlisted=True)
        self.assertEqual(reply["removed"], [self.c])
        self.assertEqual(self.driven.members("eng"), {self.a})  # a has no external ID: not the directory's

    def test_roles_on_an_enterprise_network_and_kicks(self):
        network = self.driven.admin({"type": "create_network", "node_id": self.a, "name": "corp",
                                     "enterprise": True})["network_id"]
        reply = self.driven.admin({"type": "directory_sync", "network_id": network, "entries": [
            {"external_id": "bob@example.com", "role": "admin"}, {"external_id": "carol@example.com"}]})
        self.assertEqual(reply["matched"], [self.b, self.c])
        role = self.driven.admin({"type": "get_member_role", "network_id": network, "target_node_id": self.b})
        self.assertEqual(role["role"], "admin")
        reply = self.driven.admin({"type": "directory_sync", "network_id": network, "remove_unlisted": True,
                                   "entries": [{"external_id": "bob@example.com", "role": "admin"}]})
        self.assertEqual(reply["removed"], [self.c])
        self.assertIn("member.kicked", self.driven.actions())

    def test_network_by_name_and_refusals(self):
        reply = self.driven.admin({"type": "directory_sync", "network": "eng", "entries": []})
        self.assertEqual(reply["network_id"], self.network)
        for request, code in [({"network": "nope", "entries": []}, "not_found"),
                              ({"network_id": self.network, "entries": [{"external_id": "x", "role": "owner"}]},
                               "invalid_argument"),
                              ({"network_id": self.network, "entries": [{"external_id": "x", "role": "admin"}]},
                               "invalid_argument"),
                              ({"network_id": self.network, "entries": [{"external_id": "x"}] * 2},
                               "invalid_argument"),
                              ({"network_id": self.network, "entries": "all"}, "invalid_argument")]:
            self.assertEqual(self.driven.refused({"type": "directory_sync", **request})["code"], code)
        self.assertEqual(self.driven.refused({"type": "directory_status", "network_id": 77})["code"], "not_found")
