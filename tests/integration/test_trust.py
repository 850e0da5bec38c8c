"""Trust with real processes: private daemons, handshakes through the registry relay, the data-plane gate.

Every daemon here is private (the default) unless a test says otherwise, so a
node's endpoint is hidden until both sides consented, and a private daemon
drops SYNs and datagrams from peers it does not trust.
"""

import os
import signal
import time

from twisted.trial.unittest import TestCase

from pilotnet.crypto.identity import Identity
from pilotnet.daemon.handshake import PORT
from pilotnet.daemon.registry_link import KEY_REFETCH_AFTER
from pilotnet.errors import PilotError
from pilotnet.registry.challenges import sign_fresh_request
from pilotnet.registry.client import connect_registry
from pilotnet.registry.trust import MAX_INBOX
from pilotnet.wire import handshake
from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, pause, wait_until

# Relayed handshakes must complete well before the next heartbeat (60 s) would
# pick them up; the bound leaves room for a loaded machine.
RELAY_DEADLINE = 30.0


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
        self.assertEqual(approved, {"status": "approved", "node_id": alpha.node_id, "mutual": True})

        async def alpha_trusts_beta():
            return beta.node_id in await self.trusted(alpha)

        await wait_until(alpha_trusts_beta, "alpha to learn of the approval", timeout=RELAY_DEADLINE)
        # Both sides agree: mutual (the registry holds both consents, and said so to the approver).
        self.assertTrue((await self.trusted(alpha))[beta.node_id]["mutual"])
        self.assertTrue((await self.trusted(beta))[alpha.node_id]["mutual"])
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

    async def test_a_new_key_under_a_trusted_node_id_is_refused(self):
        """The owner takeover, with the unsafe recovery switched on: Mallory registers a new key
        with beta's owner string once beta is gone and gets beta's node ID; alpha, which trusted
        beta, refuses her all the same (trust is bound to beta's key)."""
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(
            self, os.path.join(base, "rendezvous"), "--allow-owner-recovery", "--offline-after", "2", "--stale-after", "4").start()
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
        from twisted.internet import reactor
        beta_key_fetched_by = reactor.seconds()  # alpha verified beta's PILA with it before trusting
        await beta.stop()

        async def beta_reaped():
            registry = await connect_registry(reactor, self.rendezvous.registry_endpoint)
            try:
                await registry.request({"type": "lookup", "node_id": beta.node_id})
            except PilotError:
                return True
            finally:
                registry.close()
            return False

        await wait_until(beta_reaped, "the registry to reap beta", timeout=30)
        # A PILA disagreeing with a key fetched within KEY_REFETCH_AFTER is refused by alpha's tunnel
        # without asking the registry (it is more likely forged).  A real takeover comes after
        # --stale-after, long past that; this registry reaps within seconds, so Mallory waits
        # until alpha asks the registry again and her key reaches the trust gate.
        await pause(max(0.0, beta_key_fetched_by + KEY_REFETCH_AFTER - reactor.seconds()))
        mallory = await DaemonProcess(self, os.path.join(base, "mallory"), self.rendezvous, *fast,
                                      "--owner", "beta@example.com", public=False).start()
        self.assertEqual(mallory.node_id, beta.node_id)  # the registry handed her beta's ID
        refused = await self.on(mallory, "ping", alpha.address, "--count", "2", "--timeout", "3s", "--json")
        self.assertNotEqual(refused.code, 0, refused)
        self.assertGreaterEqual((await self.trust_info(alpha))["key_mismatches"], 1)

    async def test_a_full_handshake_inbox_is_refused_with_its_code(self):
        """The registry refuses to relay into a full inbox: pilotctl exits 1 with ``refused``, not a bad argument."""
        from twisted.internet import reactor
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous"),
                                                  "--registrations-per-minute", "1000").start()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), self.rendezvous, hostname="alpha").start()
        target = await self.register(Identity.generate())  # private, and nobody polls its inbox
        registry = await connect_registry(reactor, self.rendezvous.registry_endpoint)
        try:
            for _ in range(MAX_INBOX):
                sender = Identity.generate()
                sender_id = (await registry.request({"type": "register", "public_key": sender.public_key_b64,
                                                     "listen_addr": "127.0.0.1:9"}))["node_id"]
                await registry.request(sign_fresh_request(sender, {
                    "type": "request_handshake", "from_node_id": sender_id, "to_node_id": target},
                    reactor.seconds()))
        finally:
            registry.close()
        refused = await self.on(alpha, "handshake", str(target), "hi", "--json")
        self.assertEqual(refused.code, 1, refused)
        self.assertEqual(refused.error()["code"], "refused")
        self.assertIn(f"handshake inbox full for node {target}", refused.error()["message"])

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


