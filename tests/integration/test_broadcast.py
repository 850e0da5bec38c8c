"""``pilotctl broadcast`` between real daemons: the members hear it, the sender and outsiders do not."""

import os

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from pilotnet.registry.client import connect_registry
from tests.integration.processes import (
    DaemonProcess, PilotctlMixin, RendezvousProcess, pause, pilotctl, wait_until,
)

ADMIN_TOKEN = "broadcast-admin-token"
PORT = 1000  # pilotctl broadcast's default port


class BroadcastTests(PilotctlMixin, TestCase):
    timeout = 180

    async def test_members_hear_a_broadcast_and_the_sender_and_an_outsider_do_not(self):
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
            await self.ok(member, "network", "join", str(network))

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

        # Datagrams are unreliable and the first copies to a member wait for its tunnel (a private member
        # learns alpha's key from the registry first), so the broadcast is repeated until both heard one.
        first = await self.hear(alpha, network, "all hands", {beta: "60s", gamma: "60s"})
        self.assertEqual(first.stdout, f"broadcast 9 bytes to network {network} port {PORT}: sent to 2 members\n")
        # With the tunnels up, a broadcast while all four listen: the members hear it, the sender and the
        # outsider do not.
        await self.hear(alpha, network, "once more", {beta: "30s", gamma: "30s", alpha: "10s", delta: "10s"},
                        silent=(alpha, delta))

        counted = (await self.ok(alpha, "info"))["broadcast"]
        self.assertGreaterEqual(counted["broadcasts"], 2)
        self.assertEqual(counted["copies"], 2 * counted["broadcasts"])
        self.assertEqual(counted["refused"], 2)  # the backbone and the missing network
        as_json = await self.ok(alpha, "broadcast", str(network), "again", "--port", "4000")
        self.assertEqual(as_json, {"network_id": network, "address": f"{network}:{network:04X}.FFFF.FFFF",
                                   "port": 4000, "bytes": 5, "sent": 2, "unreachable": 0})

    async def wait_bound(self, daemon, port):
        async def bound():
            info = await daemon.query_info()
            return info is not None and port in info["bound_ports"]
        await wait_until(bound, f"port {port} bound on {daemon.hostname}")

    def listen(self, daemon, timeout):
        return ensureDeferred(self.on(daemon, "listen", str(PORT), "--count", "1", "--timeout", timeout, "--json"))

    async def hear(self, sender, network, text, listeners, silent=()):
        """Broadcast ``text`` until every listener not in ``silent`` heard it once; check what each heard."""
        listening = {daemon: self.listen(daemon, timeout) for daemon, timeout in listeners.items()}
        for daemon in listening:
            await self.wait_bound(daemon, PORT)
        hearing = [heard for daemon, heard in listening.items() if daemon not in silent]
        first = None
        for _ in range(20):
            result = await self.on(sender, "broadcast", str(network), text)
            self.assertEqual(result.code, 0, result)
            first = first or result
            if all(heard.called for heard in hearing):
                break
            await pause(1.0)
        source = sender.node_id
        sender_address = f"{network}:{network:04X}.{source >> 16:04X}.{source & 0xFFFF:04X}"
        for daemon, heard in listening.items():
            result = await heard
            self.assertEqual(result.code, 0, result)
            messages = result.json()["data"]["messages"]
            if daemon in silent:
                self.assertEqual(messages, [], daemon.hostname)
            else:
                self.assertEqual([(m["data"], m["src_addr"]) for m in messages], [(text, sender_address)],
                                 daemon.hostname)
        return first

    async def test_help(self):
        home = self.mktemp()
        os.makedirs(home)
        shown = await pilotctl(self, home, "broadcast", "--help")
        self.assertEqual(shown.code, 0, shown)
        self.assertIn("usage: pilotctl broadcast <network_id> <message> [--port P]", shown.stdout)
