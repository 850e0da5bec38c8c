"""Daemon webhooks with real processes: each event reaches a real HTTP receiver once, with its fields.

``beta`` posts its events to a twisted.web receiver this test runs on
127.0.0.1; ``alpha`` does things to it with the real ``pilotctl`` and the SDK.
"""

import os
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from pilotnet.registry.client import RegistryError, connect_registry
from pilotnet.webhooks.signing import verify
from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, wait_until
from tests.webhooks.receivers import HttpReceiver

IDLE_TIMEOUT = 4


class DaemonWebhookTests(PilotctlMixin, TestCase):
    timeout = 240

    async def start(self, receiver, *beta_extra):
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), self.rendezvous, hostname="alpha").start()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous, "--webhook", receiver.url,
                                   "--webhook-allow-private", *beta_extra, hostname="beta").start()
        return alpha, beta

    def events(self, receiver, name):
        return [request.json() for request in receiver.requests if request.json()["event"] == name]

    async def event(self, receiver, name, count=1):
        """The ``count``-th ``name`` event, once it arrived."""
        await wait_until(lambda: len(self.events(receiver, name)) >= count, f"webhook event {name}", timeout=40)
        return self.events(receiver, name)[count - 1]

    async def test_each_event_arrives_once_with_its_fields(self):
        receiver = HttpReceiver(self)
        alpha, beta = await self.start(receiver, "--idle-timeout", str(IDLE_TIMEOUT))
        registered = await self.event(receiver, "node.registered")
        self.assertEqual(registered["node_id"], beta.node_id)
        self.assertEqual(registered["data"]["address"], beta.address)
        self.assertIn("127.0.0.1:", registered["data"]["endpoint"])
        self.assertTrue(registered["timestamp"].endswith("Z"))

        # Every request is signed with the secret in beta's home.
        secret = (Path(beta.home) / "webhook.secret").read_text().strip()
        self.assertEqual(os.stat(Path(beta.home) / "webhook.secret").st_mode & 0o777, 0o600)
        first = receiver.requests[0]
        self.assertTrue(verify(secret, first.headers["x-pilot-timestamp"], first.headers["x-pilot-signature"],
                               first.body, now=reactor.seconds()))

        # A ping: a tunnel, then per probe a connection to the echo port, closed by alpha.
        pinged = await self.on(alpha, "ping", beta.address, "--count", "1", "--json")
        self.assertEqual(pinged.code, 0, pinged)
        added = await self.event(receiver, "tunnel.peer_added")
        self.assertEqual(added["data"]["peer_node_id"], alpha.node_id)
        self.assertIn("127.0.0.1", added["data"]["endpoint"])
        keyed = await self.event(receiver, "tunnel.established")
        self.assertEqual((keyed["data"]["peer_node_id"], keyed["data"]["authenticated"]), (alpha.node_id, True))
        self.assertEqual(set(keyed["data"]), {"peer_node_id", "authenticated", "relay", "rekeyed"})
        syn = await self.event(receiver, "conn.syn_received")
        self.assertEqual(set(syn["data"]), {"src_addr", "src_port", "dst_port", "conn_id"})
        self.assertEqual((syn["data"]["src_addr"], syn["data"]["dst_port"]), (alpha.address, 7))
        established = await self.event(receiver, "conn.established")
        self.assertEqual(established["data"]["conn_id"], syn["data"]["conn_id"])
        fin = await self.event(receiver, "conn.fin")
        self.assertEqual(fin["data"], {"remote_addr": alpha.address, "remote_port": syn["data"]["src_port"],
                                       "local_port": 7, "conn_id": syn["data"]["conn_id"]})

        # Data exchange: a message and a file.
        await self.ok(alpha, "send-message", beta.address, "--data", "hello")
        message = await self.event(receiver, "message.received")
        self.assertEqual(message["data"], {"type": "TEXT", "size": 5, "from": alpha.address})
        source = Path(self.mktemp())
        source.mkdir()
        (source / "notes.txt").write_bytes(b"x" * 1000)
        await self.ok(alpha, "send-file", beta.address, str(source / "notes.txt"))
        saved = await self.event(receiver, "file.received")
        self.assertEqual(saved["data"]["size"], 1000)
        self.assertTrue(saved["data"]["filename"].startswith("notes-"))
        self.assertEqual(Path(saved["data"]["path"]).read_bytes(), b"x" * 1000)

        # The event stream on port 1002: a subscription, a publication, the end of the subscription.
        await self.ok(alpha, "publish", beta.address, "metrics.cpu", "--data", "42")
        subscribed = await self.event(receiver, "pubsub.subscribed")
        self.assertEqual(subscribed["data"]["remote"], alpha.address)
        published = await self.event(receiver, "pubsub.published")
        self.assertEqual((published["data"]["topic"], published["data"]["from"]), ("metrics.cpu", alpha.address))
        self.assertGreater(published["data"]["size"], 0)
        unsubscribed = await self.event(receiver, "pubsub.unsubscribed")
        self.assertEqual(unsubscribed["data"]["remote"], alpha.address)

        # A datagram to a port a client of beta bound.
        beta_client = await beta.connect()
        listener = await beta_client.listen(5000)
        alpha_client = await alpha.connect()
        await alpha_client.send_datagram(beta.address, 5000, b"ping!")
        await listener.receive_datagram()
        datagram = await self.event(receiver, "data.datagram")
        self.assertEqual(datagram["data"], {"src_addr": alpha.address, "src_port": datagram["data"]["src_port"],
                                            "dst_port": 5000, "size": 5})

        # A connection left idle is closed by beta's idle timeout.
        idle = await alpha_client.dial(beta.address, 5000)
        await listener.accept()
        await wait_until(lambda: [e for e in self.events(receiver, "conn.idle_timeout")
                                  if e["data"]["local_port"] == 5000], "the idle connection's timeout", timeout=40)
        [idled] = [e for e in self.events(receiver, "conn.idle_timeout") if e["data"]["local_port"] == 5000]
        self.assertEqual(idled["data"]["remote_addr"], alpha.address)
        del idle

        # Trust: a direct request is received and left pending, approved, then revoked by the peer
        # (which resets the connection alpha has open to beta); a second request is rejected; beta's
        # own request is accepted, and beta revokes.
        await self.ok(alpha, "handshake", str(beta.node_id), "let us talk")
        received = await self.event(receiver, "handshake.received")
        self.assertEqual((received["data"]["peer_node_id"], received["data"]["justification"]),
                         (alpha.node_id, "let us talk"))
        pending = await self.event(receiver, "handshake.pending")
        self.assertEqual((pending["data"]["peer_node_id"], pending["data"]["justification"]),
                         (alpha.node_id, "let us talk"))
        await self.ok(beta, "approve", str(alpha.node_id))
        approved = await self.event(receiver, "handshake.approved")
        self.assertEqual(approved["data"]["peer_node_id"], alpha.node_id)
        await alpha_client.dial(beta.address, 5000)
        await listener.accept()
        await self.ok(alpha, "untrust", str(beta.node_id))
        reset = await self.event(receiver, "conn.rst")
        self.assertEqual((reset["data"]["remote_addr"], reset["data"]["local_port"]), (alpha.address, 5000))
        revoked_by_peer = await self.event(receiver, "trust.revoked_by_peer")
        self.assertEqual(revoked_by_peer["data"]["peer_node_id"], alpha.node_id)
        await self.ok(alpha, "handshake", str(beta.node_id), "again")
        await self.event(receiver, "handshake.pending", count=2)
        await self.ok(beta, "reject", str(alpha.node_id), "not", "now")
        rejected = await self.event(receiver, "handshake.rejected")
        self.assertEqual(rejected["data"]["peer_node_id"], alpha.node_id)
        self.assertEqual(rejected["data"]["reason"], "not now")
        await self.ok(beta, "handshake", str(alpha.node_id), "from beta")
        sent = await self.event(receiver, "handshake.sent")
        self.assertEqual(sent["data"]["peer_node_id"], alpha.node_id)

        async def accepted_by_alpha():
            # alpha approves it, unless it took it as the answer to its own request (auto-approved).
            if (await self.ok(alpha, "pending"))["pending"]:
                await self.ok(alpha, "approve", str(beta.node_id))
            return self.events(receiver, "handshake.accepted")

        await wait_until(accepted_by_alpha, "alpha to accept beta's request")
        accepted = await self.event(receiver, "handshake.accepted")
        self.assertEqual(accepted["data"]["peer_node_id"], alpha.node_id)
        await self.ok(beta, "untrust", str(alpha.node_id))
        revoked = await self.event(receiver, "trust.revoked")
        self.assertEqual(revoked["data"]["peer_node_id"], alpha.node_id)

        # The counters in info, then the last event on stop.
        info = await beta.query_info()
        self.assertTrue(info["webhook"]["enabled"])
        self.assertEqual(info["webhook"]["url"], receiver.url)
        self.assertEqual((info["webhook"]["failed"], info["webhook"]["dropped"]), (0, 0))
        self.assertGreater(info["webhook"]["sent"], 10)
        await beta.stop()
        deregistered = await self.event(receiver, "node.deregistered")
        self.assertNotIn("data", deregistered)

        # Once each: event IDs are unique and every delivered event arrived once; what happened once
        # was reported once.
        ids = [request.json()["event_id"] for request in receiver.requests]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(sorted(ids), list(range(1, len(ids) + 1)))
        for name in ("node.registered", "message.received", "file.received", "data.datagram",
                     "pubsub.subscribed", "pubsub.published", "pubsub.unsubscribed", "handshake.approved",
                     "handshake.rejected", "trust.revoked_by_peer", "trust.revoked", "node.deregistered"):
            self.assertEqual(len(self.events(receiver, name)), 1, name)
        # Once per connection (on a loaded machine other connections may idle out too).
        for name in ("conn.syn_received", "conn.established", "conn.fin", "conn.rst", "conn.idle_timeout"):
            conn_ids = [event["data"]["conn_id"] for event in self.events(receiver, name)]
            self.assertEqual(len(conn_ids), len(set(conn_ids)), name)

    async def test_a_registry_that_forgot_the_node_gets_it_back(self):
        receiver = HttpReceiver(self)
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous, "--webhook", receiver.url,
                                   "--webhook-allow-private", "--keepalive", "1", hostname="beta").start()
        await self.event(receiver, "node.registered")
        await self.rendezvous.stop()
        await self.rendezvous.start()  # no store: it knows nobody
        again = await self.event(receiver, "node.reregistered")
        self.assertEqual(again["data"], {"address": beta.address})
        self.assertEqual(len(self.events(receiver, "node.registered")), 1)

    async def test_set_and_clear_at_run_time_and_forbidden_targets(self):
        receiver = HttpReceiver(self)
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous, hostname="beta").start()
        for url in ("http://169.254.169.254/latest/meta-data/", "ftp://example.com/", receiver.url,
                    "http://metadata.google.internal/"):
            refused = await self.on(beta, "set-webhook", url, "--json")
            self.assertEqual(refused.code, 1, refused)
            self.assertEqual(refused.error()["code"], "invalid_argument", refused)
        info = await beta.query_info()
        self.assertFalse(info["webhook"]["enabled"])

        # With private targets allowed (a restart with the flag) the local receiver is accepted.
        await beta.stop()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous, "--webhook-allow-private",
                                   hostname="beta").start()
        state = await self.ok(beta, "set-webhook", receiver.url)
        self.assertEqual((state["webhook"], state["enabled"]), (receiver.url, True))
        self.assertEqual(state["secret_file"], str(Path(beta.home) / "webhook.secret"))
        self.assertEqual((await self.ok(beta, "config"))["webhook"], receiver.url)
        self.assertTrue((await beta.query_info())["webhook"]["enabled"])
        cleared = await self.ok(beta, "clear-webhook")
        self.assertFalse(cleared["enabled"])
        self.assertNotIn("webhook", await self.ok(beta, "config"))
        self.assertFalse((await beta.query_info())["webhook"]["enabled"])


