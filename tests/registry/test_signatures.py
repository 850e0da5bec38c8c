"""Signed requests: values covered, fresh, used once; legacy forms only where safe (issue: hijacks)."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.registry.challenges import sign_fresh_request, sign_request, signature_valid
from pilotnet.registry.freshness import MAX_UNTAKEN, ReplayCache
from tests.registry.fixtures import DrivenRegistry, identity

OTHER_PEER = ("203.0.113.66", 50000)


class FreshSignatureTests(SynchronousTestCase):
    def setUp(self):
        self.r = DrivenRegistry()
        self.alice = identity(1)
        self.node = self.r.register(self.alice)
        self.lookup = {"type": "lookup", "node_id": self.node}

    def public(self):
        return self.r.ok(self.lookup)["public"]

    def test_captured_set_visibility_replayed_with_public_true_is_refused(self):
        captured = sign_fresh_request(self.alice, {"type": "set_visibility", "node_id": self.node,
                                                   "public": False}, self.r.now)
        self.assertEqual(self.r.send(captured)["type"], "set_visibility_ok")
        forged = dict(captured, public=True)
        self.assertEqual(self.r.send(forged)["error"], "signature verification failed")
        self.assertFalse(self.public())

    def test_replayed_request_is_refused(self):
        captured = sign_fresh_request(self.alice, {"type": "set_tags", "node_id": self.node,
                                                   "tags": ["a"]}, self.r.now)
        self.assertEqual(self.r.send(captured)["type"], "set_tags_ok")
        self.r.ok({"type": "set_tags", "node_id": self.node, "tags": ["b"]}, signer=self.alice)
        self.r.now += 10
        self.assertIn("replayed request", self.r.send(captured)["error"])
        self.assertEqual(self.r.ok(self.lookup)["tags"], ["b"])

    def test_stale_and_future_timestamps_are_refused(self):
        for offset in (-301, 301):
            request = sign_fresh_request(self.alice, {"type": "set_visibility", "node_id": self.node,
                                                      "public": True}, self.r.now + offset)
            reply = self.r.send(request)
            self.assertIn("stale signature", reply["error"])
        self.assertFalse(self.public())

    def test_a_request_kept_until_the_window_passes_is_still_refused(self):
        captured = sign_fresh_request(self.alice, {"type": "set_visibility", "node_id": self.node,
                                                   "public": True}, self.r.now)
        self.r.send(captured)
        self.r.now += 301
        self.r.registry.replays.purge(self.r.now)  # the nonce is gone: the timestamp refuses it
        self.assertIn("stale signature", self.r.send(captured)["error"])

    def test_the_legacy_signature_beside_the_fresh_one_is_for_go_registries_only(self):
        """Our requests carry Go's signature too (a Go registry checks it); stripped of the
        fresh fields and replayed with other values, ours refuses it over plaintext."""
        captured = sign_fresh_request(self.alice, {"type": "set_visibility", "node_id": self.node,
                                                   "public": False}, self.r.now)
        self.assertTrue(signature_valid(self.alice.public_key_b64, "set_visibility",
                                        captured, captured["signature"]))
        self.r.send(captured)
        stripped = {key: value for key, value in captured.items()
                    if key not in ("request_signature", "nonce", "timestamp")}
        self.assertIn("only over TLS", self.r.send(dict(stripped, public=True))["error"])
        self.assertFalse(self.public())

    def test_signature_of_another_node_is_refused(self):
        mallory = identity(7)
        self.r.register(mallory)
        forged = sign_fresh_request(mallory, {"type": "set_visibility", "node_id": self.node,
                                              "public": True}, self.r.now)
        self.assertEqual(self.r.send(forged)["error"], "signature verification failed")

    def test_every_signed_message_takes_the_fresh_form(self):
        bob = identity(2)
        b = self.r.register(bob)
        for request in (
                {"type": "heartbeat", "node_id": self.node, "listen_addr": "0.0.0.0:5"},
                {"type": "set_hostname", "node_id": self.node, "hostname": "alice"},
                {"type": "set_task_exec", "node_id": self.node, "enabled": True},
                {"type": "report_trust", "node_id": self.node, "peer_id": b},
                {"type": "request_handshake", "from_node_id": self.node, "to_node_id": b},
                {"type": "respond_handshake", "node_id": self.node, "peer_id": b, "accept": True},
                {"type": "poll_handshakes", "node_id": self.node},
                {"type": "resolve", "node_id": b, "requester_id": self.node},
                {"type": "revoke_trust", "node_id": self.node, "peer_id": b},
                {"type": "rotate_key", "node_id": self.node,
                 "new_public_key": identity(3).public_key_b64}):
            reply = self.r.signed(self.alice, request)
            expected = request["type"] + "_ok"
            if request["type"] == "resolve":
                expected = "error"  # bob is private: refused by visibility, not by signature
                self.assertIn("private", reply["error"])
            self.assertEqual(reply["type"], expected, reply)


class LegacySignatureTests(SynchronousTestCase):
    """Go's signatures cover no values: accepted over TLS, by option, or where harmless."""

    def setUp(self):
        self.r = DrivenRegistry()
        self.alice = identity(1)
        self.node = self.r.register(self.alice)
        self.request = {"type": "set_visibility", "node_id": self.node, "public": True}

    def test_refused_over_plaintext(self):
        reply = self.r.signed_legacy(self.alice, self.request)
        self.assertIn("accepted only over TLS", reply["error"])
        self.assertFalse(self.r.ok({"type": "lookup", "node_id": self.node})["public"])

    def test_accepted_over_tls(self):
        reply = self.r.signed_legacy(self.alice, self.request, over_tls=True)
        self.assertEqual(reply["type"], "set_visibility_ok")

    def test_accepted_with_the_compatibility_option(self):
        r = DrivenRegistry(allow_legacy_signatures=True)
        node = r.register(self.alice)
        reply = r.signed_legacy(self.alice, dict(self.request, node_id=node))
        self.assertEqual(reply["type"], "set_visibility_ok")

    def test_harmless_legacy_forms_pass_over_plaintext(self):
        """What a Go daemon sends all the time: heartbeats without endpoint, and resolve."""
        beat = self.r.signed_legacy(self.alice, {"type": "heartbeat", "node_id": self.node})
        self.assertEqual(beat["type"], "heartbeat_ok")
        resolved = self.r.signed_legacy(self.alice, {"type": "resolve", "node_id": self.node,
                                                     "requester_id": self.node})
        self.assertEqual(resolved["type"], "resolve_ok")
        moved = self.r.signed_legacy(self.alice, {"type": "heartbeat", "node_id": self.node,
                                                  "listen_addr": "0.0.0.0:9"}, peer=OTHER_PEER)
        self.assertIn("accepted only over TLS", moved["error"])


