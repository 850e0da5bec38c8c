"""The registry's audit log, driven without sockets: one entry per mutation kind, the admin messages."""

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.registry.audit import AuditLog
from tests.registry.fixtures import ADMIN_TOKEN, DrivenRegistry, identity
from tests.registry.network_scenario import run_network_changes, run_sync


class AuditedRegistry(DrivenRegistry):
    def __init__(self, **options):
        self.audit = AuditLog(capacity=options.pop("capacity", 1000),
                              allow_private_targets=options.pop("allow_private", False))
        super().__init__(audit=self.audit, **options)

    def actions(self):
        return [entry.action for entry in self.audit.entries]

    def admin(self, request):
        return self.ok({**request, "admin_token": ADMIN_TOKEN})


class AuditEntriesTests(SynchronousTestCase):
    def setUp(self):
        self.driven = AuditedRegistry()
        self.alice, self.bob = identity(1), identity(2)
        self.a = self.driven.register(self.alice, hostname="alice")
        self.b = self.driven.register(self.bob)

    def last(self):
        return self.driven.audit.entries[-1]

    def test_each_mutation_kind_is_one_entry_with_the_reference_action(self):
        driven, a, b = self.driven, self.a, self.b
        steps = [
            (lambda: driven.register(self.alice), "node.re_registered", a),
            (lambda: driven.ok({"type": "set_hostname", "node_id": a, "hostname": "alice2"}, signer=self.alice),
             "hostname.changed", a),
            (lambda: driven.ok({"type": "set_tags", "node_id": a, "tags": ["gpu"]}, signer=self.alice),
             "tags.changed", a),
            (lambda: driven.ok({"type": "set_visibility", "node_id": a, "public": True}, signer=self.alice),
             "visibility.changed", a),
            (lambda: driven.ok({"type": "set_task_exec", "node_id": a, "enabled": True}, signer=self.alice),
             "task_exec.changed", a),
            (lambda: driven.ok({"type": "update_polo_score", "node_id": a, "delta": 5}), "polo_score.updated", a),
            (lambda: driven.ok({"type": "set_polo_score", "node_id": a, "polo_score": 9}), "polo_score.set", a),
            (lambda: driven.ok({"type": "request_handshake", "from_node_id": a, "to_node_id": b,
                                "justification": "hi"}, signer=self.alice), "handshake.relayed", a),
            (lambda: driven.ok({"type": "report_trust", "node_id": a, "peer_id": b}, signer=self.alice), None, None),
            (lambda: driven.ok({"type": "respond_handshake", "node_id": b, "peer_id": a, "accept": True},
                               signer=self.bob), "trust.created", b),
            (lambda: driven.ok({"type": "revoke_trust", "node_id": a, "peer_id": b}, signer=self.alice),
             "trust.revoked", a),
            (lambda: driven.admin({"type": "create_network", "node_id": a, "name": "lab"}), "network.created", a),
            (lambda: driven.ok({"type": "join_network", "node_id": b, "network_id": 1}, signer=self.bob),
             "network.joined", b),
            (lambda: driven.ok({"type": "leave_network", "node_id": b, "network_id": 1}, signer=self.bob),
             "network.left", b),
            (lambda: driven.ok({"type": "beacon_register", "beacon_id": 7, "addr": "127.0.0.1:9001"}),
             "beacon.registered", None),
            (lambda: driven.ok({"type": "deregister", "node_id": b}, signer=self.bob), "node.deregistered", b),
        ]
        self.assertEqual(self.driven.actions(), ["node.registered", "node.registered"])
        for step, action, node_id in steps:
            before = len(driven.audit.entries)
            step()
            if action is None:  # one side's consent is no trust pair yet
                self.assertEqual(len(driven.audit.entries), before)
                continue
            self.assertEqual(self.last().action, action)
            self.assertEqual(self.last().node_id, node_id, action)
        self.assertIn("handshake.responded", driven.actions())
        network_entries = [e for e in driven.audit.entries if e.action.startswith("network.")]
        self.assertEqual({e.network_id for e in network_entries}, {1})

    def test_network_management_is_audited_with_the_reference_actions(self):
        driven = self.driven
        ids = run_sync(run_network_changes(lambda request, signer=None: driven.ok(request, signer=signer),
                                           driven.register))
        driven.ok({"type": "set_key_expiry", "node_id": ids["member"], "expires_at": "never"},
                  signer=identity(12))
        driven.admin({"type": "set_expr_policy", "network_id": 1, "expr_policy": ""})
        driven.admin({"type": "kick_member", "network_id": 1, "target_node_id": ids["member"]})
        driven.ok({"type": "transfer_ownership", "network_id": 1, "new_owner_id": ids["admin"],
                   "node_id": ids["owner"]}, signer=identity(10))
        actions = set(driven.actions())
        for action in ("network.created", "invite.created", "invite.responded", "member.promoted",
                       "network.policy_changed", "network.expr_policy_set", "network.expr_policy_cleared",
                       "member_tags.changed", "key.expiry_set", "key.expiry_cleared", "network.deleted",
                       "network.renamed", "member.kicked", "network.ownership_transferred"):
            self.assertIn(action, actions)
        kicked = [e for e in driven.audit.entries if e.action == "member.kicked"][0]
        self.assertEqual((kicked.network_id, kicked.node_id), (1, ids["member"]))

    def test_a_network_whose_owner_deregisters_or_leaves_is_entered_as_owner_lost(self):
        driven = self.driven
        driven.admin({"type": "create_network", "node_id": self.a, "name": "lab"})
        driven.admin({"type": "create_network", "node_id": self.b, "name": "shop"})
        driven.ok({"type": "join_network", "node_id": self.b, "network_id": 1}, signer=self.bob)
        driven.ok({"type": "join_network", "node_id": self.a, "network_id": 2}, signer=self.alice)
        driven.ok({"type": "leave_network", "node_id": self.b, "network_id": 1}, signer=self.bob)
        self.assertNotIn("network.owner_lost", driven.actions())  # a member left, not the owner
        driven.ok({"type": "leave_network", "node_id": self.a, "network_id": 1}, signer=self.alice)
        self.assertEqual(driven.actions()[-2:], ["network.left", "network.owner_lost"])
        self.assertEqual((self.last().network_id, self.last().details), (1, {"former_owner": self.a}))
        driven.ok({"type": "deregister", "node_id": self.b}, signer=self.bob)
        self.assertEqual(driven.actions()[-2:], ["node.deregistered", "network.owner_lost"])
        self.assertEqual(self.last().network_id, 2)
        driven.registry.reap(driven.now + 10_000)  # a reaped owner keeps its memberships: nothing lost
        self.assertEqual(driven.actions().count("network.owner_lost"), 2)

    def test_reads_refusals_and_repeated_beacon_announcements_are_not_entries(self):
        before = len(self.driven.audit.entries)
        self.driven.ok({"type": "lookup", "node_id": self.a})
        self.driven.ok({"type": "heartbeat", "node_id": self.a, "listen_addr": ""}, signer=self.alice)
        self.driven.error({"type": "set_hostname", "node_id": self.a, "hostname": "x"})  # unsigned
        for _ in range(2):
            self.driven.ok({"type": "beacon_register", "beacon_id": 7, "addr": "127.0.0.1:9001"})
        self.driven.ok({"type": "deregister", "node_id": 999})
        self.assertEqual(len(self.driven.audit.entries), before + 1)

    def test_rotated_keys_and_reaped_nodes(self):
        new = identity(9)
        self.driven.ok({"type": "rotate_key", "node_id": self.a, "new_public_key": new.public_key_b64},
                       signer=self.alice)
        self.assertEqual(self.last().action, "key.rotated")
        self.driven.registry.reap(self.driven.now + 10_000)
        reaped = [e for e in self.driven.audit.entries if e.action == "node.reaped"]
        self.assertEqual(sorted(e.node_id for e in reaped), sorted([self.a, self.b]))

    def test_get_audit_log_is_newest_first_limited_filtered_and_admin_only(self):
        self.driven.admin({"type": "create_network", "node_id": self.a, "name": "lab"})
        log = self.driven.admin({"type": "get_audit_log", "limit": 2})["entries"]
        self.assertEqual([e["action"] for e in log], ["network.created", "node.registered"])
        self.assertTrue(log[0]["timestamp"].endswith("Z"))
        self.assertEqual(log[0]["details"], "name=lab, join_rule=open")
        only = self.driven.admin({"type": "get_audit_log", "network_id": 1})["entries"]
        self.assertEqual([e["action"] for e in only], ["network.created"])
        self.assertEqual(self.driven.error({"type": "get_audit_log"}), "invalid admin token")
        self.assertIn("out of range", self.driven.error({"type": "get_audit_log", "limit": 5000,
                                                          "admin_token": ADMIN_TOKEN}))

    def test_the_ring_is_bounded_and_its_evictions_are_stored_deletions(self):
        driven = AuditedRegistry(capacity=3)
        for number in range(10, 15):
            driven.register(identity(number))
        self.assertEqual([e.event_id for e in driven.audit.entries], [3, 4, 5])
        changes = driven.audit.take_changes()
        deleted = [key for kind, key, value in changes if value is None]
        self.assertEqual(deleted, ["000000000001", "000000000002"])

    def test_entries_and_settings_survive_a_restore(self):
        self.driven.admin({"type": "set_webhook", "url": "https://hooks.example.com/x"})
        changes = self.driven.audit.take_changes()
        restored = AuditLog()
        announced = []
        restored.settings_observers.append(lambda name, value: announced.append((name, value)))
        for kind, key, value in changes:
            if value is not None:
                restored.restore(kind, key, value)
        restored.restored()
        self.assertEqual([e.action for e in restored.entries], self.driven.actions())
        self.assertEqual(announced[0][0], "webhook")
        self.assertEqual(restored.record("x", 0).event_id, self.driven.audit.next_id)