class RegistryAuditTests(PilotctlMixin, TestCase):
    timeout = 120

    async def test_a_rendezvous_audits_posts_and_keeps_its_log_and_webhook_across_a_restart(self):
        receiver = HttpReceiver(self)
        base = self.mktemp()
        store = os.path.abspath(os.path.join(base, "registry.db"))
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous"), "--store", store,
                                             "--admin-token", "s3cret", "--webhooks-allow-private").start()
        self.assertEqual(os.stat(store).st_mode & 0o777, 0o600)
        admin = await self.admin_client(rendezvous)
        refused = await self.request(admin, {"type": "set_webhook", "url": "http://169.254.169.254/"})
        self.assertEqual((refused["type"], refused["code"]), ("error", "invalid_argument"))
        configured = await self.request(admin, {"type": "set_webhook", "url": receiver.url})
        self.assertTrue(configured["enabled"])

        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), rendezvous, hostname="alpha").start()
        await wait_until(lambda: any(r.json()["action"] == "node.registered" for r in receiver.requests),
                         "node.registered at the receiver", timeout=40)
        registered = [r.json() for r in receiver.requests if r.json()["action"] == "node.registered"][0]
        self.assertEqual(registered["node_id"], alpha.node_id)
        self.assertTrue(verify(configured["secret"], receiver.requests[0].headers["x-pilot-timestamp"],
                               receiver.requests[0].headers["x-pilot-signature"], receiver.requests[0].body,
                               now=reactor.seconds()))

        # Restarted on its store: the entries are still there and the webhook still delivers.
        await rendezvous.stop()
        await rendezvous.start()
        admin = await self.admin_client(rendezvous)
        log = await self.request(admin, {"type": "get_audit_log", "limit": 50})
        actions = [entry["action"] for entry in log["entries"]]
        self.assertIn("node.registered", actions)
        self.assertIn("webhook.configured", actions)
        before = len(receiver.requests)
        await self.ok(alpha, "set-hostname", "alpha-two")
        await wait_until(lambda: any(r.json()["action"] == "hostname.changed" for r in receiver.requests[before:]),
                         "hostname.changed after the restart", timeout=40)
        state = await self.request(admin, {"type": "get_webhook"})
        self.assertEqual((state["enabled"], state["url"], state["failed"]), (True, receiver.url, 0))

    async def admin_client(self, rendezvous):
        client = await connect_registry(reactor, rendezvous.registry_endpoint)
        self.addCleanup(client.transport.abortConnection)
        return client

    async def request(self, client, message):
        try:
            return await client.request({**message, "admin_token": "s3cret"})
        except RegistryError as error:
            return {"type": "error", "error": error.message, "code": error.code}
