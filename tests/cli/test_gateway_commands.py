"""``pilotctl gateway …`` in-process: errors before anything starts, and map/unmap/list/info on a running gateway.

The running gateway here is the real control socket server over a recording
gateway (what the commands see is only the socket); the real gateway, with
aliases, runs in tests/netlab/test_gateway.py.
"""

import os
import shutil

from twisted.internet import reactor
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from pilotnet.driver.targets import parse_target, unresolvable
from pilotnet.errors import ALREADY_EXISTS, NOT_FOUND
from pilotnet.gateway.control import ControlServer
from pilotnet.gateway.paths import control_path
from pilotnet.gateway.mappings import Mapping, MappingTable, parse_subnet
from pilotnet.wire.address import Addr
from tests.cli.support import PilotctlMixin

AGENT = Addr(0, 4)


class RecordingGateway:
    def __init__(self):
        self.table = MappingTable(parse_subnet("10.4.0.0/16"))

    async def map(self, target, ip=None):
        address = parse_target(target)
        if address is None and target != "agent-b":
            raise unresolvable(target)
        mapping = self.table.plan(address or AGENT, ip, "" if address else target)
        self.table.add(mapping)
        return mapping

    async def unmap(self, ip):
        return self.table.remove(ip)

    def describe(self, mapping: Mapping):
        return dict(mapping.document(), ports=[80], connections=0)

    def status(self):
        return {"pid": 4242, "subnet": "10.4.0.0/16", "ports": [80],
                "mappings": [self.describe(m) for m in self.table.mappings()]}


class GatewayCommandTests(PilotctlMixin, TestCase):
    def setUp(self):
        self.start_fake_daemon()

    async def run_gateway(self):
        self.gateway = RecordingGateway()
        listening = await UNIXServerEndpoint(reactor, str(control_path(self.socket_path))).listen(
            Factory.forProtocol(lambda: ControlServer(self.gateway)))
        self.addCleanup(listening.stopListening)

    async def test_commands_without_a_gateway_say_it_is_not_running(self):
        for argv in (["list"], ["map", "agent-b"], ["unmap", "10.4.0.1"], ["stop"]):
            result = await self.pilotctl("gateway", *argv, "--json")
            self.assertEqual((result.code, result.error["code"]), (1, "not_running"), argv)
            self.assertEqual(result.error["message"], "gateway is not running")
        human = await self.pilotctl("gateway", "list")
        self.assertEqual(human.stderr, "error: gateway is not running\n"
                                       "hint:  start it with: sudo pilotctl gateway start [--ports 80,...] "
                                       "<address|hostname>\n")

    async def test_start_checks_its_arguments_and_root_before_starting_anything(self):
        for argv, message in (
            (["--subnet", "nonsense"], "invalid subnet 'nonsense'"),
            (["--ports", "80,http"], "invalid port 'http' in --ports"),
            (["10.4.0.5"], "IP 10.4.0.5 does not follow an address or hostname"),
        ):
            result = await self.pilotctl("gateway", "start", *argv, "--json")
            self.assertEqual((result.code, result.error["code"], result.error["message"]),
                             (1, "invalid_argument", message), argv)
        self.patch(os, "geteuid", lambda: 1000)
        self.patch(shutil, "which", lambda name: f"/usr/sbin/{name}")
        result = await self.pilotctl("gateway", "start", "agent-b", "--json")
        self.assertEqual(result.error["code"], "invalid_argument")
        self.assertTrue(result.error["message"].startswith("pilotctl gateway start needs root: it adds an address"))
        self.assertFalse(os.path.exists(self.home_file("gateway.pid")))

    async def test_start_refuses_when_a_gateway_already_answers(self):
        await self.run_gateway()
        self.patch(os, "geteuid", lambda: 0)
        result = await self.pilotctl("gateway", "start", "--subnet", "127.4.0.0/16", "--ports", "8080", "--json")
        self.assertEqual((result.error["code"], result.error["message"]),
                         (ALREADY_EXISTS, f"a gateway (pid 4242) already answers on {control_path(self.socket_path)}"))

    async def test_map_unmap_list_on_the_running_gateway(self):
        await self.run_gateway()
        mapped = await self.pilotctl("gateway", "map", "agent-b")
        self.assertEqual((mapped.code, mapped.stdout), (0, "10.4.0.1 → 0:0000.0000.0004 (agent-b)\n"))
        again = await self.pilotctl("gateway", "map", "5", "10.4.0.9", "--json")
        self.assertEqual(again.data, {"local_ip": "10.4.0.9", "pilot_addr": "0:0000.0000.0005", "ports": [80],
                                      "connections": 0})
        refused = await self.pilotctl("gateway", "map", "6", "10.5.0.1", "--json")
        self.assertEqual((refused.error["code"], refused.error["message"]),
                         ("invalid_argument", "IP 10.5.0.1 not in subnet 10.4.0.0/16"))
        missing = await self.pilotctl("gateway", "map", "nobody", "--json")
        self.assertEqual(missing.error["code"], NOT_FOUND)
        listed = await self.pilotctl("gateway", "list")
        self.assertEqual(listed.stdout, "10.4.0.1 → 0:0000.0000.0004 (agent-b)\n10.4.0.9 → 0:0000.0000.0005\n"
                                        "total: 2\n")
        self.assertEqual((await self.pilotctl("gateway", "list", "--json")).data["total"], 2)
        info = await self.pilotctl("info", "--json")
        self.assertEqual([m["local_ip"] for m in info.data["gateway"]["mappings"]], ["10.4.0.1", "10.4.0.9"])
        human_info = await self.pilotctl("info")
        self.assertIn("Gateway:       pid 4242, subnet 10.4.0.0/16, 2 mappings\n"
                      "  10.4.0.1 → 0:0000.0000.0004 (agent-b)\n", human_info.stdout)
        unmapped = await self.pilotctl("gateway", "unmap", "10.4.0.9", "--json")
        self.assertEqual(unmapped.data, {"unmapped": "10.4.0.9", "pilot_addr": "0:0000.0000.0005"})
        gone = await self.pilotctl("gateway", "unmap", "10.4.0.9", "--json")
        self.assertEqual((gone.error["code"], gone.error["message"]), (NOT_FOUND, "no mapping for 10.4.0.9"))
        await self.pilotctl("gateway", "unmap", "10.4.0.1")
        self.assertEqual((await self.pilotctl("gateway", "list")).stdout, "no mappings\n")

    async def test_info_without_a_gateway_has_no_gateway_field(self):
        info = await self.pilotctl("info", "--json")
        self.assertNotIn("gateway", info.data)

