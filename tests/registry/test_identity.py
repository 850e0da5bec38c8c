"""Identities driven without sockets: the IdP settings and their shapes, external IDs, what is verified."""

import json

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.registry.identity import Verdict, verdict_from
from pilotnet.registry.requests import RequestError
from tests.registry.fixtures import identity
from tests.registry.test_audit import AuditedRegistry


class IdpConfigTests(SynchronousTestCase):
    def setUp(self):
        self.driven = AuditedRegistry()

    def refused(self, request):
        reply = self.driven.send({**request, "admin_token": "admin-secret"})
        self.assertEqual(reply["type"], "error", reply)
        return reply

    def test_each_type_is_stored_with_its_fields_and_read_back_without_secrets(self):
        cases = [
            {"idp_type": "oidc", "url": "https://login.example.com", "issuer": "https://login.example.com",
             "client_id": "pilot"},
            {"idp_type": "saml", "url": "https://idp.example.com/metadata", "issuer": "urn:example:idp"},
            {"idp_type": "entra_id", "tenant_id": "11111111-2222-3333-4444-555555555555", "client_id": "app"},
            {"idp_type": "ldap", "url": "ldaps://ldap.example.com:636", "domain": "example.com"},
            {"idp_type": "webhook", "url": "https://verify.example.com/token"},
        ]
        for settings in cases:
            reply = self.driven.admin({"type": "set_idp_config", **settings})
            self.assertTrue(reply["configured"])
            read = self.driven.admin({"type": "get_idp_config"})
            self.assertEqual({k: read[k] for k in settings}, settings)
            self.assertNotIn("secret", read)
            self.assertEqual(read["verifies_tokens"], settings["idp_type"] == "webhook")
            self.assertEqual(self.driven.audit.entries[-1].action, "idp.configured")
        self.assertIn("secret", reply)  # the webhook's signing secret, shown once

    def test_shapes_are_checked(self):
        for settings, words in [
            ({"idp_type": "kerberos", "url": "https://x.example.com"}, "must be one of"),
            ({"idp_type": "oidc", "url": "https://login.example.com"}, "needs client_id"),
            ({"idp_type": "oidc", "url": "http://login.example.com", "client_id": "a"}, "must be https"),
            ({"idp_type": "entra_id", "client_id": "a"}, "needs tenant_id"),
            ({"idp_type": "ldap", "url": "https://ldap.example.com"}, "ldap or ldaps"),
            ({"idp_type": "saml"}, "needs url"),
            ({"idp_type": "webhook", "url": "http://169.254.169.254/latest"}, ""),
            ({"idp_type": "webhook", "url": "http://127.0.0.1:9/verify"}, ""),  # private: not allowed here
            ({"idp_type": "oidc", "url": "https://login.example.com", "client_id": "a\nb"}, "control characters"),
        ]:
            reply = self.refused({"type": "set_idp_config", **settings})
            self.assertEqual(reply["code"], "invalid_argument", reply)
            self.assertIn(words, reply["error"])
        self.assertFalse(self.driven.admin({"type": "get_idp_config"})["configured"])

    def test_the_identity_webhook_is_the_webhook_provider(self):
        self.driven.admin({"type": "set_identity_webhook", "url": "https://verify.example.com/t"})
        self.assertEqual(self.driven.admin({"type": "get_idp_config"})["idp_type"], "webhook")
        self.driven.admin({"type": "set_identity_webhook", "url": ""})
        self.assertFalse(self.driven.admin({"type": "get_idp_config"})["configured"])

    def test_every_message_needs_the_admin_token(self):
        for kind in ("set_idp_config", "get_idp_config", "set_identity_webhook", "set_external_id", "get_identity"):
            reply = self.driven.send({"type": kind, "node_id": 1, "admin_token": "wrong"})
            self.assertEqual(reply["error"], "invalid admin token")


