"""Networks against a real ``twistd pilot-rendezvous`` and the real ``pilotctl``: creation, joins,
roles and policies, and nothing acknowledged lost when the registry is killed with -9."""

import json
import os
import shutil
import tempfile
import time

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import sign_fresh_request
from pilotnet.registry.client import RegistryError, connect_registry
from tests.integration.processes import RendezvousProcess, pilotctl

ADMIN_TOKEN = "integration-admin-token"
STORE = ["--store", "registry.db", "--registrations-per-minute", "100000", "--admin-token", ADMIN_TOKEN]


def _identity(number):
    return Identity.from_seed(number.to_bytes(4, "big") * 8)


class NetworkProcessTests(TestCase):
    timeout = 120

    async def connect(self, server):
        client = await connect_registry(reactor, server.registry_endpoint)
        self.addCleanup(client.transport.abortConnection)
        return client

    def home(self, server):
        home = tempfile.mkdtemp(prefix="pilot-home-")
        self.addCleanup(shutil.rmtree, home, True)
        with open(os.path.join(home, "config.json"), "w") as config:
            json.dump({"registry": server.registry_address, "admin_token": ADMIN_TOKEN}, config)
        return home

    async def pilotctl(self, home, *args):
        return await pilotctl(self, home, *args, "--json", socket_path=os.path.join(home, "none.sock"))

    async def ok(self, home, *args):
        result = await self.pilotctl(home, *args)
        self.assertEqual(result.code, 0, result)
        return result.json()["data"]

    @staticmethod
    def signed(identity, request):
        return sign_fresh_request(identity, request, time.time())

    async def test_open_and_token_networks_three_nodes_and_kill_9(self):
        directory = self.mktemp()
        server = await RendezvousProcess(self, directory, *STORE).start()
        client = await self.connect(server)
        home = self.home(server)
        nodes = {}
        for number in range(1, 4):
            identity = _identity(number)
            reply = await client.request({"type": "register", "public_key": identity.public_key_b64})
            nodes[reply["node_id"]] = identity
        first, second, third = sorted(nodes)

        lab = await self.ok(home, "network", "create", "--name", "lab", "--node-id", str(first))
        self.assertEqual((lab["network_id"], lab["join_rule"], lab["enterprise"]), (1, "open", False))
        vault = await self.ok(home, "network", "create", "--name", "vault", "--join-rule", "token",
                              "--token", "s3cret", "--enterprise", "--node-id", str(first))
        self.assertEqual(vault["network_id"], 2)
        human = await pilotctl(self, home, "network", "create", "--name", "spare", "--node-id", str(first))
        self.assertEqual(human.stdout, "created network 3: spare (join_rule=open, enterprise=false)\n")
        by_admin = await self.ok(home, "network", "join", "3", "--node-id", str(second))  # no daemon: the token
        self.assertEqual((by_admin["network_id"], by_admin["address"]), (3, f"3:0003.0000.000{second}"))

        async def join(node_id, network_id, **fields):
            request = self.signed(nodes.get(node_id) or _identity(node_id),
                                  {"type": "join_network", "node_id": node_id, "network_id": network_id,
                                   **fields})
            return await client.request(request)

        for node_id in (second, third):
            joined = await join(node_id, 1)
            self.assertEqual(joined["address"], f"1:0001.0000.000{node_id}")
            with self.assertRaises(RegistryError) as refused:
                await join(node_id, 2, token="guess")
            self.assertEqual(refused.exception.message, "invalid token for network 2")
            await join(node_id, 2, token="s3cret")

        self.assertEqual((await self.ok(home, "network", "promote", "2", str(second)))["role"], "admin")
        self.assertEqual((await self.ok(home, "network", "role", "2", f"0:0000.0000.000{second}"))["role"],
                         "admin")
        policy = await self.ok(home, "network", "policy", "2", "--allowed-ports", "80,443",
                               "--max-members", "50", "--description", "the vault")
        self.assertEqual((policy["allowed_ports"], policy["max_members"]), ([80, 443], 50))
        self.assertEqual((await self.ok(home, "network", "rename", "1", "lab-two"))["name"], "lab-two")
        wrong = await pilotctl(self, home, "network", "kick", "2", str(third), "--admin-token", "nope",
                               "--json")
        self.assertEqual((wrong.code, wrong.error()["message"]),
                         (1, "registry: rbac: node_id required for role-based authorization"))
        self.assertEqual((await self.ok(home, "network", "kick", "2", str(third)))["target_node_id"], third)

        # kill -9 while a stream of joins, tags and invitations is being answered.
        acknowledged = []
        stream = []
        for number in range(10, 70):
            identity = _identity(number)
            node_id = (await client.request({"type": "register", "public_key": identity.public_key_b64}))["node_id"]
            nodes[node_id] = identity
        for node_id in sorted(nodes)[3:]:
            request = self.signed(nodes[node_id], {"type": "join_network", "node_id": node_id, "network_id": 2,
                                                   "token": "s3cret"})
            stream.append(client.request(request))
            stream[-1].addCallback(lambda reply, n=node_id: acknowledged.append(n))
            stream[-1].addErrback(lambda failure: failure.trap(RegistryError, Exception))
            if len(stream) == 25:
                await stream[0]
                server.kill()
        await server.ended.addErrback(lambda failure: None)
        self.assertGreater(len(acknowledged), 0)

        restarted = await server.start()  # the same ports, as a restarted server has
        client = await self.connect(restarted)
        members = await client.request({"type": "list_nodes", "network_id": 2})
        listed = {entry["node_id"]: entry for entry in members["nodes"]}
        for node_id in acknowledged + [first, second]:
            self.assertIn(node_id, listed)
            self.assertEqual(listed[node_id]["address"], f"2:0002.{node_id >> 16:04X}.{node_id & 0xFFFF:04X}")
        self.assertNotIn(third, listed)
        self.assertEqual((listed[first]["role"], listed[second]["role"]), ("owner", "admin"))
        policy = await self.ok(home, "network", "policy", "2")
        self.assertEqual((policy["allowed_ports"], policy["max_members"], policy["description"]),
                         ([80, 443], 50, "the vault"))
        networks = await client.request({"type": "list_networks"})
        self.assertEqual([n["name"] for n in networks["networks"]], ["backbone", "lab-two", "vault", "spare"])
        self.assertEqual(await self.ok(home, "network", "delete", "3"), {"type": "delete_network_ok",
                                                                         "network_id": 3})
        await restarted.stop()

    async def test_help_and_refusals_before_any_request(self):
        home = tempfile.mkdtemp(prefix="pilot-home-")
        self.addCleanup(shutil.rmtree, home, True)
        for command in ("create", "delete", "rename", "promote", "demote", "kick", "role", "policy"):
            shown = await pilotctl(self, home, "network", command, "--help")
            self.assertEqual(shown.code, 0, shown)
            self.assertIn(f"usage: pilotctl network {command}", shown.stdout)
        missing = await pilotctl(self, home, "network", "delete", "3", "--json")
        self.assertEqual(missing.error()["code"], "auth_required")
        self.assertIn("admin token", missing.error()["message"])
        backbone = await pilotctl(self, home, "network", "role", "0", "5", "--json")
        self.assertIn("backbone", backbone.error()["message"])
