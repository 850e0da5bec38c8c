"""The trust flows and the gate, on a fake clock with a recording registry and courier."""

import json
from pathlib import Path

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.crypto.identity import Identity, b64encode
from pilotnet.crypto.tunnel import TunnelKeyPair, TunnelSession, build_auth_key_offer
from pilotnet.daemon.trust import MAX_PENDING, TrustState
from pilotnet.daemon.asked_names import MAX_NAMES
from pilotnet.daemon.trust_manager import FAST_POLL_INTERVAL, RELAY_HEAD_START, TrustManager
from pilotnet.daemon.tunnel import Tunnel
from pilotnet.errors import ALREADY_EXISTS, INVALID_ARGUMENT, NOT_FOUND, PilotError
from pilotnet.wire import handshake
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_SYN, PROTO_DATAGRAM, PROTO_STREAM, Packet
from tests.daemon.fakes import DatagramNetwork, StaticKeys
from tests.services.test_dataexchange import QueuedWriter

ME, PEER = 5, 6
OUR_ADDR, HER_ADDR = ("127.0.0.1", 1005), ("127.0.0.1", 1066)
NOW = 1_700_000_000


class FakeRegistry:
    """Records signed requests; ``inbox`` is what the next poll returns."""

    def __init__(self):
        self.signed_requests = []
        self.inbox = {"requests": [], "responses": []}
        self.networks = {}
        self.trusted_pairs = set()
        self.consented = set()  # peers whose consent to trust us the registry holds
        self.visible_names = {}  # hostname -> node, for names resolve_hostname shows us
        self.fail = {}

    def signed(self, request):
        self.signed_requests.append(request)
        if request["type"] in self.fail:
            return defer.fail(self.fail[request["type"]])
        if request["type"] == "poll_handshakes":
            reply, self.inbox = self.inbox, {"requests": [], "responses": []}
            return defer.succeed(reply)
        if request["type"] == "report_trust":  # our registry says whether both consents are in
            return defer.succeed({"type": "report_trust_ok", "mutual": request["peer_id"] in self.consented})
        return defer.succeed({"type": request["type"] + "_ok"})

    def request(self, request):
        if request["type"] == "lookup":
            return defer.succeed({"networks": self.networks.get(request["node_id"], [0])})
        if request["type"] == "check_trust":
            return defer.succeed({"trusted": request["peer_id"] in self.trusted_pairs})
        if request["type"] == "resolve_hostname":
            if request["hostname"] not in self.visible_names:
                return defer.fail(PilotError(f'hostname "{request["hostname"]}" not found', code=NOT_FOUND))
            return defer.succeed({"node_id": self.visible_names[request["hostname"]]})
        raise AssertionError(request)

    def kinds(self):
        return [(r["type"], r.get("accept")) for r in self.signed_requests]


class FakeCourier:
    """``reachable``: True delivers at once, False fails at once, None never answers (a silent peer)."""

    def __init__(self):
        self.sent = []
        self.reachable = True
        self.cancelled = []

    def send(self, node, message, timeout=None):
        self.sent.append((node, message.kind))
        if self.reachable is None:
            return defer.Deferred(canceller=lambda _: self.cancelled.append((node, message.kind)))
        if self.reachable:
            return defer.succeed(None)
        return defer.fail(PilotError("cannot resolve", code=NOT_FOUND))


class Settings:
    public = False
    encrypt = True
    trust_auto_approve = False


class TrustCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.path = Path(self.mktemp())
        self.peer = Identity.generate()
        self.registry = FakeRegistry()
        self.courier = FakeCourier()
        self.settings = Settings()
        self.aborted, self.dropped = [], []
        #: The Ed25519 key each node's tunnel session was verified against.
        self.tunnel_keys = {PEER: self.peer.public_key}
        self.trust = self.manager()

    def manager(self):
        trust = TrustManager(
            clock=self.clock, state=TrustState.load(self.path), identity=Identity.generate(),
            registry=self.registry, courier=self.courier, peer_keys=StaticKeys({PEER: self.peer.public_key}),
            tunnel_key=self.tunnel_keys.get, settings=self.settings, abort_streams=self.aborted.append, drop_tunnel=self.dropped.append)
        self.successResultOf(trust.registered(ME))
        return trust

    def from_peer(self, kind, **fields):
        return handshake.build_message(kind, self.peer, PEER, ME, NOW, **fields)

    def syn(self, port=7, protocol=PROTO_STREAM):
        return Packet(protocol, Addr(0, PEER), Addr(0, ME), 49152, port, flags=FLAG_SYN)