class TrustAnswerTests(PilotctlMixin, TestCase):
    """What a user is told: hints that lead somewhere, failures diagnosed fast, answers that match the state."""

    timeout = 120
    start = TrustTests.start
    trusted = TrustTests.trusted

    async def establish(self, alpha, beta):
        """Trust between two private nodes, the way a user gets it: ask, approve."""
        await self.ok(alpha, "handshake", str(beta.node_id), "hello")
        await self.ok(beta, "approve", str(alpha.node_id))

        async def alpha_trusts_beta():
            return beta.node_id in await self.trusted(alpha)

        await wait_until(alpha_trusts_beta, "alpha to learn of the approval", timeout=RELAY_DEADLINE)

    async def test_a_private_name_hint_leads_to_a_handshake_that_works(self):
        """find/ping of a private node's name advise a handshake by that name, and that handshake works:
        relayed by the registry to the name, approved, and then the name resolves."""
        alpha, gamma = await self.start("alpha", "gamma")
        hints = set()
        for command in (("find", "gamma"), ("ping", "gamma")):
            refused = await self.on(alpha, *command, "--json")
            self.assertEqual(refused.code, 1, refused)
            error = refused.error()
            self.assertEqual(error["code"], "not_found")
            hints.add(error["hint"])
        [hint] = hints
        self.assertIn('pilotctl handshake gamma "reason"', hint)
        # Follow the hint, exactly.
        human = await self.on(alpha, "handshake", "gamma", "reason")
        self.assertEqual(human.code, 0, human)
        self.assertIn('handshake request for "gamma" relayed by the registry', human.stdout)
        self.assertEqual([r["node_id"] for r in (await self.ok(gamma, "pending"))["pending"]], [alpha.node_id])
        self.assertEqual(await self.trusted(alpha), {})  # gamma's ID is still not known to alpha
        await self.ok(gamma, "approve", str(alpha.node_id))

        async def alpha_trusts_gamma():
            return gamma.node_id in await self.trusted(alpha)

        await wait_until(alpha_trusts_gamma, "alpha to learn gamma's approval", timeout=RELAY_DEADLINE)
        self.assertTrue((await self.trusted(alpha))[gamma.node_id]["mutual"])
        self.assertEqual((await self.ok(alpha, "find", "gamma"))["node_id"], gamma.node_id)
        ping = await self.ok(alpha, "ping", "gamma", "--count", "1", "--timeout", "10s")
        self.assertIn("rtt_ms", ping["results"][0], ping)

    async def test_missing_revoked_and_stopped_peers_are_named_within_five_seconds(self):
        alpha, beta = await self.start("alpha", "beta")
        await self.establish(alpha, beta)
        ping = await self.ok(alpha, "ping", "beta", "--count", "1", "--timeout", "10s")
        self.assertIn("rtt_ms", ping["results"][0], ping)

        # Each failure must be diagnosed before ping's own 5 s timeout (which would say "timeout").
        missing = await self.on(alpha, "ping", "4242", "--timeout", "5s", "--json")
        self.assertEqual((missing.code, missing.error()["code"]), (1, "not_found"), missing)

        await self.ok(beta, "untrust", str(alpha.node_id))
        revoked = await self.on(alpha, "ping", str(beta.node_id), "--timeout", "5s", "--json")
        self.assertEqual((revoked.code, revoked.error()["code"]), (1, "not_trusted"), revoked)
        self.assertIn(f"pilotctl handshake {beta.node_id}", revoked.error()["hint"])
        human = await self.on(alpha, "send-message", str(beta.node_id), "--data", "hi", timeout=8.0)
        self.assertEqual(human.code, 1, human)
        self.assertIn("pilotctl handshake", human.stderr)

        # Trust again, then beta's daemon stops: unreachable, for ping and for send-message.
        await self.establish(alpha, beta)
        ping = await self.ok(alpha, "ping", "beta", "--count", "1", "--timeout", "10s")
        self.assertIn("rtt_ms", ping["results"][0], ping)
        await beta.stop()
        stopped = await self.on(alpha, "ping", str(beta.node_id), "--count", "4", "--timeout", "5s", "--json")
        self.assertEqual((stopped.code, stopped.error()["code"]), (1, "unreachable"), stopped)
        self.assertIn(f"node {beta.node_id} is unreachable", stopped.error()["message"])
        # send-message has no --timeout: the bound is the process's, 5 s plus the interpreter's start-up.
        message = await self.on(alpha, "send-message", str(beta.node_id), "--data", "hi", "--json", timeout=8.0)
        self.assertEqual((message.code, message.error()["code"]), (1, "unreachable"), message)

    async def test_asking_back_says_it_approved_and_both_sides_agree_on_mutual(self):
        alpha, beta = await self.start("alpha", "beta")
        first = await self.ok(alpha, "handshake", str(beta.node_id), "first")
        self.assertEqual((first["status"], first["path"]), ("sent", "relay"))
        back = await self.on(beta, "handshake", str(alpha.node_id), "back")
        self.assertEqual(back.code, 0, back)
        self.assertIn(f"node {alpha.node_id} had already asked: request approved, trust established", back.stdout)
        self.assertNotIn("must approve", back.stdout)

        async def alpha_trusts_beta():
            return beta.node_id in await self.trusted(alpha)

        await wait_until(alpha_trusts_beta, "alpha to learn of the approval", timeout=RELAY_DEADLINE)
        self.assertTrue((await self.trusted(alpha))[beta.node_id]["mutual"])
        self.assertTrue((await self.trusted(beta))[alpha.node_id]["mutual"])

        # The ordinary flow: ask, approve; the approver's answer and both tables say mutual at once.
        gamma = await DaemonProcess(self, os.path.join(self.mktemp(), "gamma"), self.rendezvous,
                                    hostname="gamma", public=False).start()
        await self.ok(alpha, "handshake", str(gamma.node_id), "hi")
        approved = await self.ok(gamma, "approve", str(alpha.node_id))
        self.assertEqual(approved, {"status": "approved", "node_id": alpha.node_id, "mutual": True})

        async def alpha_trusts_gamma():
            return gamma.node_id in await self.trusted(alpha)

        await wait_until(alpha_trusts_gamma, "alpha to learn of gamma's approval", timeout=RELAY_DEADLINE)
        self.assertEqual(((await self.trusted(alpha))[gamma.node_id]["mutual"],
                          (await self.trusted(gamma))[alpha.node_id]["mutual"]), (True, True))
        nothing = await self.on(gamma, "approve", str(beta.node_id), "--json")
        self.assertEqual(nothing.error()["code"], "not_found")

    async def test_a_direct_path_that_never_answers_does_not_hold_up_the_relayed_request(self):
        """The direct request to a node that went silent loses to the relay after its head start, instead
        of keeping the user waiting for the direct dial's 5 s timeout before the relay is even tried."""
        alpha, delta = await self.start("alpha", "delta", public=("delta",))
        ping = await self.ok(alpha, "ping", "delta", "--count", "1", "--timeout", "10s")  # a live, direct tunnel
        self.assertIn("rtt_ms", ping["results"][0], ping)
        await delta.stop()
        # The bound (start-up included) is below the direct dial's own timeout: only the race meets it.
        sent = await self.on(alpha, "handshake", str(delta.node_id), "hi", "--json", timeout=4.5)
        self.assertEqual(sent.code, 0, sent)
        self.assertEqual((sent.json()["data"]["status"], sent.json()["data"]["path"]), ("sent", "relay"))
        await delta.start()
        self.assertEqual([r["node_id"] for r in (await self.ok(delta, "pending"))["pending"]], [alpha.node_id])

    async def test_a_peer_that_revoked_while_we_were_not_listening_is_named_not_trusted(self):
        """beta revokes while alpha's daemon is frozen (SIGSTOP), so alpha still trusts beta and holds a
        tunnel to it; beta now drops alpha's SYNs silently. alpha's dial is diagnosed, not left to time out."""
        alpha, beta = await self.start("alpha", "beta")
        await self.establish(alpha, beta)
        ping = await self.ok(alpha, "ping", "beta", "--count", "1", "--timeout", "10s")
        self.assertIn("rtt_ms", ping["results"][0], ping)
        frozen = alpha._process.pid
        os.kill(frozen, signal.SIGSTOP)
        try:
            revoked = await self.on(beta, "untrust", str(alpha.node_id))
        finally:
            os.kill(frozen, signal.SIGCONT)
        self.assertEqual(revoked.code, 0, revoked)
        refused = await self.on(alpha, "ping", str(beta.node_id), "--timeout", "5s", "--json")
        self.assertEqual((refused.code, refused.error()["code"]), (1, "not_trusted"), refused)
        self.assertIn(f"pilotctl handshake {beta.node_id}", refused.error()["hint"])
