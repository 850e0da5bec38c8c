"""``pilotctl broadcast`` between real daemons: the members hear it, the sender and outsiders do not."""

import os

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from pilotnet.registry.client import connect_registry
from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, pause, wait_until

ADMIN_TOKEN = "broadcast-admin-token"
PORT = 1000  # pilotctl broadcast's default port


class BroadcastTests(PilotctlMixin, TestCase):
    timeout = 180

    def test_members_hear_a_broadcast_and_the_sender_and_an_outsider_do_not(self):
        return ensureDeferred(self._broadcast())

    async def wait_bound(self, daemon, port):
        async def bound():
            info = await daemon.query_info()
            return info is not None and port in info["bound_ports"]
        await wait_until(bound, f"port {port} bound on {daemon.hostname}")

    def listen(self, daemon, timeout):
        return ensureDeferred(self.on(daemon, "listen", str(PORT), "--count", "1", "--timeout", timeout, "--json"))

    async def _broadcast(self):
        base = self.mktemp()
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous"),
                                             "--admin-token", ADMIN_TOKEN).start()
        # Private nodes: each copy must pass the receiver's trust gate as a member of the network.
        daemons = {}
        for name in ("alpha", "beta", "gamma", "delta"):
            daemons[name] = await DaemonProcess(self, os.path.join(base, name), rendezvous, hostname=name,
                                                public=False).start()
        alpha, beta, gamma, delta = daemons.values()

        registry = await connect_registry(reactor, rendezvous.registry_endpoint)
        self.addCleanup(registry.transport.abortConnection)
        created = await registry.request({"type": "create_network", "node_id": alpha.node_id, "name": "crew",
                                          "join_rule": "open", "admin_token": ADMIN_TOKEN})
        network = created["network_id"]
        for member in (beta, gamma):  # alpha, the creator, is a member already
            await registry.request({"type": "join_network", "node_id": member.node_id, "network_id": network,
                                    "admin_token": ADMIN_TOKEN})

        # Refusals first: the backbone, a network that does not exist, a node outside the network.
        backbone = await self.on(alpha, "broadcast", "0", "hello", "--json")
        self.assertEqual((backbone.code, backbone.error()["code"]), (1, "invalid_argument"), backbone)
        self.assertIn("backbone", backbone.error()["message"])
        missing = await self.on(alpha, "broadcast", "999", "hello", "--json")
        self.assertEqual((missing.code, missing.error()["code"]), (1, "not_found"), missing)
        self.assertIn("pilotctl network list", missing.error()["hint"])
        outsider = await self.on(delta, "broadcast", str(network), "hello", "--json")
        self.assertEqual((outsider.code, outsider.error()["code"]), (1, "invalid_argument"), outsider)
        self.assertEqual(outsider.error()["message"], f"node {delta.node_id} is not a member of network {network}")
        self.assertIn(f"pilotctl network join {network}", outsider.error()["hint"])

        hearing = {daemon: self.listen(daemon, "60s") for daemon in (beta, gamma)}
        silent = {daemon: self.listen(daemon, "8s") for daemon in (alpha, delta)}
        for daemon in (beta, gamma, alpha, delta):
            await self.wait_bound(daemon, PORT)

        # Datagrams are unreliable, and a private receiver may drop the first copy from a member it has
        # not yet checked with the registry, so the broadcast is repeated until both members heard one.
        sent = None
        for _ in range(20):
            result = await self.on(alpha, "broadcast", str(network), "all hands")
            self.assertEqual(result.code, 0, result)
            if sent is None:
                sent = result
            if all(listening.called for listening in hearing.values()):
                break
            await pause(1.0)
        self.assertEqual(sent.stdout, f"broadcast 9 bytes to network {network} port {PORT}: sent to 2 members\n")

        alpha_address = f"{network}:{network:04X}.{alpha.node_id >> 16:04X}.{alpha.node_id & 0xFFFF:04X}"
        source_ports = set()
        for daemon, listening in hearing.items():
            heard = await listening
            self.assertEqual(heard.code, 0, heard)
            [message] = heard.json()["data"]["messages"]
            self.assertEqual((message["data"], message["src_addr"]), ("all hands", alpha_address), daemon.hostname)
            source_ports.add(message["src_port"])
        for daemon, listening in silent.items():
            quiet = await listening
            self.assertEqual(quiet.code, 0, quiet)
            self.assertEqual(quiet.json()["data"], {"messages": [], "timeout": True}, daemon.hostname)

        counted = (await self.ok(alpha, "info"))["broadcast"]
        self.assertGreaterEqual(counted["broadcasts"], 1)
        self.assertEqual(counted["copies"], 2 * counted["broadcasts"])
        self.assertEqual(counted["refused"], 2)  # the backbone and the missing network
        as_json = await self.ok(alpha, "broadcast", str(network), "again", "--port", "4000")
        self.assertEqual(as_json, {"network_id": network, "address": f"{network}:{network:04X}.FFFF.FFFF",
                                   "port": 4000, "bytes": 5, "sent": 2, "unreachable": 0})

    def test_help(self):
        return ensureDeferred(self._help())

    async def _help(self):
        home = self.mktemp()
        os.makedirs(home)
        shown = await self.on(type("NoDaemon", (), {"home": home, "socket_path": os.path.join(home, "s")}),
                              "broadcast", "--help")
        self.assertEqual(shown.code, 0, shown)
        self.assertIn("usage: pilotctl broadcast <network_id> <message> [--port P]", shown.stdout)
