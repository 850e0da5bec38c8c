"""``pilotctl network create|delete|rename|promote|demote|kick|role|policy`` against an in-process registry."""

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.handlers import Registry
from pilotnet.registry.server import RegistryFactory, RegistryServer
from tests.cli.support import PilotctlMixin
from tests.driver.fakedaemon import NODE
from tests.registry.fixtures import ADMIN_TOKEN, identity


class NetworkAdminTests(PilotctlMixin, TestCase):
    def setUp(self):
        self.start_fake_daemon()
        self.registry = Registry(admin_token=ADMIN_TOKEN, register_limiter=RateLimiter(burst=100, window=60.0))
        for number in range(1, NODE.node + 1):  # the fake daemon is node 5
            self.registry.handle({"type": "register", "public_key": identity(number).public_key_b64},
                                 ("127.0.0.1", 1), reactor.seconds())
        port = reactor.listenTCP(0, RegistryFactory(RegistryServer(self.registry, reactor)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.registry_address = f"127.0.0.1:{port.getHost().port}"
        self.token = ADMIN_TOKEN

    def environment(self):
        environment = {"PILOT_HOME": self.home, "PILOT_REGISTRY": self.registry_address}
        if self.token:
            environment["PILOT_ADMIN_TOKEN"] = self.token
        return environment

    async def test_create_by_the_daemons_node_then_manage(self):
        created = await self.pilotctl("network", "create", "--name", "team", "--enterprise")
        self.assertEqual((created.code, created.stdout), (0, "created network 1: team (join_rule=open, enterprise=true)\n"))
        self.assertEqual(self.registry.directory.owner_of(self.registry.directory.networks[1]), NODE.node)
        self.registry.handle({"type": "join_network", "node_id": 2, "network_id": 1, "admin_token": ADMIN_TOKEN},
                             ("127.0.0.1", 1), reactor.seconds())
        promoted = await self.pilotctl("network", "promote", "1", "2")
        self.assertEqual(promoted.stdout, "promoted node 2 to admin in network 1\n")
        role = await self.pilotctl("network", "role", "1", "0:0000.0000.0002")
        self.assertEqual(role.stdout, "node 2 in network 1: admin\n")
        policy = await self.pilotctl("network", "policy", "1", "--allowed-ports", "80,443", "--max-members", "9")
        self.assertEqual(policy.stdout, "policy updated\nNetwork:        1\nMax members:    9\n"
                                        "Allowed ports:  80, 443\nDescription:    -\n")
        shown = await self.pilotctl("network", "policy", "1", "--json")
        self.assertEqual(shown.data, {"type": "get_network_policy_ok", "network_id": 1, "max_members": 9,
                                      "allowed_ports": [80, 443], "description": ""})
        kicked = await self.pilotctl("network", "kick", "1", "2", "--json")
        self.assertEqual(kicked.stdout, '{"data":{"network_id":1,"target_node_id":2,"type":"kick_member_ok"},'
                                        '"status":"ok"}\n')
        self.assertEqual((await self.pilotctl("network", "rename", "1", "crew")).stdout,
                         "renamed network 1 to crew\n")
        self.assertEqual((await self.pilotctl("network", "delete", "1")).stdout, "deleted network 1\n")

    async def test_rules_and_refusals(self):
        rules = '{"links":3,"cycle":"1h","prune":1,"prune_by":"age","fill":1,"fill_how":"random"}'
        managed = await self.pilotctl("network", "create", "--name", "ring", "--rules", rules, "--node-id", "3",
                                      "--json")
        self.assertIs(managed.data["managed"], True)
        bad = await self.pilotctl("network", "create", "--name", "x", "--rules", "{", "--json")
        self.assertEqual(bad.error["code"], "invalid_argument")
        refused = await self.pilotctl("network", "promote", "1", "3", "--json")
        self.assertEqual(refused.error["message"], "registry: enterprise feature: requires enterprise network")
        wrong = await self.pilotctl("network", "create", "--name", "y", "--admin-token", "nope", "--json")
        self.assertEqual(wrong.error["message"], "registry: invalid admin token")
        no_rule = await self.pilotctl("network", "create", "--name", "y", "--join-rule", "token", "--json")
        self.assertIn("needs --token", no_rule.error["message"])
        self.token = ""
        missing = await self.pilotctl("network", "delete", "1", "--json")
        self.assertEqual(missing.error["code"], "auth_required")
        self.assertEqual(missing.error["hint"],
                         "pass --admin-token, set PILOT_ADMIN_TOKEN, or admin_token in config.json")
        self.assertEqual(len(self.registry.directory.networks), 1)

    async def test_join_for_another_node_with_the_admin_token(self):
        await self.pilotctl("network", "create", "--name", "vault", "--join-rule", "token", "--token", "s3cret")
        joined = await self.pilotctl("network", "join", "1", "--node-id", "2")  # the token stands in for s3cret
        self.assertEqual((joined.code, joined.stdout), (0, "joined network 1\n  address on it: 1:0001.0000.0002\n"))
        self.assertIn(2, self.registry.directory.networks[1].members)
        by_address = await self.pilotctl("network", "join", "1", "--node-id", "0:0000.0000.0003", "--json",
                                         "--token", "s3cret")
        self.assertEqual((by_address.data["type"], by_address.data["network_id"]), ("join_network_ok", 1))
        wrong = await self.pilotctl("network", "join", "1", "--node-id", "4", "--admin-token", "nope", "--json")
        self.assertEqual(wrong.error["message"], "registry: signature required for authenticated node")
        unknown = await self.pilotctl("network", "join", "9", "--node-id", "4", "--json")
        self.assertEqual(unknown.code, 1)
        self.token = ""
        missing = await self.pilotctl("network", "join", "1", "--node-id", "4", "--json")
        self.assertEqual(missing.error["code"], "auth_required")
        self.assertNotIn(4, self.registry.directory.networks[1].members)
