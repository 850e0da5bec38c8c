"""The daemon's emitter on a Clock: disabled costs nothing, the payload's shape, the secret file, the counters."""

import os
from pathlib import Path

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.webhooks.emitter import WebhookEmitter
from pilotnet.webhooks.targets import TargetRefused
from pilotnet.wire.address import Addr


class EmitterTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_765_000_000.25)
        self.home = Path(self.mktemp())
        self.home.mkdir()
        self.sent = []
        self.emitter = WebhookEmitter(self.clock, self.home / "webhook.secret", lambda: 42, send=self.send)

    def send(self, payload):
        self.sent.append(payload)
        return defer.succeed(None)

    def test_without_a_url_events_go_nowhere(self):
        self.emitter.emit("conn.fin", conn_id=1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.emitter.stats()["enabled"])
        self.assertFalse((self.home / "webhook.secret").exists())

    def test_the_payload_is_the_references_and_the_secret_is_private(self):
        self.emitter.set_url("https://hooks.example.com/pilot")
        self.emitter.emit("data.datagram", src_addr=Addr(0, 7), size=3)
        self.emitter.emit("node.deregistered")
        self.clock.advance(0)
        self.assertEqual(len(self.sent), 2)
        first, second = self.sent
        self.assertEqual((first["event"], first["event_id"], first["node_id"]), ("data.datagram", 1, 42))
        self.assertEqual(second["data"], None)
        self.assertEqual(os.stat(self.home / "webhook.secret").st_mode & 0o777, 0o600)
        self.assertEqual(len((self.home / "webhook.secret").read_text().strip()), 64)

    def test_refused_urls_leave_the_webhook_as_it_was(self):
        self.emitter.set_url("https://hooks.example.com/pilot")
        self.assertRaises(TargetRefused, self.emitter.set_url, "http://169.254.169.254/")
        self.assertEqual(self.emitter.stats()["url"], "https://hooks.example.com/pilot")

    def test_counters_cover_replaced_webhooks(self):
        self.emitter.set_url("https://one.example.com/")
        self.emitter.emit("a")
        self.clock.advance(0)
        self.emitter.set_url("https://two.example.com/")
        self.emitter.emit("b")
        self.clock.advance(0)
        stats = self.emitter.stats()
        self.assertEqual((stats["url"], stats["sent"], stats["enabled"]), ("https://two.example.com/", 2, True))
        self.successResultOf(self.emitter.clear())
        self.assertEqual((self.emitter.stats()["enabled"], self.emitter.stats()["sent"]), (False, 2))

