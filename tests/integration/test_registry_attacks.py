"""Attacks on a real rendezvous process with a real daemon registered: nothing of the node moves."""

import os

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import sign_request
from pilotnet.registry.client import RegistryClientProtocol, RegistryError
from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess


class RegistryAttackTests(PilotctlMixin, TestCase):
    timeout = 90

    async def attacker(self, rendezvous):
        """A registry connection from another source address (127.0.0.2) than the daemon's."""
        host, port = rendezvous.registry_address.rsplit(":", 1)
        endpoint = TCP4ClientEndpoint(reactor, host, int(port), bindAddress=("127.0.0.2", 0))
        client = await connectProtocol(endpoint, RegistryClientProtocol())
        self.addCleanup(client.transport.abortConnection)
        return client

    async def test_a_live_daemon_cannot_be_re_registered_or_replayed_by_others(self):
        base = self.mktemp()
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        daemon = await DaemonProcess(self, os.path.join(base, "alpha"), rendezvous, hostname="alpha",
                                     public=False).start()
        identity = Identity.load(os.path.join(daemon.home, "identity.json"))
        mallory = await self.attacker(rendezvous)
        before = await mallory.request({"type": "lookup", "node_id": daemon.node_id})

        # The public key is public: an unsigned register with it, from elsewhere, is refused.
        with self.assertRaises(RegistryError) as refused:
            await mallory.request({"type": "register", "public_key": identity.public_key_b64,
                                   "listen_addr": "127.0.0.2:6666", "hostname": "mallory",
                                   "lan_addrs": ["10.6.6.6:6666"], "version": "evil"})
        self.assertIn("register refused", refused.exception.message)
        # A legacy (Go-form) signature is no use over plaintext for what changes values.
        with self.assertRaises(RegistryError) as legacy:
            await mallory.request(sign_request(identity, {"type": "set_visibility",
                                                          "node_id": daemon.node_id, "public": True}))
        self.assertIn("only over TLS", legacy.exception.message)

        after = await mallory.request({"type": "lookup", "node_id": daemon.node_id})
        self.assertEqual(after, before)
        self.assertEqual((after["hostname"], after["public"], after.get("version")),
                         ("alpha", False, before.get("version")))
        # The daemon itself still changes its settings (signed in the fresh form).
        await self.ok(daemon, "set-hostname", "alpha2")
        renamed = await mallory.request({"type": "lookup", "node_id": daemon.node_id})
        self.assertEqual(renamed["hostname"], "alpha2")