class RegisterTakeoverTests(SynchronousTestCase):
    """A ``register`` with a live node's (public) key must not move the node."""

    def setUp(self):
        self.r = DrivenRegistry(stale_after=300.0)
        self.alice = identity(1)
        self.node = self.r.register(self.alice, listen_addr="0.0.0.0:4000", hostname="alice")

    def lookup(self):
        return self.r.ok({"type": "lookup", "node_id": self.node})

    def resolve(self):
        return self.r.ok({"type": "resolve", "node_id": self.node, "requester_id": self.node},
                         signer=self.alice)

    def test_unsigned_register_from_another_address_is_refused(self):
        reply = self.r.send({"type": "register", "public_key": self.alice.public_key_b64,
                             "listen_addr": "0.0.0.0:6666", "hostname": "mallory",
                             "lan_addrs": ["10.6.6.6:6666"], "version": "evil"}, OTHER_PEER)
        self.assertIn("register refused", reply["error"])
        self.assertEqual(self.resolve()["real_addr"], "198.51.100.7:4000")
        self.assertEqual(self.lookup()["hostname"], "alice")
        self.assertNotIn("version", self.lookup())

    def test_unsigned_reregistration_from_the_same_address_works(self):
        """A Go daemon re-registering after failed heartbeats."""
        self.r.now += 100
        reply = self.r.ok({"type": "register", "public_key": self.alice.public_key_b64,
                           "listen_addr": "0.0.0.0:4001", "hostname": "alice"})
        self.assertEqual(reply["node_id"], self.node)
        self.assertEqual(self.resolve()["real_addr"], "198.51.100.7:4001")

    def test_unsigned_reregistration_of_an_offline_node_from_a_new_address_works(self):
        self.r.now += 301  # no proof of the key for longer than stale_after
        reply = self.r.send({"type": "register", "public_key": self.alice.public_key_b64,
                             "listen_addr": "0.0.0.0:4002"}, OTHER_PEER)
        self.assertEqual(reply["node_id"], self.node)

    def test_heartbeats_keep_the_node_held(self):
        for _ in range(4):
            self.r.now += 100
            self.r.signed_legacy(self.alice, {"type": "heartbeat", "node_id": self.node})
        reply = self.r.send({"type": "register", "public_key": self.alice.public_key_b64},
                            OTHER_PEER)
        self.assertIn("register refused", reply["error"])

    def test_a_recreation_by_somebody_else_does_not_lock_the_node_out(self):
        """Mallory recreates the dead node from her address; its owner comes back from its own."""
        self.r.now += 301
        self.r.registry.reap(self.r.now)
        self.r.send({"type": "register", "public_key": self.alice.public_key_b64,
                     "listen_addr": "0.0.0.0:6666"}, OTHER_PEER)
        reply = self.r.ok({"type": "register", "public_key": self.alice.public_key_b64,
                           "listen_addr": "0.0.0.0:4000"})
        self.assertEqual(reply["observed_addr"], "198.51.100.7:4000")

    def test_signed_register_moves_the_node_from_anywhere(self):
        reply = self.r.send(sign_fresh_request(self.alice, {
            "type": "register", "public_key": self.alice.public_key_b64,
            "listen_addr": "0.0.0.0:7000", "hostname": "alice"}, self.r.now), OTHER_PEER)
        self.assertEqual(reply["observed_addr"], "203.0.113.66:7000")

    def test_signed_register_with_a_bad_signature_is_refused(self):
        mallory = identity(7)
        forged = sign_fresh_request(mallory, {"type": "register",
                                              "public_key": self.alice.public_key_b64,
                                              "listen_addr": "0.0.0.0:6666"}, self.r.now)
        self.assertEqual(self.r.send(forged, OTHER_PEER)["error"], "signature verification failed")
        # Any other "signature" on a register proves nothing: judged as unsigned.
        legacy = sign_request(mallory, {"type": "heartbeat", "node_id": self.node})
        legacy.update(type="register", public_key=self.alice.public_key_b64)
        self.assertIn("register refused", self.r.send(legacy, OTHER_PEER)["error"])

    def test_a_replayed_signed_register_is_refused(self):
        signed = sign_fresh_request(self.alice, {"type": "register",
                                                 "public_key": self.alice.public_key_b64,
                                                 "listen_addr": "0.0.0.0:4000"}, self.r.now)
        self.assertEqual(self.r.send(signed)["type"], "register_ok")
        self.assertIn("replayed", self.r.send(signed, OTHER_PEER)["error"])


