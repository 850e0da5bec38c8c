"""Trust with real processes: private daemons, handshakes through the registry relay, the data-plane gate.

Every daemon here is private (the default) unless a test says otherwise, so a
node's endpoint is hidden until both sides consented, and a private daemon
drops SYNs and datagrams from peers it does not trust.
"""

import os
import time

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from pilotnet.crypto.identity import Identity
from pilotnet.daemon.handshake import PORT
from pilotnet.errors import PilotError
from pilotnet.registry.client import connect_registry
from pilotnet.wire import handshake
from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, pause, wait_until

# Relayed handshakes must complete well before the next heartbeat (60 s) would
# pick them up; the bound leaves room for a loaded machine.
RELAY_DEADLINE = 30.0


def run(test):
    def wrapper(self):
        return ensureDeferred(test(self))

    wrapper.__name__ = test.__name__
    return wrapper


class TrustTests(PilotctlMixin, TestCase):
    timeout = 120

    async def start(self, *names, public=(), extra=()):
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        daemons = []
        for name in names:
            daemon = DaemonProcess(self, os.path.join(base, name), self.rendezvous, *extra, hostname=name,
                                   public=name in public)
            daemons.append(await daemon.start())
        return daemons

    async def trusted(self, daemon):
        return {peer["node_id"]: peer for peer in (await self.ok(daemon, "trust"))["trusted"]}

    async def trust_info(self, daemon):
        return (await daemon.query_info())["trust"]

    @run
    async def test_private_nodes_handshake_approve_use_and_revoke(self):
        alpha, beta = await self.start("alpha", "beta")
        # Before trust: no ping, no connection, no hostname, either way.
        for source, target in ((alpha, beta), (beta, alpha)):
            refused = await self.on(source, "ping", target.address, "--count", "1", "--timeout", "3s", "--json")
            self.assertNotEqual(refused.code, 0, refused)
        missing = await self.on(alpha, "find", "beta", "--json")
        self.assertEqual(missing.error()["code"], "not_found")

        # alpha asks (relayed: beta is private), beta sees it, approves; alpha learns within seconds.
        human = await self.on(alpha, "handshake", str(beta.node_id), "we", "should", "talk")
        self.assertEqual(human.code, 0, human)
        self.assertIn(f"handshake request sent to node {beta.node_id}", human.stdout)
        pending = await self.ok(beta, "pending")
        [request] = pending["pending"]
        self.assertEqual((request["node_id"], request["justification"]), (alpha.node_id, "we should talk"))
        listing = await self.on(beta, "pending")
        self.assertIn("we should talk", listing.stdout)
        approved = await self.ok(beta, "approve", str(alpha.node_id))
        self.assertEqual(approved, {"status": "approved", "node_id": alpha.node_id})

        async def alpha_trusts_beta():
            return beta.node_id in await self.trusted(alpha)

        await wait_until(alpha_trusts_beta, "alpha to learn of the approval", timeout=RELAY_DEADLINE)
        self.assertTrue((await self.trusted(alpha))[beta.node_id]["mutual"])
        self.assertFalse((await self.trusted(beta))[alpha.node_id]["mutual"])
        self.assertEqual((await self.ok(beta, "pending"))["pending"], [])

        # Now both directions work, and the hostname resolves for the trusted peer.
        for source, target in ((alpha, beta), (beta, alpha)):
            ping = await self.ok(source, "ping", target.address, "--count", "1", "--timeout", "10s")
            self.assertIn("rtt_ms", ping["results"][0], ping)
        found = await self.ok(alpha, "find", "beta")
        self.assertEqual(found["node_id"], beta.node_id)

        # An open connection is cut by beta's revoke, on both sides, and new ones are refused.
        beta_sdk = await beta.connect()
        listener = await beta_sdk.listen(1000)
        alpha_sdk = await alpha.connect()
        stream = await alpha_sdk.dial(beta.address, 1000, timeout=10)
        accepted = await listener.accept()
        await stream.write(b"hello")
        self.assertEqual(await accepted.read(), b"hello")
        revoked = await self.on(beta, "untrust", str(alpha.node_id))
        self.assertEqual(revoked.code, 0, revoked)
        with self.assertRaises(PilotError) as cut:  # reset, at once
            await stream.read()
        self.assertIn("reset", cut.exception.message)
        self.assertEqual(await self.trusted(beta), {})

        async def alpha_forgot_beta():
            return await self.trusted(alpha) == {}

        await wait_until(alpha_forgot_beta, "alpha to hear of the revocation", timeout=RELAY_DEADLINE)
        refused = await self.on(alpha, "ping", beta.address, "--count", "1", "--timeout", "3s", "--json")
        self.assertNotEqual(refused.code, 0, refused)
        again = await self.on(beta, "untrust", str(alpha.node_id), "--json")
        self.assertEqual(again.error()["code"], "connection_failed")
        self.assertIn(f"trust: trust.revoked node {alpha.node_id}", beta.output)
        self.assertIn(f"trust: trust.revoked_by_peer node {beta.node_id}", alpha.output)

    @run
    async def test_mutual_relayed_requests_approve_themselves_within_seconds(self):
        alpha, beta = await self.start("alpha", "beta")
        await self.ok(alpha, "handshake", str(beta.node_id), "hello")
        await self.ok(beta, "handshake", str(alpha.node_id), "hello back")

        async def both_trust():
            return beta.node_id in await self.trusted(alpha) and alpha.node_id in await self.trusted(beta)

        await wait_until(both_trust, "the mutual handshake", timeout=RELAY_DEADLINE)
        self.assertTrue((await self.trusted(alpha))[beta.node_id]["mutual"])
        self.assertTrue((await self.trusted(beta))[alpha.node_id]["mutual"])
        ping = await self.ok(beta, "ping", "alpha", "--count", "1", "--timeout", "10s")
        self.assertIn("rtt_ms", ping["results"][0], ping)
        # trust.json survives a restart, and is re-reported to the registry.
        await alpha.stop()
        await alpha.start()
        self.assertIn(beta.node_id, await self.trusted(alpha))
        ping = await self.ok(alpha, "ping", "beta", "--count", "1", "--timeout", "10s")
        self.assertIn("rtt_ms", ping["results"][0], ping)

    @run
    async def test_gate_and_forged_messages_are_refused_and_counted(self):
        """A public node and a private one: the private drops what the untrusted public one sends;
        the public node's port 444 refuses every forged message and creates no trust."""
        private, public = await self.start("private", "public", public=("public",))
        # The private node reaches the public one, so the public one now knows its endpoint.
        ping = await self.ok(private, "ping", public.address, "--count", "1", "--timeout", "10s")
        self.assertIn("rtt_ms", ping["results"][0], ping)
        public_sdk = await public.connect()
        private_sdk = await private.connect()
        await private_sdk.listen(1000)
        with self.assertRaises(Exception):
            await public_sdk.dial(private.address, 7, timeout=3)
        await public_sdk.send_datagram(private.address, 1000, b"let me in")
        refused = await wait_until(
            lambda: self._refused(private), "the private node to count the refused SYN and datagram")
        self.assertGreaterEqual(refused["refused_syns"], 1)

        # Forged port-444 messages, sent over real streams from the private node to the public one.
        identity = Identity.load(os.path.join(private.home, "identity.json"))
        other = Identity.generate()
        other_id = await self.register(other)
        now = int(time.time())  # message timestamps are Unix seconds, like the daemon's clock
        me, them = private.node_id, public.node_id
        good = handshake.build_message(handshake.REQUEST, identity, me, them, now, justification="hi")
        forged = good._replace(signature=other.sign(handshake.challenge(me, them)))
        stale = handshake.build_message(handshake.REQUEST, identity, me, them, now - 3600)
        impostor = handshake.build_message(handshake.REQUEST, other, other_id, them, now)
        for message in (forged, stale, impostor, good, good):
            await self.send_raw(private_sdk, public.address, handshake.encode_message(message))

        async def counted():
            refused = (await self.trust_info(public))["refused_messages"]
            return refused if refused["replayed"] >= 1 else None

        refused = await wait_until(counted, "the public node to refuse the forgeries")
        self.assertEqual((refused["bad_signature"], refused["stale"], refused["wrong_sender"], refused["replayed"]),
                         (1, 1, 1, 1))
        self.assertEqual(await self.trusted(public), {})
        self.assertEqual([r["node_id"] for r in (await self.ok(public, "pending"))["pending"]], [me])
        self.assertEqual(await self.trusted(private), {})

    @run
    async def test_a_new_key_under_a_trusted_node_id_is_refused(self):
        """The owner takeover, with the unsafe recovery switched on: Mallory registers a new key
        with beta's owner string once beta is gone and gets beta's node ID; alpha, which trusted
        beta, refuses her all the same (trust is bound to beta's key)."""
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(
            self, os.path.join(base, "rendezvous"), "--allow-owner-recovery", "--stale-after", "4").start()
        fast = ("--keepalive", "1")
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), self.rendezvous, *fast,
                                    hostname="alpha", public=False).start()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous, *fast,
                                   "--owner", "beta@example.com", hostname="beta", public=False).start()
        await self.ok(alpha, "handshake", str(beta.node_id), "hello")
        await self.ok(beta, "handshake", str(alpha.node_id), "hello back")

        async def both_trust():
            return beta.node_id in await self.trusted(alpha) and alpha.node_id in await self.trusted(beta)

        await wait_until(both_trust, "the mutual handshake", timeout=RELAY_DEADLINE)
        await beta.stop()

        async def beta_reaped():
            from twisted.internet import reactor
            registry = await connect_registry(reactor, self.rendezvous.registry_endpoint)
            try:
                await registry.request({"type": "lookup", "node_id": beta.node_id})
            except PilotError:
                return True
            finally:
                registry.close()
            return False

        await wait_until(beta_reaped, "the registry to reap beta", timeout=30)
        mallory = await DaemonProcess(self, os.path.join(base, "mallory"), self.rendezvous, *fast,
                                      "--owner", "beta@example.com", public=False).start()
        self.assertEqual(mallory.node_id, beta.node_id)  # the registry handed her beta's ID
        refused = await self.on(mallory, "ping", alpha.address, "--count", "2", "--timeout", "3s", "--json")
        self.assertNotEqual(refused.code, 0, refused)
        self.assertGreaterEqual((await self.trust_info(alpha))["key_mismatches"], 1)

    async def _refused(self, daemon):
        trust = await self.trust_info(daemon)
        return trust if trust["refused_syns"] >= 1 and trust["refused_datagrams"] >= 1 else None

    async def send_raw(self, sdk, address, data):
        stream = await sdk.dial(address, PORT, timeout=10)
        await stream.write(data)
        await stream.close()
        await pause(0.2)

    async def register(self, identity):
        from twisted.internet import reactor
        registry = await connect_registry(reactor, self.rendezvous.registry_endpoint)
        try:
            reply = await registry.request({"type": "register", "public_key": identity.public_key_b64,
                                            "listen_addr": "127.0.0.1:9"})
        finally:
            registry.close()
        return reply["node_id"]