class FlowTests(TrustCase):
    def test_request_direct_then_accept_creates_mutual_trust_and_reports_it(self):
        self.assertEqual(self.successResultOf(self.trust.request(PEER, "hi")),
                         {"status": "sent", "node_id": PEER, "path": "direct"})
        self.assertEqual(self.courier.sent, [(PEER, handshake.REQUEST)])
        self.assertNotIn(("request_handshake", None), self.registry.kinds())
        self.successResultOf(self.trust.received(self.from_peer(handshake.ACCEPT)))
        [peer] = self.trust.trusted()["trusted"]
        self.assertEqual((peer["node_id"], peer["mutual"], peer["public_key"]),
                         (PEER, True, self.peer.public_key_b64))
        self.assertIn(("report_trust", None), self.registry.kinds())

    def test_unreachable_peer_gets_a_relayed_request_and_the_relayed_answer_is_polled_soon(self):
        self.courier.reachable = False
        self.successResultOf(self.trust.request(PEER, "hi"))
        self.assertIn(("request_handshake", None), self.registry.kinds())
        self.registry.inbox["responses"] = [{"from_node_id": PEER, "accept": True, "timestamp": NOW}]
        self.clock.advance(FAST_POLL_INTERVAL)
        self.assertTrue(self.trust.state.is_trusted(PEER))
        self.assertEqual(self.trust.state.outgoing, set())

    def test_a_request_already_relayed_is_still_sent(self):
        self.courier.reachable = False
        self.registry.fail["request_handshake"] = PilotError("already pending", code=ALREADY_EXISTS)
        self.assertEqual(self.successResultOf(self.trust.request(PEER))["status"], "sent")

    def test_pending_then_approve(self):
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST, justification="please")))
        self.assertEqual([(r["node_id"], r["justification"]) for r in self.successResultOf(self.trust.pending())["pending"]],
                         [(PEER, "please")])
        self.assertFalse(self.trust.admit(self.syn()))
        self.assertEqual(self.successResultOf(self.trust.approve(PEER)),
                         {"status": "approved", "node_id": PEER, "mutual": False})
        self.assertFalse(self.trust.trusted()["trusted"][0]["mutual"])  # this registry did not confirm both consents
        self.assertIn(("respond_handshake", True), self.registry.kinds())
        self.assertIn((PEER, handshake.ACCEPT), self.courier.sent)
        self.assertTrue(self.trust.admit(self.syn()))

    def test_approve_returns_once_the_requester_has_our_answer(self):
        """What a user does next (the requester lists the trust) must not race the answer's delivery."""
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.courier.reachable = None  # the answer is on its way
        approving = self.trust.approve(PEER)
        self.assertNoResult(approving)
        self.assertIn((PEER, handshake.ACCEPT), self.courier.sent)
        approving.cancel()  # a requester that never reads it: the courier's own timeout ends the wait
        self.assertEqual(self.successResultOf(approving)["status"], "approved")

    def test_trust_json_is_written_off_the_reactor_and_approve_waits_for_it(self):
        writer = QueuedWriter()
        self.trust.state = TrustState(self.path, writer)
        for _ in range(5):  # a peer repeating its request: one write waits, whatever the count
            self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.assertEqual(len(writer.queue), 1)
        self.assertFalse(self.path.exists())
        approving = self.trust.approve(PEER)
        self.assertNoResult(approving)
        self.assertNotIn((PEER, handshake.ACCEPT), self.courier.sent)  # not before the file holds the trust
        writer.run_all()
        self.assertEqual(self.successResultOf(approving)["status"], "approved")
        self.assertIn((PEER, handshake.ACCEPT), self.courier.sent)
        self.assertTrue(TrustState.load(self.path).is_trusted(PEER))

    def test_reject_clears_the_request_and_answers_with_a_refusal(self):
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.successResultOf(self.trust.reject(PEER, "no"))
        self.assertEqual(self.trust.state.pending, {})
        self.assertIn(("respond_handshake", False), self.registry.kinds())
        self.assertIn((PEER, handshake.REJECT), self.courier.sent)

    def test_mutual_requests_approve_without_the_operator(self):
        self.courier.reachable = False
        self.successResultOf(self.trust.request(PEER))
        self.registry.inbox["requests"] = [{"from_node_id": PEER, "justification": "",
                                            "public_key": self.peer.public_key_b64}]
        self.successResultOf(self.trust.poll())
        self.assertTrue(self.trust.trusted()["trusted"][0]["mutual"])
        self.assertIn(("respond_handshake", True), self.registry.kinds())

    def test_a_shared_network_approves(self):
        self.registry.networks = {ME: [0, 3], PEER: [0, 3]}
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.assertEqual(self.trust.trusted()["trusted"][0]["network"], 3)

    def test_the_backbone_is_not_a_shared_network(self):
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.assertEqual((self.trust.trusted()["trusted"], len(self.trust.state.pending)), ([], 1))

    def test_auto_approve_approves_everything_valid(self):
        self.settings.trust_auto_approve = True
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.assertFalse(self.trust.trusted()["trusted"][0]["mutual"])

    def test_an_accept_nobody_asked_for_creates_nothing(self):
        self.successResultOf(self.trust.received(self.from_peer(handshake.ACCEPT)))
        self.assertEqual((self.trust.trusted()["trusted"], self.trust.unsolicited), ([], 1))

    def test_revoke_resets_streams_tells_the_peer_drops_the_tunnel_and_closes_the_gate(self):
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.successResultOf(self.trust.approve(PEER))
        self.registry.trusted_pairs.add(PEER)  # the registry may lag behind
        self.assertEqual(self.successResultOf(self.trust.revoke(PEER))["status"], "revoked")
        self.assertEqual((self.aborted, self.dropped), ([PEER], [PEER]))
        self.assertIn((PEER, handshake.REVOKE), self.courier.sent)
        self.assertIn(("revoke_trust", None), self.registry.kinds())
        self.assertFalse(self.trust.admit(self.syn()))
        failure = self.failureResultOf(self.trust.revoke(PEER), PilotError)
        self.assertEqual(failure.value.message, f"handshake revoke: node {PEER} was not trusted")

    def test_revoke_by_the_peer_directly_or_through_the_relay(self):
        self.trust.state.trust(PEER, "", NOW, mutual=True)
        self.successResultOf(self.trust.received(self.from_peer(handshake.REVOKE)))
        self.assertEqual((self.trust.state.trusted, self.aborted), ({}, [PEER]))
        self.trust.state.trust(PEER, "", NOW, mutual=True)
        self.registry.inbox["responses"] = [{"from_node_id": PEER, "accept": False}]
        self.successResultOf(self.trust.poll())
        self.assertEqual(self.trust.state.trusted, {})

    def test_gate(self):
        self.assertFalse(self.trust.admit(self.syn()))
        self.assertFalse(self.trust.admit(self.syn(1000, PROTO_DATAGRAM)))
        self.assertEqual(self.trust.refused, {"syn": 1, "datagram": 1})
        self.trust.state.ask(PEER)
        self.assertTrue(self.trust.admit(self.syn(444)))  # the answer we wait for
        self.assertFalse(self.trust.admit(self.syn(7)))
        self.settings.public = True
        self.assertTrue(self.trust.admit(self.syn(7)))

    def test_gate_asks_the_registry_in_the_background(self):
        self.registry.trusted_pairs.add(PEER)
        self.assertFalse(self.trust.admit(self.syn()))  # asked now, answered for the retransmission
        self.assertTrue(self.trust.admit(self.syn()))

    def test_state_survives_a_restart_and_is_re_reported(self):
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.successResultOf(self.trust.approve(PEER))
        self.registry.signed_requests.clear()
        restarted = self.manager()
        self.assertEqual(restarted.trusted(), self.trust.trusted())
        self.assertEqual(self.registry.kinds(), [("report_trust", None)])

    def test_another_key_under_a_trusted_node_id_is_not_trusted(self):
        """The takeover: the registry now holds Mallory's key for our trusted peer's ID."""
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.successResultOf(self.trust.approve(PEER))
        self.assertTrue(self.trust.admit(self.syn()))
        mallory = Identity.generate()
        self.trust.peer_keys.keys[PEER] = self.tunnel_keys[PEER] = mallory.public_key
        self.registry.trusted_pairs.add(PEER)  # the registry's pair is by ID: no help here
        self.assertFalse(self.trust.admit(self.syn()))
        self.assertFalse(self.trust.admit(self.syn()))
        self.assertEqual(self.trust.key_mismatches, 2)
        # Her handshake request is a stranger's: it waits for the operator.
        request = handshake.build_message(handshake.REQUEST, mallory, PEER, ME, NOW)
        self.courier.sent.clear()
        self.successResultOf(self.trust.received(request))
        self.assertIn(PEER, self.trust.state.pending)
        self.assertEqual(self.courier.sent, [])
        self.assertEqual(self.trust.state.trusted[PEER].public_key, self.peer.public_key_b64)
        # An accept signed by her key is not taken for our trusted peer's either.
        self.successResultOf(self.trust.received(
            handshake.build_message(handshake.ACCEPT, mallory, PEER, ME, NOW)))
        self.assertEqual(self.trust.state.trusted[PEER].public_key, self.peer.public_key_b64)

    def test_the_gate_checks_the_key_the_tunnel_verified_not_the_registry_cache(self):
        """The registry shows our peer's key again, but the session was keyed by Mallory's."""
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.successResultOf(self.trust.approve(PEER))
        self.tunnel_keys[PEER] = Identity.generate().public_key
        self.assertFalse(self.trust.admit(self.syn()))
        self.assertEqual(self.trust.key_mismatches, 1)
        del self.tunnel_keys[PEER]  # no session: nothing verified, nothing admitted
        self.assertFalse(self.trust.admit(self.syn()))

    def test_an_old_file_without_keys_is_bound_to_the_registry_key_at_registration(self):
        self.path.write_text(json.dumps({"trusted": [
            {"node_id": PEER, "public_key": "", "approved_at": "2026-01-01T00:00:00Z", "mutual": True}]}))
        trust = self.manager()
        self.assertEqual(trust.state.trusted[PEER].public_key, self.peer.public_key_b64)
        self.assertTrue(trust.state.trusted[PEER].mutual)
        saved = json.loads(self.path.read_text())["trusted"][0]
        self.assertEqual(saved["public_key"], self.peer.public_key_b64)


