"""Delivery over real sockets: a twisted.web receiver and syslog listeners on 127.0.0.1 port 0."""

import json

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from pilotnet.errors import TIMEOUT, PilotError
from pilotnet.webhooks.http import HttpSender
from pilotnet.webhooks.signing import verify
from pilotnet.webhooks.syslog import SyslogSender
from pilotnet.webhooks.targets import check_url
from pilotnet.webhooks.webhook import Webhook
from tests.webhooks.receivers import HttpReceiver, SyslogReceiver

SECRET = "ab" * 32


def fixed_resolver(*addresses):
    """A resolver that answers every name with ``addresses`` (what a rebinding DNS server would do)."""
    return lambda _reactor, _host, _port: defer.succeed(list(addresses))


class HttpDeliveryTests(TestCase):
    def webhook(self, url, **options):
        options.setdefault("allow_private", True)
        webhook = Webhook(reactor, url, SECRET, backoff=0.05, **options)
        self.addCleanup(webhook.stop, 1.0)
        return webhook

    async def test_a_503_then_200_is_delivered_once_after_a_retry(self):
        receiver = HttpReceiver(self, statuses=[503])
        webhook = self.webhook(receiver.url)
        webhook.enqueue({"event": "node.registered", "event_id": 1})
        await receiver.wait_for(1)
        await webhook.stop(10)
        self.assertEqual(len(receiver.attempts), 2)
        self.assertEqual([r.json()["event_id"] for r in receiver.requests], [1])
        self.assertEqual((webhook.queue.sent, webhook.queue.retries, webhook.queue.failed), (1, 1, 0))

    async def test_a_400_is_not_retried(self):
        receiver = HttpReceiver(self, statuses=[400])
        webhook = self.webhook(receiver.url)
        webhook.enqueue({"event_id": 1})
        webhook.enqueue({"event_id": 2})
        await receiver.wait_for(1)
        await webhook.stop(10)
        self.assertEqual([r.json()["event_id"] for r in receiver.attempts], [1, 2])
        self.assertEqual((webhook.queue.sent, webhook.queue.failed, webhook.queue.retries), (1, 1, 0))
        self.assertIn("HTTP 400", webhook.queue.dead_letter_list()[0]["error"])

    async def test_overflow_is_dropped_and_counted(self):
        receiver = HttpReceiver(self)
        webhook = self.webhook(receiver.url, queue_size=2)
        accepted = [webhook.enqueue({"event_id": n}) for n in range(1, 6)]
        self.assertEqual(accepted, [True, True, False, False, False])
        await webhook.stop(10)
        self.assertEqual([r.json()["event_id"] for r in receiver.requests], [1, 2])
        self.assertEqual((webhook.stats()["sent"], webhook.stats()["dropped"]), (2, 3))

    async def test_the_signature_verifies_at_the_receiver(self):
        receiver = HttpReceiver(self)
        webhook = self.webhook(receiver.url)
        webhook.enqueue({"event": "trust.revoked", "event_id": 7, "data": {"peer_node_id": 3}})
        await receiver.wait_for(1)
        [request] = receiver.requests
        self.assertEqual(request.headers["content-type"], "application/json")
        self.assertTrue(verify(SECRET, request.headers["x-pilot-timestamp"], request.headers["x-pilot-signature"],
                               request.body, now=reactor.seconds()))
        self.assertFalse(verify("cd" * 32, request.headers["x-pilot-timestamp"],
                                request.headers["x-pilot-signature"], request.body, now=reactor.seconds()))

    async def test_a_receiver_that_is_down_fills_the_dead_letters(self):
        receiver = HttpReceiver(self)
        url = receiver.url
        await receiver.port.stopListening()
        webhook = self.webhook(url, attempts=2)
        for event_id in (1, 2):
            webhook.enqueue({"event_id": event_id})
        await webhook.stop(10)
        self.assertEqual([d["payload"]["event_id"] for d in webhook.queue.dead_letter_list()], [1, 2])
        self.assertEqual(webhook.queue.failed, 2)

    async def test_a_name_that_resolves_to_a_refused_address_is_not_connected_to(self):
        """DNS rebinding: the URL passed the set-time check, its resolution does not."""
        receiver = HttpReceiver(self)
        port = receiver.port.getHost().port
        webhook = self.webhook(f"http://hooks.example.com:{port}/hook", allow_private=False,
                               resolver=fixed_resolver("127.0.0.1"))
        webhook.enqueue({"event_id": 1})
        await webhook.stop(10)
        self.assertEqual(receiver.attempts, [])
        [letter] = webhook.queue.dead_letter_list()
        self.assertIn("refused address", letter["error"])
        self.assertEqual(letter["attempts"], 1)

    async def test_a_name_resolving_to_an_allowed_address_is_delivered_to_that_address(self):
        receiver = HttpReceiver(self)
        port = receiver.port.getHost().port
        webhook = self.webhook(f"http://hooks.example.com:{port}/hook", resolver=fixed_resolver("127.0.0.1"))
        webhook.enqueue({"event_id": 1})
        await receiver.wait_for(1)
        self.assertEqual(receiver.requests[0].headers["host"], f"hooks.example.com:{port}")


class SyslogDeliveryTests(TestCase):
    async def check(self, transport):
        receiver = SyslogReceiver(self, transport)
        host, port = receiver.address.split(":")
        sender = SyslogSender(reactor, host, int(port), transport, lambda payload: json.dumps(payload).encode(),
                              allow_private=True)
        self.addCleanup(sender.close)
        await sender({"n": 1})
        await sender({"n": 2})
        await receiver.wait_for(2)
        self.assertEqual([json.loads(m) for m in receiver.messages], [{"n": 1}, {"n": 2}])

    async def test_udp(self):
        await self.check("udp")

    async def test_tcp(self):
        await self.check("tcp")

    async def test_refused_addresses_are_not_sent_to(self):
        sender = SyslogSender(reactor, "169.254.169.254", 514, "udp", lambda payload: b"x", allow_private=True)
        with self.assertRaises(Exception) as caught:
            await sender({})
        self.assertIn("refused", str(caught.exception))


class TimeoutTests(TestCase):
    async def test_a_receiver_that_never_answers_times_out_and_is_retried(self):
        silent = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        webhook = Webhook(reactor, f"http://127.0.0.1:{silent.getHost().port}/", SECRET, allow_private=True,
                          backoff=0.05, attempts=2, timeout=0.2)
        webhook.enqueue({"event_id": 1})
        await webhook.stop(10)
        [letter] = webhook.queue.dead_letter_list()
        self.assertEqual((letter["attempts"], letter["error"]), (2, "no answer within 0.2s"))
        self.assertEqual(webhook.queue.retries, 1)

    async def test_a_timed_out_delivery_fails_with_the_timeout_code(self):
        # The sender's default timeout once shadowed the error code it fails with.
        silent = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        target = check_url(f"http://127.0.0.1:{silent.getHost().port}/", allow_private=True)
        sender = HttpSender(reactor, target, lambda payload: (b"{}", {}), allow_private=True, timeout=0.2)
        with self.assertRaises(PilotError) as caught:
            await sender({})
        self.assertEqual(caught.exception.code, TIMEOUT)
