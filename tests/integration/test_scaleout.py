"""Several registries (real twistd processes) on one real PostgreSQL database.

Registry A is a rendezvous (registry + beacon), B and C plain registries; all
share a throwaway cluster (tests/registry/postgres.py).  Daemons talk to
different registries, or list several and fail over.
"""

import json
import os

import treq
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import sign_fresh_request
from pilotnet.registry.client import RegistryError, connect_registry
from tests.integration.processes import (
    DaemonProcess, PilotctlMixin, RendezvousProcess, TwistdProcess, wait_until,
)
from tests.registry.postgres import start_cluster

# A change committed on one registry is applied by the others within this.
VISIBLE_WITHIN = 1.0
# The daemon retries a failed registry request with its next heartbeat or command.
FAILOVER_WITHIN = 20.0
# Registries here accept many new keys from 127.0.0.1.
MANY = ("--registrations-per-minute", "100000")


class RegistryProcess(TwistdProcess):
    """``twistd -n pilot-registry`` on port 0; its port is read from a ports file."""

    plugin = "pilot-registry"

    def __init__(self, test, directory, *extra):
        super().__init__(test, directory, *extra)
        self.ports_file = os.path.join(self.directory, "ports.json")
        self.registry_port = 0

    def arguments(self):
        return ["--registry", f"tcp:{self.registry_port}:interface=127.0.0.1",
                "--ports-file", self.ports_file]

    async def start(self):
        ports = await self.spawn_and_read_ports(self.ports_file)
        self.registry_port = ports["registry"]["port"]
        self.http_port = ports.get("http", {}).get("port")
        return self

    @property
    def registry_address(self):
        return f"127.0.0.1:{self.registry_port}"

    @property
    def registry_endpoint(self):
        return f"tcp:127.0.0.1:{self.registry_port}"


def _new_identity(number):
    return Identity.from_seed(number.to_bytes(4, "big") * 8)


def registration(number):
    who = _new_identity(number)
    return sign_fresh_request(who, {"type": "register", "public_key": who.public_key_b64,
                                    "listen_addr": "127.0.0.1:4000"}, reactor.seconds())