class AnswerTests(TrustCase):
    """What ``handshake`` and ``approve`` answer is what really happened, and both sides agree on mutual."""

    def test_asking_a_node_whose_request_waits_in_the_relay_approves_it(self):
        self.registry.inbox["requests"] = [{"from_node_id": PEER, "justification": "first",
                                            "public_key": self.peer.public_key_b64}]
        self.registry.consented.add(PEER)  # its relayed request was its consent
        answer = self.successResultOf(self.trust.request(PEER, "me too"))
        self.assertEqual(answer, {"status": "approved", "node_id": PEER, "mutual": True})
        self.assertNotIn(("request_handshake", None), self.registry.kinds())
        self.assertEqual(self.courier.sent, [(PEER, handshake.ACCEPT)])

    def test_asking_a_trusted_node_says_so(self):
        self.trust.state.trust(PEER, "", NOW, mutual=True)
        self.assertEqual(self.successResultOf(self.trust.request(PEER)),
                         {"status": "trusted", "node_id": PEER, "mutual": True})
        self.assertEqual(self.courier.sent, [])

    def test_approving_when_the_registry_holds_both_consents_is_mutual_on_this_side_too(self):
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.registry.consented.add(PEER)
        self.assertEqual(self.successResultOf(self.trust.approve(PEER)),
                         {"status": "approved", "node_id": PEER, "mutual": True})
        self.assertTrue(self.trust.trusted()["trusted"][0]["mutual"])

    def test_approving_nothing_is_an_error_not_a_false_success(self):
        failure = self.failureResultOf(self.trust.approve(PEER), PilotError)
        self.assertEqual(failure.value.code, NOT_FOUND)
        self.assertIn("pilotctl pending", failure.value.hint)
        self.assertEqual(self.trust.trusted()["trusted"], [])

    def test_a_direct_request_gives_our_consent_to_the_registry(self):
        self.successResultOf(self.trust.request(PEER))
        self.assertIn(("report_trust", None), self.registry.kinds())

    def test_a_silent_direct_path_is_overtaken_by_the_relay_after_the_head_start(self):
        self.courier.reachable = None
        requesting = self.trust.request(PEER, "hi")
        self.assertNoResult(requesting)
        self.assertNotIn(("request_handshake", None), self.registry.kinds())
        self.clock.advance(RELAY_HEAD_START)
        self.assertEqual(self.successResultOf(requesting), {"status": "sent", "node_id": PEER, "path": "relay"})
        self.assertEqual(self.courier.cancelled, [(PEER, handshake.REQUEST)])
        self.assertNotIn(("report_trust", None), self.registry.kinds())  # the relayed request carried it

    def test_a_refusal_withdraws_the_consent_our_request_gave(self):
        self.successResultOf(self.trust.request(PEER))
        self.successResultOf(self.trust.received(self.from_peer(handshake.REJECT, reason="no")))
        self.assertEqual(self.trust.state.outgoing, set())
        self.assertIn(("revoke_trust", None), self.registry.kinds())