class ReplayCacheTests(SynchronousTestCase):
    def test_bounds_refuse_rather_than_forget(self):
        cache = ReplayCache(window=10, max_entries=3, max_per_signer=2)
        cache.admit("a", "n1", 100, 100)
        cache.admit("a", "n2", 100, 100)
        self.assertRaises(Exception, cache.admit, "a", "n3", 100, 100)
        cache.admit("b", "n1", 100, 100)
        self.assertRaises(Exception, cache.admit, "c", "n1", 100, 100)
        cache.admit("c", "n1", 111, 111)  # the first three expired and were purged
        self.assertEqual(len(cache), 1)

    def test_admitted_nonces_are_handed_over_once_and_stay_bounded(self):
        cache = ReplayCache(window=10, max_entries=1000, max_per_signer=1000)
        cache.admit("a", "n1", 100, 100)
        self.assertEqual(cache.take_admitted(), [("a", "n1", 110)])
        self.assertEqual(cache.take_admitted(), [])
        for index in range(MAX_UNTAKEN + 5):  # nobody takes them (no shell): the oldest go
            cache.admit("a", f"m{index}", 100, 100)
        self.assertEqual(len(cache.take_admitted()), MAX_UNTAKEN)

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=20), st.integers(),
                                                          st.booleans(), st.none()), max_size=6))
    def test_any_change_of_any_field_breaks_the_signature(self, extra):
        r = DrivenRegistry()
        alice = identity(1)
        node = r.register(alice)
        request = {"type": "set_tags", "node_id": node, "tags": ["x"]}
        signed = sign_fresh_request(alice, request, r.now)
        tampered = dict(signed)
        tampered.update({key: value for key, value in extra.items() if key != "signature"})
        reply = r.send(tampered)
        if tampered != signed:
            self.assertEqual(reply["type"], "error")


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.text(max_size=40), st.lists(st.text(max_size=8), max_size=3),
                    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
_FIELDS = st.sampled_from(["node_id", "peer_id", "public_key", "listen_addr", "hostname", "public",
                           "tags", "timestamp", "nonce", "signature", "request_signature", "owner",
                           "lan_addrs", "requester_id", "new_public_key", "from_node_id",
                           "to_node_id", "accept", "enabled"])


class HostileRequestTests(SynchronousTestCase):
    """Whatever a client sends to the signed paths, the registry answers and stays consistent."""

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["register", "heartbeat", "set_visibility", "set_tags", "rotate_key",
                            "resolve", "poll_handshakes", "respond_handshake"]),
           st.dictionaries(_FIELDS, _VALUES, max_size=8), st.booleans())
    def test_any_fields_get_an_answer(self, kind, extra, over_tls):
        r = DrivenRegistry()
        alice = identity(1)
        node = r.register(alice)
        request = {"type": kind, "node_id": node, **extra}
        reply = r.send(request, over_tls=over_tls)
        self.assertIn(reply["type"], (kind + "_ok", "error"))
        self.assertNotEqual(reply.get("error"), "internal error")
        self.assertEqual(r.registry.directory.key_index[alice.public_key_b64], node)
