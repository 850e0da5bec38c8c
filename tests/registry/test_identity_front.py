"""The identity webhook against a real HTTP receiver on 127.0.0.1: registrations and validate_token.

The registry server runs in process with its identity front; the webhook is a
twisted.web server answering scripted verdicts, and it checks the signature.
"""

import json

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.audit import AuditLog
from pilotnet.registry.framing import go_json
from pilotnet.registry.handlers import Registry
from pilotnet.registry.client import RegistryError, connect_registry
from pilotnet.registry.identity_service import PER_SOURCE_BURST, IdentityFront
from pilotnet.registry.server import RegistryFactory, RegistryServer
from pilotnet.webhooks.signing import verify
from tests.registry.fixtures import ADMIN_TOKEN, PEER, identity
from tests.webhooks.receivers import HttpReceiver

VERIFIED = json.dumps({"verified": True, "external_id": "alice@example.com"}).encode()
REFUSED = json.dumps({"verified": False, "error": "token expired"}).encode()


class IdentityWebhookTests(TestCase):
    timeout = 30

    def setUp(self):
        self.registry = Registry(admin_token=ADMIN_TOKEN, audit=AuditLog(allow_private_targets=True),
                                 register_limiter=RateLimiter(burst=100, window=60.0))
        self.server = RegistryServer(self.registry, reactor)
        self.front = IdentityFront(reactor, self.registry.identities, read_only=lambda: self.registry.read_only,
                                   allow_private=True, max_in_flight=2, timeout=0.5)
        self.server.fronts.update(self.front.fronts())

    async def ask(self, request, peer=PEER):
        return await self.server.answer(go_json(request), peer)

    async def configure(self, receiver):
        reply = await self.ask({"type": "set_idp_config", "idp_type": "webhook", "url": receiver.url,
                                "admin_token": ADMIN_TOKEN})
        return reply["secret"]

    def register(self, number, token=None):
        request = {"type": "register", "public_key": identity(number).public_key_b64, "listen_addr": "0.0.0.0:4000"}
        if token is not None:
            request["identity_token"] = token
        return self.ask(request)

    async def test_a_verified_token_registers_the_node_with_its_external_id(self):
        receiver = HttpReceiver(self, answers=[VERIFIED])
        secret = await self.configure(receiver)
        reply = await self.register(1, "token-of-alice")
        self.assertEqual((reply["type"], reply["external_id"]), ("register_ok", "alice@example.com"))
        posted = receiver.requests[0]
        self.assertEqual(posted.json(), {"token": "token-of-alice"})
        self.assertTrue(verify(secret, posted.headers["x-pilot-timestamp"], posted.headers["x-pilot-signature"],
                               posted.body, now=reactor.seconds()))
        held = await self.ask({"type": "get_identity", "node_id": reply["node_id"], "admin_token": ADMIN_TOKEN})
        self.assertEqual((held["external_id"], held["verified"]), ("alice@example.com", True))
        actions = [entry.action for entry in self.registry.audit.entries]
        self.assertEqual(actions[-2:], ["node.registered", "identity.external_id_set"])
        receiver.answers.append(VERIFIED)
        again = await self.register(1, "token-of-alice")  # the daemon registers again: nothing new to record
        self.assertEqual(again["external_id"], "alice@example.com")
        self.assertEqual([entry.action for entry in self.registry.audit.entries][-1], "node.re_registered")

    async def test_a_refused_token_refuses_the_registration(self):
        receiver = HttpReceiver(self, answers=[REFUSED])
        await self.configure(receiver)
        reply = await self.register(1, "stale")
        self.assertEqual(reply["type"], "error")
        self.assertIn("identity verification failed: token expired", reply["error"])
        self.assertEqual(self.registry.directory.nodes, {})

    async def test_a_webhook_that_cannot_answer_refuses_the_registration(self):
        receiver = HttpReceiver(self, statuses=[503])
        await self.configure(receiver)
        reply = await self.register(1, "t")
        self.assertEqual((reply["type"], reply["code"]), ("error", "connection_failed"))
        await receiver.port.stopListening()
        reply = await self.register(2, "t")
        self.assertIn("identity webhook unreachable", reply["error"])
        self.assertEqual(self.registry.directory.nodes, {})

    async def test_registrations_without_a_token_are_not_sent(self):
        receiver = HttpReceiver(self)
        await self.configure(receiver)
        reply = await self.register(1)
        self.assertEqual(reply["type"], "register_ok")
        self.assertNotIn("external_id", reply)
        self.assertEqual(receiver.attempts, [])

    async def test_validate_token(self):
        receiver = HttpReceiver(self, answers=[VERIFIED, REFUSED])
        await self.configure(receiver)
        valid = await self.ask({"type": "validate_token", "token": "a", "admin_token": ADMIN_TOKEN})
        self.assertEqual((valid["valid"], valid["external_id"]), (True, "alice@example.com"))
        invalid = await self.ask({"type": "validate_token", "token": "b", "admin_token": ADMIN_TOKEN})
        self.assertEqual((invalid["valid"], invalid["error"]), (False, "token expired"))
        stranger = await self.ask({"type": "validate_token", "token": "b", "admin_token": "guess"})
        self.assertEqual(stranger["error"], "invalid admin token")
        self.assertEqual(len(receiver.attempts), 2)

    async def test_a_flood_of_tokens_over_a_socket_is_refused_before_anything_is_sent(self):
        receiver = HttpReceiver(self, answers=[VERIFIED] * 30)
        await self.configure(receiver)
        port = reactor.listenTCP(0, RegistryFactory(self.server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = await connect_registry(reactor, f"tcp:127.0.0.1:{port.getHost().port}")
        self.addCleanup(client.transport.loseConnection)
        refused = []
        for number in range(1, 26):
            try:
                await client.request({"type": "register", "public_key": identity(number).public_key_b64,
                                      "listen_addr": "0.0.0.0:4000", "identity_token": "t"})
            except RegistryError as error:
                refused.append(error.message)
        self.assertEqual(len(refused), 25 - PER_SOURCE_BURST)
        self.assertIn("rate limited: too many identity tokens from 127.0.0.1", refused[0])
        self.assertEqual(len(receiver.attempts), PER_SOURCE_BURST)

    async def test_a_webhook_that_never_answers_holds_at_most_max_in_flight_registrations(self):
        silent = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        await self.ask({"type": "set_idp_config", "idp_type": "webhook", "admin_token": ADMIN_TOKEN,
                        "url": f"http://127.0.0.1:{silent.getHost().port}/verify"})
        waiting = [ensureDeferred(self.register(1, "t")), ensureDeferred(self.register(2, "t"))]
        busy = await self.register(3, "t")
        self.assertEqual(busy["code"], "connection_failed")
        self.assertIn("busy", busy["error"])
        for reply in [await pending for pending in waiting]:
            self.assertEqual((reply["code"], "no answer within 0.5s" in reply["error"]), ("connection_failed", True))
        self.assertEqual(self.registry.directory.nodes, {})

    async def test_the_identity_families_are_scraped(self):
        from prometheus_client import CollectorRegistry, generate_latest

        collectors = CollectorRegistry()
        self.front.register_metrics(collectors, self.registry.provisioning)
        receiver = HttpReceiver(self, answers=[VERIFIED, REFUSED])
        await self.configure(receiver)
        await self.register(1, "a")
        await self.register(2, "b")
        text = generate_latest(collectors).decode()
        self.assertIn("pilot_idp_configured 1.0", text)
        self.assertIn('pilot_idp_verifications_total{result="verified"} 1.0', text)
        self.assertIn('pilot_idp_verifications_total{result="refused"} 1.0', text)
        self.assertIn("pilot_directory_synced_networks 0.0", text)