class ByNameTests(TrustCase):
    """Asking a private node by its hostname: relayed, and its answer recognised once the name resolves."""

    def test_the_request_goes_to_the_registry_as_a_name(self):
        self.assertEqual(self.successResultOf(self.trust.request_by_name("gamma", "hi")),
                         {"status": "sent", "hostname": "gamma", "path": "relay"})
        [sent] = [r for r in self.registry.signed_requests if r["type"] == "request_handshake_by_name"]
        self.assertEqual((sent["from_node_id"], sent["to_hostname"], sent["justification"]), (ME, "gamma", "hi"))
        self.assertEqual(self.courier.sent, [])

    def test_the_holders_accept_is_taken_once_the_name_resolves_to_it(self):
        self.successResultOf(self.trust.request_by_name("gamma"))
        self.registry.visible_names["gamma"] = PEER  # both consented: the registry shows us the name
        self.registry.inbox["responses"] = [{"from_node_id": PEER, "accept": True, "timestamp": NOW}]
        self.clock.advance(FAST_POLL_INTERVAL)  # polled fast while the name is unanswered
        [peer] = self.trust.trusted()["trusted"]
        self.assertEqual((peer["node_id"], peer["mutual"]), (PEER, True))
        self.assertEqual(self.trust.unsolicited, 0)

    def test_an_accept_from_a_node_not_holding_the_name_is_unsolicited(self):
        self.successResultOf(self.trust.request_by_name("gamma"))
        self.successResultOf(self.trust.received(self.from_peer(handshake.ACCEPT)))  # gamma stays hidden
        self.assertEqual((self.trust.trusted()["trusted"], self.trust.unsolicited), ([], 1))

    def test_a_stranger_costs_the_registry_one_check_per_name_not_one_per_message(self):
        for number in range(3):
            self.successResultOf(self.trust.request_by_name(f"name-{number}"))
        resolving = []
        original = self.registry.request
        self.registry.request = lambda request: resolving.append(request) or original(request)
        for _ in range(5):
            self.successResultOf(self.trust.received(self.from_peer(handshake.ACCEPT, justification="")))
            self.clock.advance(1)
        self.assertEqual([r["type"] for r in resolving], ["resolve_hostname"] * 3)
        self.assertEqual(self.trust.unsolicited, 5)

    def test_the_holder_asking_back_is_mutual(self):
        self.successResultOf(self.trust.request_by_name("gamma"))
        self.registry.visible_names["gamma"] = PEER
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.assertTrue(self.trust.trusted()["trusted"][0]["mutual"])
        self.assertEqual(self.trust.state.pending, {})

    def test_bad_names_and_registries_without_the_relay_by_name(self):
        for name in ("", "Not_A_Name", "x" * 64):
            self.assertEqual(self.failureResultOf(self.trust.request_by_name(name), PilotError).value.code,
                             INVALID_ARGUMENT)
        self.registry.fail["request_handshake_by_name"] = PilotError(
            'unknown message type: "request_handshake_by_name"')
        failure = self.failureResultOf(self.trust.request_by_name("gamma"), PilotError)
        self.assertIn("pilotctl handshake <node_id>", failure.value.hint)

    def test_asked_names_are_bounded(self):
        for number in range(MAX_NAMES + 10):
            self.successResultOf(self.trust.request_by_name(f"node-{number}"))
        self.assertEqual(len(self.trust.asked_names), MAX_NAMES)
        self.assertNotIn("node-0", self.trust.asked_names)