class ScaleOutTests(PilotctlMixin, TestCase):
    timeout = 240

    async def shared(self, count, *extra):
        """A rendezvous and ``count - 1`` registries on one fresh database."""
        self.cluster = await start_cluster(self)
        url = self.cluster.create_database("registry")
        base = self.mktemp()
        first = await RendezvousProcess(self, os.path.join(base, "a"), "--store", url, *MANY,
                                        *extra).start()
        others = [await RegistryProcess(self, os.path.join(base, name), "--store", url, *MANY,
                                        *extra).start() for name in "bc"[:count - 1]]
        return [first, *others]

    async def client(self, registry):
        connection = await connect_registry(reactor, registry.registry_endpoint)
        self.addCleanup(connection.close)
        return connection

    async def known(self, connection, node_id):
        reply = await connection.request({"type": "lookup", "node_id": node_id})
        return reply["node_id"] == node_id

    async def visible(self, connection, node_id):
        try:
            return await self.known(connection, node_id)
        except RegistryError:
            return False

    async def named(self, connection, hostname, node_id):
        try:
            reply = await connection.request({"type": "resolve_hostname", "hostname": hostname})
        except RegistryError:
            return False
        return reply["node_id"] == node_id

    async def test_daemon_on_a_is_found_on_b_and_c_within_a_second(self):
        a, b, c = await self.shared(3)
        base = self.mktemp()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), a, hostname="alpha").start()
        for other in (b, c):
            connection = await self.client(other)
            await wait_until(lambda: self.visible(connection, alpha.node_id),
                             "alpha's registration on another registry", timeout=VISIBLE_WITHIN)
            # The hostname may be a change of its own, a moment after the registration.
            await wait_until(lambda: self.named(connection, "alpha", alpha.node_id),
                             "alpha's hostname on another registry", timeout=VISIBLE_WITHIN)

    async def test_the_dashboard_of_b_lists_a_node_registered_on_a_live(self):
        self.cluster = await start_cluster(self)
        url = self.cluster.create_database("registry")
        base = self.mktemp()
        a = await RendezvousProcess(self, os.path.join(base, "a"), "--store", url).start()
        b = await RegistryProcess(self, os.path.join(base, "b"), "--store", url, "--http",
                                  "tcp:0:interface=127.0.0.1").start()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), a, hostname="alpha").start()

        async def listed():
            response = await treq.get(f"http://127.0.0.1:{b.http_port}/api/nodes",
                                     persistent=False)
            nodes = json.loads(await response.text())["nodes"]
            return any(node.get("hostname") == "alpha" for node in nodes)

        await wait_until(listed, f"node {alpha.node_id} on B's dashboard")

    async def test_hostname_race_between_registries(self):
        a, b = await self.shared(2)
        ca, cb = await self.client(a), await self.client(b)
        first = (await ca.request(registration(1)))["node_id"]
        second = (await cb.request(registration(2)))["node_id"]
        await wait_until(lambda: self.visible(ca, second), "B's node on A")
        await wait_until(lambda: self.visible(cb, first), "A's node on B")
        requests = [
            ca.request(sign_fresh_request(_new_identity(1), {
                "type": "set_hostname", "node_id": first, "hostname": "contested"},
                reactor.seconds())),
            cb.request(sign_fresh_request(_new_identity(2), {
                "type": "set_hostname", "node_id": second, "hostname": "contested"},
                reactor.seconds())),
        ]
        outcomes = []
        for request in requests:
            try:
                outcomes.append(await request)
            except RegistryError as error:
                outcomes.append(error)
        won = [outcome for outcome in outcomes if isinstance(outcome, dict)]
        lost = [outcome for outcome in outcomes if isinstance(outcome, RegistryError)]
        self.assertEqual((len(won), len(lost)), (1, 1), outcomes)
        winner = won[0]["node_id"]
        # Either the database decided (a real race) or the feed had already told the loser.
        self.assertEqual(lost[0].message, f'hostname "contested" already in use by node {winner}')
        for connection in (ca, cb):
            reply = await connection.request({"type": "resolve_hostname", "hostname": "contested",
                                              "requester_id": winner})
            self.assertEqual(reply["node_id"], winner)

    async def test_a_signed_request_replayed_to_another_registry_is_refused(self):
        """Captured on plaintext: ``public: true`` sent to A, replayed to B after the node went private."""
        a, b = await self.shared(2)
        ca, cb = await self.client(a), await self.client(b)
        owner = _new_identity(3)
        node_id = (await ca.request(registration(3)))["node_id"]
        captured = sign_fresh_request(owner, {"type": "set_visibility", "node_id": node_id, "public": True},
                                      reactor.seconds())
        await ca.request(captured)
        await ca.request(sign_fresh_request(owner, {"type": "set_visibility", "node_id": node_id,
                                                    "public": False}, reactor.seconds()))

        async def private_on_b():
            return await self.visible(cb, node_id) and not (
                await cb.request({"type": "lookup", "node_id": node_id}))["public"]

        await wait_until(private_on_b, "the node private on B")
        with self.assertRaises(RegistryError) as refused:
            await cb.request(captured)
        self.assertIn("replayed request", refused.exception.message)
        for connection in (ca, cb):
            reply = await connection.request({"type": "lookup", "node_id": node_id})
            self.assertFalse(reply["public"])

    async def test_handshake_and_trust_between_nodes_on_different_registries(self):
        a, b = await self.shared(2)
        base = self.mktemp()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), a, hostname="alpha",
                                    public=False).start()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), a, "--registry",
                                   b.registry_address, hostname="beta", public=False).start()
        await wait_until(lambda: self.visible_through(a, beta.node_id), "beta on A")
        sent = await self.on(alpha, "handshake", str(beta.node_id), "across", "registries")
        self.assertEqual(sent.code, 0, sent)

        async def pending_on_beta():
            return (await self.ok(beta, "pending"))["pending"]

        [request] = await wait_until(pending_on_beta, "the relayed request at beta", timeout=60)
        self.assertEqual(request["node_id"], alpha.node_id)
        await self.ok(beta, "approve", str(alpha.node_id))

        async def alpha_trusts_beta():
            trusted = (await self.ok(alpha, "trust"))["trusted"]
            return any(peer["node_id"] == beta.node_id for peer in trusted)

        await wait_until(alpha_trusts_beta, "alpha to learn of beta's approval", timeout=60)

        async def ping():
            result = await self.on(alpha, "ping", beta.address, "--count", "1", "--timeout", "3s",
                                   "--json")
            return result.code == 0

        await wait_until(ping, "alpha to reach private beta", timeout=60)

    async def visible_through(self, registry, node_id):
        connection = await connect_registry(reactor, registry.registry_endpoint)
        try:
            return await self.visible(connection, node_id)
        finally:
            connection.transport.loseConnection()

    async def test_kill_9_during_a_burst_keeps_every_acknowledged_write_and_daemons_fail_over(self):
        a, b = await self.shared(2)
        base = self.mktemp()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), a, "--registry",
                                    f"{a.registry_address},{b.registry_address}",
                                    hostname="alpha").start()
        burst = await self.client(a)
        acknowledged = []
        pending = [burst.request(registration(100 + number)) for number in range(300)]
        for waiting in pending:
            waiting.addCallback(lambda reply: acknowledged.append(reply["node_id"]))
            waiting.addErrback(lambda failure: failure.trap(RegistryError))
        await wait_until(lambda: len(acknowledged) >= 20, "the first registrations acknowledged")
        a.kill()
        for waiting in pending:
            await waiting
        self.assertGreater(len(acknowledged), 0)
        survivor = await self.client(b)
        for node_id in list(acknowledged):
            await wait_until(lambda: self.visible(survivor, node_id),
                             f"acknowledged node {node_id} on B")

        async def alpha_uses_b():
            result = await self.on(alpha, "find", "alpha", "--json")
            return result.code == 0

        await wait_until(alpha_uses_b, "alpha's registry requests to reach B",
                         timeout=FAILOVER_WITHIN)

    async def test_database_restart_under_load(self):
        a, b = await self.shared(2)
        ca = await self.client(a)
        acknowledged = []
        sending = True

        async def load():
            number = 1000
            while sending:
                number += 1
                try:
                    acknowledged.append((await ca.request(registration(number)))["node_id"])
                except RegistryError:
                    pass

        loader = ensureDeferred(load())
        await wait_until(lambda: len(acknowledged) >= 10, "registrations before the restart")
        await self.cluster.restart()
        before = len(acknowledged)
        await wait_until(lambda: len(acknowledged) > before + 10,
                         "registrations acknowledged after the restart", timeout=60)
        sending = False
        await loader
        cb = await self.client(b)
        for node_id in acknowledged:
            await wait_until(lambda: self.visible(cb, node_id),
                             f"acknowledged node {node_id} on B after the restart", timeout=30)
