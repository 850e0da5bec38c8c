"""A hot standby as a real process: it follows the primary, serves reads, refuses writes,
keeps following across a primary restart, and becomes a primary by restarting without
``--standby``."""

import os
import time

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import sign_fresh_request, sign_request
from pilotnet.registry.client import RegistryError, connect_registry
from pilotnet.registry.handlers import STANDBY_REFUSAL
from tests.integration.processes import RendezvousProcess, wait_until

STORE = ["--store", "registry.db"]


def _identity(number):
    return Identity.from_seed(number.to_bytes(4, "big") * 8)


def _restart(test, previous, *options):
    """A new process in ``previous``'s directory, on its ports, with other options."""
    process = RendezvousProcess(test, previous.directory, *options)
    process.registry_port, process.beacon_port = previous.registry_port, previous.beacon_port
    return process.start()


def _register(who):
    return {"type": "register", "public_key": who.public_key_b64, "listen_addr": "127.0.0.1:4000"}


class StandbyProcessTests(TestCase):
    timeout = 90

    async def connect(self, server):
        client = await connect_registry(reactor, server.registry_endpoint)
        self.addCleanup(client.transport.abortConnection)
        return client

    async def until_standby_has(self, standby, node_id, hostname=None):
        async def present():
            client = await self.connect(standby)
            try:
                reply = await client.request({"type": "lookup", "node_id": node_id})
            except RegistryError:
                return False
            finally:
                client.transport.loseConnection()
            return reply.get("hostname") == hostname
        await wait_until(present, f"the standby to replicate node {node_id}")

    async def test_standby_follows_refuses_writes_and_is_promoted_by_restart(self):
        primary_directory = self.mktemp()
        primary = await RendezvousProcess(self, primary_directory, *STORE).start()
        token_file = os.path.join(primary.directory, "registry.db.replication-token")
        self.assertTrue(os.path.exists(token_file))
        to_primary = await self.connect(primary)
        alice, bob, carol = _identity(1), _identity(2), _identity(3)
        a = (await to_primary.request(_register(alice)))["node_id"]

        standby_options = [*STORE, "--standby", primary.registry_address,
                           "--replication-token-file", token_file]
        standby = await RendezvousProcess(self, self.mktemp(), *standby_options).start()
        await self.until_standby_has(standby, a)
        await to_primary.request(sign_fresh_request(
            alice, {"type": "set_hostname", "node_id": a, "hostname": "alice"}, time.time()))
        await self.until_standby_has(standby, a, "alice")

        to_standby = await self.connect(standby)
        refused = await self.assertFailure(to_standby.request(_register(bob)), RegistryError)
        self.assertEqual(refused.message, STANDBY_REFUSAL)
        beat = await to_standby.request(sign_request(alice, {"type": "heartbeat", "node_id": a}))
        self.assertEqual(beat["type"], "heartbeat_ok")

        # The primary restarts; the standby reconnects and catches up.
        await primary.stop()
        primary = await _restart(self, primary, *STORE)
        to_primary = await self.connect(primary)
        b = (await to_primary.request(_register(bob)))["node_id"]
        await self.until_standby_has(standby, b)

        # The primary is lost for good: restart the standby without --standby.
        primary.kill()
        await standby.stop()
        promoted = await _restart(self, standby, *STORE)
        to_promoted = await self.connect(promoted)
        again = await to_promoted.request(_register(alice))
        self.assertEqual((again["node_id"], again["hostname"]), (a, "alice"))
        c = (await to_promoted.request(_register(carol)))["node_id"]
        self.assertNotIn(c, (a, b))
        await promoted.stop()