class StateFileTests(SynchronousTestCase):
    def test_the_reference_format_and_a_go_file(self):
        path = Path(self.mktemp())
        state = TrustState(path)
        state.trust(6, "a2V5", NOW, mutual=True)
        state.add_pending(7, "", "why", NOW)
        document = json.loads(path.read_text())
        self.assertEqual(document["trusted"], [{"node_id": 6, "public_key": "a2V5",
                                                "approved_at": "2023-11-14T22:13:20Z", "mutual": True}])
        self.assertEqual(document["pending"], [{"node_id": 7, "justification": "why",
                                                "received_at": "2023-11-14T22:13:20Z"}])
        path.write_text(json.dumps({"trusted": [{"node_id": 9, "public_key": b64encode(b"k" * 32),
                                                 "approved_at": "2023-11-14T22:13:20.123456789Z",
                                                 "mutual": False, "network": 2}]}))
        loaded = TrustState.load(path)
        self.assertEqual((loaded.trusted[9].network, int(loaded.trusted[9].approved_at)), (2, NOW))

    def test_a_damaged_file_is_set_aside(self):
        path = Path(self.mktemp())
        path.write_text("{not json")
        self.assertEqual(TrustState.load(path).trusted, {})
        self.assertTrue(path.with_name("trust.json.damaged").exists() or Path(str(path) + ".damaged").exists())

    def test_pending_is_bounded(self):
        state = TrustState()
        for node in range(MAX_PENDING):
            self.assertTrue(state.add_pending(node + 10, "", "", NOW))
        self.assertFalse(state.add_pending(1, "", "", NOW))


