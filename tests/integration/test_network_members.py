"""Networks with real processes: a rendezvous, three private daemons, the real ``pilotctl network`` commands.

Members of a network trust each other without a handshake, on the ports the
network allows, and lose that trust as soon as their daemons learn (within
``--network-sync`` seconds) that a membership ended.  Every daemon here is
private, so nothing but the network lets them talk.
"""

import os

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from pilotnet.errors import PilotError
from pilotnet.registry.client import connect_registry
from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, wait_until
from tests.webhooks.receivers import HttpReceiver

ADMIN_TOKEN = "network-tests-admin"
#: Seconds between the daemons' network refreshes here (30 by default).
SYNC = "1"
#: How long a daemon may take to notice a membership change on a loaded machine.
SYNC_DEADLINE = 30.0


class NetworkTests(PilotctlMixin, TestCase):
    timeout = 180

    async def start(self, *names, webhook=None):
        """Private daemons ``names``; the first posts its events to ``webhook`` (an HttpReceiver) if given."""
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous"),
                                                  "--admin-token", ADMIN_TOKEN).start()
        daemons = []
        for name in names:
            extra = ["--webhook", webhook.url, "--webhook-allow-private"] if webhook and not daemons else []
            daemon = DaemonProcess(self, os.path.join(base, name), self.rendezvous, "--network-sync", SYNC,
                                   *extra, hostname=name, public=False)
            daemons.append(await daemon.start())
        return daemons

    async def admin(self, message):
        """A request with the registry's admin token (what ``pilotctl network create`` and friends send)."""
        registry = await connect_registry(reactor, self.rendezvous.registry_endpoint)
        try:
            return await registry.request({**message, "admin_token": ADMIN_TOKEN})
        finally:
            registry.close()

    async def create(self, owner, name, **fields):
        reply = await self.admin({"type": "create_network", "node_id": owner.node_id, "name": name, **fields})
        return reply["network_id"]

    async def reaches(self, source, target):
        """Does a ping (port 7) from ``source`` get through to ``target``?"""
        result = await self.on(source, "ping", target.address, "--count", "1", "--timeout", "3s", "--json")
        return result.code == 0 and "rtt_ms" in result.json()["data"]["results"][0]

    async def wait_reaches(self, source, target, expected, what):
        async def settled():
            return await self.reaches(source, target) == expected
        await wait_until(settled, what, timeout=SYNC_DEADLINE, interval=0.5)

    async def test_open_and_token_networks_trust_members_until_they_leave(self):
        alpha, beta, gamma = await self.start("alpha", "beta", "gamma")
        self.assertFalse(await self.reaches(beta, alpha))  # private strangers
        network = await self.create(alpha, "team")
        for member in (beta, gamma):
            joined = await self.on(member, "network", "join", str(network))
            self.assertEqual(joined.code, 0, joined)
            self.assertEqual(joined.stdout.splitlines()[0], f"joined network {network}")

        listing = await self.on(alpha, "network", "list")
        self.assertEqual(listing.stdout.split("\n")[0].split(), ["ID", "NAME", "JOIN", "RULE", "MEMBERS"])
        self.assertIn(["team", "open", "3"], [line.split()[1:] for line in listing.stdout.splitlines()[1:]])
        members = await self.ok(gamma, "network", "members", str(network))
        self.assertEqual(sorted(node["node_id"] for node in members["nodes"]),
                         sorted([alpha.node_id, beta.node_id, gamma.node_id]))
        sdk = await alpha.connect()
        self.assertIn(network, [listed["id"] for listed in await sdk.networks()])
        self.assertEqual(len(await sdk.network_members(network)), 3)
        self.assertEqual(await sdk.network_invites(), [])
        human = await self.on(gamma, "network", "members", str(network))
        self.assertEqual(human.stdout.split("\n")[0].split(), ["NODE", "ID", "HOSTNAME", "VERSION", "PUBLIC"])

        # Members reach each other at once, with no handshake and nothing in the trust lists.
        for source, target in ((alpha, beta), (beta, gamma), (gamma, alpha)):
            await self.wait_reaches(source, target, True, f"{source.hostname} to reach {target.hostname}")
        self.assertEqual((await self.ok(beta, "trust"))["trusted"], [])
        [described] = (await beta.query_info())["networks"]
        self.assertEqual(described["network_id"], network)
        self.assertEqual(described["address"], f"{network}:{network:04X}.{beta.node_id >> 16:04X}."
                                               f"{beta.node_id & 0xFFFF:04X}")

        # A daemon started with --networks joins by itself.
        delta = await DaemonProcess(self, os.path.join(self.rendezvous.directory, "..", "delta"), self.rendezvous,
                                    "--network-sync", SYNC, "--networks", str(network), hostname="delta",
                                    public=False).start()
        await self.wait_reaches(delta, alpha, True, "delta, auto-joined, to reach alpha")
        await delta.stop()

        # gamma leaves: its own gate closes at once, the others' within a refresh.
        left = await self.on(gamma, "network", "leave", str(network))
        self.assertEqual((left.code, left.stdout), (0, f"left network {network}\n"))
        self.assertFalse(await self.reaches(beta, gamma))
        await self.wait_reaches(gamma, alpha, False, "alpha to stop admitting gamma")
        self.assertTrue(await self.reaches(alpha, beta))  # the others are members still

        # A token network: a wrong token is refused with the reference's words and a hint.
        guarded = await self.create(alpha, "vault", join_rule="token", token="s3cret")
        wrong = await self.on(gamma, "network", "join", str(guarded), "--token", "nope", "--json")
        self.assertEqual(wrong.code, 1, wrong)
        self.assertIn(f"invalid token for network {guarded}", wrong.error()["message"])
        self.assertIn("--token", wrong.error()["hint"])
        right = await self.ok(gamma, "network", "join", str(guarded), "--token", "s3cret")
        self.assertEqual(right["network_id"], guarded)
        await self.wait_reaches(alpha, gamma, True, "alpha to reach gamma through the token network")

        unknown = await self.on(gamma, "network", "leave", "999", "--json")
        self.assertEqual(unknown.error()["code"], "not_found", unknown)
        self.assertEqual(unknown.error()["hint"], "list the networks with: pilotctl network list")

    async def test_allowed_ports_kick_and_invites(self):
        receiver = HttpReceiver(self)
        alpha, beta, gamma = await self.start("alpha", "beta", "gamma", webhook=receiver)
        network = await self.create(alpha, "ops", enterprise=True)
        for member in (beta, gamma):
            await self.ok(member, "network", "join", str(network))
        await self.admin({"type": "set_network_policy", "network_id": network, "allowed_ports": [1000]})

        server = await alpha.connect()
        allowed, blocked = await server.listen(1000), await server.listen(2000)
        self.addCleanup(allowed.close)
        self.addCleanup(blocked.close)
        client = await beta.connect()

        async def dials(port):
            try:
                stream = await client.dial(alpha.address, port, timeout=3)
            except PilotError:
                return False
            stream.close()
            return True

        async def allowed_port_open():
            return await dials(1000)
        await wait_until(allowed_port_open, "beta to reach alpha's port 1000", timeout=SYNC_DEADLINE, interval=0.5)
        await allowed.accept()
        self.assertFalse(await dials(2000))
        self.assertFalse(await self.reaches(beta, alpha))  # port 7 is not allowed either
        counters = (await alpha.query_info())["trust"]
        self.assertGreaterEqual(counters["port_refused_syns"], 1)

        def events(name):
            return [request.json()["data"] for request in receiver.requests if request.json()["event"] == name]
        await wait_until(lambda: events("syn.port_rejected"), "alpha's syn.port_rejected event", timeout=SYNC_DEADLINE)
        self.assertIn({"src_node_id": beta.node_id, "dst_port": 2000, "network": network},
                      events("syn.port_rejected"))
        self.assertIn(network, [data["network_id"] for data in events("network.sync_joined")])

        # Kicked: beta loses the network's trust both ways; gamma keeps it.
        await self.admin({"type": "kick_member", "network_id": network, "target_node_id": beta.node_id,
                          "node_id": alpha.node_id})

        async def kicked_out():
            return not await dials(1000)
        await wait_until(kicked_out, "alpha to refuse the kicked beta", timeout=SYNC_DEADLINE, interval=0.5)
        gamma_client = await gamma.connect()
        stream = await gamma_client.dial(alpha.address, 1000, timeout=10)
        stream.close()

        # An invite-only network: alpha (its owner) invites beta back; beta sees it and accepts.
        inner = await self.create(alpha, "inner", join_rule="invite", enterprise=True)
        direct = await self.on(beta, "network", "join", str(inner), "--json")
        self.assertEqual(direct.code, 1, direct)
        self.assertIn("network invites", direct.error()["hint"])
        invited = await self.on(alpha, "network", "invite", str(inner), str(beta.node_id))
        self.assertEqual(invited.stdout, f"invited node {beta.node_id} to network {inner}\n", invited)
        [invite] = (await self.ok(beta, "network", "invites"))["invites"]
        self.assertEqual((invite["network_id"], invite["inviter_id"]), (inner, alpha.node_id))
        accepted = await self.on(beta, "network", "accept", str(inner))
        self.assertEqual(accepted.stdout, f"accepted invite: joined network {inner}\n", accepted)
        self.assertEqual((await self.ok(beta, "network", "invites"))["invites"], [])
        await self.wait_reaches(beta, alpha, True, "beta to reach alpha through the invite-only network")