class ExternalIdTests(SynchronousTestCase):
    def setUp(self):
        self.driven = AuditedRegistry()
        self.a = self.driven.register(identity(1))

    def test_set_and_get_by_node_and_by_external_id(self):
        self.assertEqual(self.driven.admin({"type": "get_identity", "node_id": self.a})["external_id"], "")
        self.driven.admin({"type": "set_external_id", "node_id": self.a, "external_id": "alice@example.com"})
        identity_reply = self.driven.admin({"type": "get_identity", "node_id": self.a})
        self.assertEqual((identity_reply["external_id"], identity_reply["source"], identity_reply["verified"]),
                         ("alice@example.com", "admin", False))
        by_id = self.driven.admin({"type": "get_identity", "external_id": "alice@example.com"})
        self.assertEqual(by_id["node_ids"], [self.a])
        entry = self.driven.audit.entries[-1]
        self.assertEqual((entry.action, entry.node_id, entry.details["external_id"]),
                         ("identity.external_id_set", self.a, "alice@example.com"))
        self.driven.admin({"type": "set_external_id", "node_id": self.a, "external_id": ""})
        self.assertEqual(self.driven.admin({"type": "get_identity", "node_id": self.a})["external_id"], "")

    def test_unknown_nodes_and_bad_ids_are_refused(self):
        reply = self.driven.send({"type": "set_external_id", "node_id": 99, "external_id": "x",
                                  "admin_token": "admin-secret"})
        self.assertEqual(reply["code"], "not_found")
        reply = self.driven.send({"type": "set_external_id", "node_id": self.a, "external_id": "x" * 300,
                                  "admin_token": "admin-secret"})
        self.assertIn("too long", reply["error"])

    def test_lookup_and_list_nodes_show_the_external_id_as_the_reference_does(self):
        self.assertNotIn("external_id", self.driven.ok({"type": "lookup", "node_id": self.a}))
        self.driven.admin({"type": "set_external_id", "node_id": self.a, "external_id": "alice@example.com"})
        self.assertEqual(self.driven.ok({"type": "lookup", "node_id": self.a})["external_id"], "alice@example.com")
        listed = self.driven.admin({"type": "list_nodes", "network_id": 0})["nodes"]
        self.assertEqual([entry.get("external_id") for entry in listed], ["alice@example.com"])
        network_id = self.driven.admin({"type": "create_network", "node_id": self.a, "name": "team",
                                        "join_rule": "open"})["network_id"]
        listed = self.driven.ok({"type": "list_nodes", "network_id": network_id})["nodes"]
        self.assertEqual(listed[0]["external_id"], "alice@example.com")

    def test_a_reaped_member_is_listed_without_its_external_id(self):
        self.driven.admin({"type": "set_external_id", "node_id": self.a, "external_id": "alice@example.com"})
        network_id = self.driven.admin({"type": "create_network", "node_id": self.a, "name": "team",
                                        "join_rule": "open"})["network_id"]
        self.driven.now += 3600
        self.assertEqual(self.driven.registry.reap(self.driven.now), [self.a])
        listed = self.driven.ok({"type": "list_nodes", "network_id": network_id})["nodes"]
        self.assertEqual((listed[0]["offline"], "external_id" in listed[0]), (True, False))
        self.assertEqual(self.driven.send({"type": "lookup", "node_id": self.a})["code"], "not_found")

    def test_identities_are_stored_entities(self):
        self.driven.registry.directory.take_changes()
        self.driven.admin({"type": "set_external_id", "node_id": self.a, "external_id": "alice"})
        changes = self.driven.registry.directory.take_changes()
        self.assertIn(("identity", str(self.a)), [(kind, key) for kind, key, _ in changes])


class WhatIsVerifiedTests(SynchronousTestCase):
    def setUp(self):
        self.driven = AuditedRegistry()
        self.identities = self.driven.registry.identities

    def test_a_token_is_verified_only_by_a_webhook_provider(self):
        request = {"type": "register", "identity_token": "jwt"}
        self.assertIsNone(self.identities.registration_check(request))
        self.driven.admin({"type": "set_idp_config", "idp_type": "oidc", "url": "https://l.example.com",
                           "client_id": "a"})
        self.assertIsNone(self.identities.registration_check(request))
        self.driven.admin({"type": "set_idp_config", "idp_type": "webhook", "url": "https://v.example.com/t"})
        check = self.identities.registration_check(request)
        self.assertEqual((check.url, check.token), ("https://v.example.com/t", "jwt"))
        self.assertIsNone(self.identities.registration_check({"type": "register"}))

    def test_tokens_are_bounded_and_printable(self):
        self.driven.admin({"type": "set_idp_config", "idp_type": "webhook", "url": "https://v.example.com/t"})
        for token in ("x" * 9000, "a\x00b", 42):
            with self.assertRaises(RequestError):
                self.identities.registration_check({"identity_token": token})

    def test_validate_token_needs_a_webhook_provider(self):
        with self.assertRaises(RequestError) as none:
            self.identities.validation_check({"admin_token": "admin-secret", "token": "t"})
        self.assertEqual(none.exception.code, "not_found")
        self.driven.admin({"type": "set_idp_config", "idp_type": "saml", "url": "https://idp.example.com/m"})
        with self.assertRaises(RequestError) as saml:
            self.identities.validation_check({"admin_token": "admin-secret", "token": "t"})
        self.assertEqual(saml.exception.code, "unavailable")


class VerdictTests(SynchronousTestCase):
    def test_answers(self):
        self.assertEqual(verdict_from(200, b'{"verified": true, "external_id": "alice"}'), Verdict(True, "alice"))
        self.assertEqual(verdict_from(200, b'{"verified": false, "error": "expired"}'),
                         Verdict(False, "", "expired"))
        for status, body in [(500, b'{"verified": true, "external_id": "a"}'), (200, b"nope"), (200, None),
                             (200, b'{"verified": "yes"}'), (200, b'{"verified": true}'),
                             (200, b'{"verified": true, "external_id": 5}'), (302, b"")]:
            with self.assertRaises(RequestError):
                verdict_from(status, body)

    @given(st.integers(0, 999), st.one_of(st.none(), st.binary(max_size=300),
                                          st.dictionaries(st.text(max_size=12), st.one_of(
                                              st.booleans(), st.text(max_size=300), st.integers(), st.none()),
                                              max_size=4).map(lambda d: json.dumps(d).encode())))
    def test_any_answer_is_a_verdict_or_a_refusal(self, status, body):
        try:
            verdict = verdict_from(status, body)
        except RequestError:
            return
        self.assertTrue(verdict.error.isprintable())
        if verdict.verified:
            self.assertTrue(verdict.external_id.isprintable() and 0 < len(verdict.external_id) <= 256)