class TunnelKeyGateTests(TrustCase):
    """The gate against a real :class:`Tunnel`: who keyed the session, not what the registry says now."""

    def test_a_session_keyed_by_another_key_is_not_trusted_when_the_registry_shows_the_trusted_one(self):
        self.successResultOf(self.trust.received(self.from_peer(handshake.REQUEST)))
        self.successResultOf(self.trust.approve(PEER))
        network, registry_keys, mallory = DatagramNetwork(), StaticKeys(), Identity.generate()
        admitted = []
        ours = Tunnel(identity=Identity.generate(), key_pair=TunnelKeyPair.generate(), peer_keys=registry_keys,
                      clock=self.clock, on_packet=lambda packet, peer: admitted.append(self.trust.admit(packet)))
        ours.node_id = ME
        network.attach(ours, OUR_ADDR)
        self.trust.tunnel_key = ours.verified_key
        self.trust.peer_keys = registry_keys
        # Mallory holds PEER's registration for a moment and keys a session with us...
        registry_keys.keys[PEER] = mallory.public_key
        her_key_pair = TunnelKeyPair.generate()
        ours.datagramReceived(
            build_auth_key_offer(mallory, PEER, her_key_pair).encode(), HER_ADDR)
        self.assertEqual(ours.verified_key(PEER), mallory.public_key)
        # ...then the registry holds the trusted peer's key again (and our cache follows).
        registry_keys.keys[PEER] = self.peer.public_key
        session = TunnelSession.with_peer(her_key_pair, PEER, ours.key_pair.public_key)
        packet = Packet(PROTO_STREAM, Addr(0, PEER), Addr(0, ME), 49152, 7, flags=FLAG_SYN).encode()
        ours.datagramReceived(session.seal(packet), HER_ADDR)
        self.assertEqual(admitted, [False])
        self.assertEqual(self.trust.key_mismatches, 1)