class AuditSettingsTests(SynchronousTestCase):
    def setUp(self):
        self.driven = AuditedRegistry()

    def admin_error(self, request):
        return self.driven.error({**request, "admin_token": ADMIN_TOKEN})

    def test_set_webhook_refuses_forbidden_targets_with_invalid_argument(self):
        for url in ("http://169.254.169.254/", "ftp://x.example/", "http://127.0.0.1:9/",
                    "http://metadata.google.internal/"):
            reply = self.driven.send({"type": "set_webhook", "url": url, "admin_token": ADMIN_TOKEN})
            self.assertEqual((reply["type"], reply["code"]), ("error", "invalid_argument"), url)
        self.assertEqual(self.driven.admin({"type": "get_webhook"})["enabled"], False)

    def test_set_get_and_clear_webhook(self):
        reply = self.driven.admin({"type": "set_webhook", "url": "https://hooks.example.com/x"})
        self.assertEqual((reply["enabled"], len(reply["secret"])), (True, 64))
        state = self.driven.admin({"type": "get_webhook"})
        self.assertEqual((state["url"], state["enabled"], state["delivered"], state["dlq_size"]),
                         ("https://hooks.example.com/x", True, 0, 0))
        self.assertNotIn("secret", state)
        self.assertEqual(self.driven.admin({"type": "get_webhook_dlq"})["events"], [])
        self.assertFalse(self.driven.admin({"type": "set_webhook", "url": ""})["enabled"])
        self.assertEqual(self.driven.error({"type": "set_webhook", "url": "https://x.example/"}),
                         "invalid admin token")

    def test_audit_export_settings_are_checked_per_format(self):
        self.assertIn("format must be one of", self.admin_error({"type": "set_audit_export", "format": "xml"}))
        self.assertIn("splunk_token", self.admin_error({"type": "set_audit_export", "format": "splunk_hec",
                                                        "endpoint": "https://splunk.example.com/services/collector"}))
        self.assertIn("udp://host:port", self.admin_error({"type": "set_audit_export", "format": "syslog_cef",
                                                           "endpoint": "http://siem.example.com/"}))
        self.assertIn("link-local", self.admin_error({"type": "set_audit_export", "format": "syslog_cef",
                                                      "endpoint": "udp://169.254.1.1:514"}))
        reply = self.driven.admin({"type": "set_audit_export", "format": "splunk_hec", "splunk_token": "t0k",
                                   "endpoint": "https://splunk.example.com/services/collector/event"})
        self.assertNotIn("splunk_token", reply)
        state = self.driven.admin({"type": "get_audit_export"})
        self.assertEqual((state["enabled"], state["format"], state["source"]), (True, "splunk_hec", "pilot-registry"))
        self.assertEqual(self.driven.actions()[-1], "audit_export.configured")
        self.assertFalse(self.driven.admin({"type": "set_audit_export", "format": "disable"})["enabled"])
        self.assertFalse(self.driven.admin({"type": "get_audit_export"})["enabled"])

    # Generation, not the registry, is what a loaded machine slows down here.
    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(st.sampled_from(["url", "format", "endpoint", "splunk_token", "limit", "network_id",
                                            "secret", "index", "source", "enabled"]),
                           st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                                     st.lists(st.integers(), max_size=3))),
           st.sampled_from(["get_audit_log", "set_webhook", "get_webhook", "get_webhook_dlq", "set_audit_export",
                            "get_audit_export"]))
    def test_malformed_admin_requests_are_refused_cleanly(self, request, kind):
        reply = self.driven.send({**request, "type": kind, "admin_token": ADMIN_TOKEN})
        self.assertIn(reply["type"], (kind + "_ok", "error"))
        if reply["type"] == "error":
            self.assertNotEqual(reply["code"], "internal", reply)

    def test_entries_name_the_target_without_its_path(self):
        self.driven.admin({"type": "set_webhook", "url": "https://hooks.example.com:8443/services/T0/B0/token"})
        self.assertEqual(self.driven.audit.entries[-1].details["url"], "https://hooks.example.com:8443")

