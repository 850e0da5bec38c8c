"""Real daemons behind real Linux NATs: which path each NAT pairing gets, and that it carries traffic.

Hosts h1 (behind r1) and h3 (behind r2) meet across the lab's internet; h2
shares h1's LAN.  Each test gives the routers their NAT flavours, starts a
rendezvous and the daemons, proves a stream and datagrams both ways, and
checks the path both daemons report through ``pilotctl peers --json``.
"""

from twisted.internet import reactor

from tests.netlab import nat
from tests.netlab.lab import LabTestCase
from tests.netlab.traffic import prove_both_ways, report, stream_both_ways

DIRECT = "direct"
RELAY = "relay"


class NATScenarioTests(LabTestCase):

    async def scenario(self, flavours, hosts, path):
        a, b = await self.start(flavours, hosts)
        await prove_both_ways(self, a, b)
        await self.assert_path(a, b, path)
        return a, b

    async def assert_path(self, a, b, path):
        self.assertEqual(((await a.peers())[b.node_id]["path"], (await b.peers())[a.node_id]["path"]),
                         (path, path))

    async def test_same_lan_behind_one_nat(self):
        """Two hosts behind the same router reach each other on the LAN (no hairpin NAT)."""
        await self.scenario({"r1": nat.CONE}, ["h1", "h2"], DIRECT)

    async def test_cone_to_cone_punches_through(self):
        await self.scenario({"r1": nat.CONE, "r2": nat.CONE}, ["h1", "h3"], DIRECT)

    async def test_full_cone_to_symmetric_is_direct(self):
        """The full-cone side dials: the symmetric side's punch is what opens the path."""
        await self.scenario({"r1": nat.FULL_CONE, "r2": nat.SYMMETRIC}, ["h1", "h3"], DIRECT)

    async def test_symmetric_to_full_cone_is_direct(self):
        await self.scenario({"r1": nat.SYMMETRIC, "r2": nat.FULL_CONE}, ["h1", "h3"], DIRECT)

    async def test_cone_to_symmetric_is_relayed(self):
        await self.scenario({"r1": nat.CONE, "r2": nat.SYMMETRIC}, ["h1", "h3"], RELAY)

    async def test_symmetric_to_symmetric_is_relayed(self):
        await self.scenario({"r1": nat.SYMMETRIC, "r2": nat.SYMMETRIC}, ["h1", "h3"], RELAY)

    async def test_relayed_path_turns_direct_when_the_nat_allows_it(self):
        a, b = await self.start({"r1": nat.CONE, "r2": nat.SYMMETRIC}, ["h1", "h3"])
        outgoing, incoming = await prove_both_ways(self, a, b)
        await self.assert_path(a, b, RELAY)
        self.set_nat("r2", nat.CONE)
        started = reactor.seconds()
        await self.wait_for_path(a, b, DIRECT)
        await self.wait_for_path(b, a, DIRECT)
        report(self, "relay to direct after", f"{reactor.seconds() - started:.1f} s")
        await stream_both_ways(self, outgoing, incoming, b"after the switch")
        await self.assert_path(a, b, DIRECT)

    async def test_tunnel_recovers_when_the_nat_forgets_its_mappings(self):
        """A symmetric router's flush gives the host a new public port; the open stream carries on."""
        a, b = await self.start({"r1": nat.SYMMETRIC, "r2": nat.FULL_CONE}, ["h1", "h3"])
        outgoing, incoming = await prove_both_ways(self, a, b)
        before = (await b.peers())[a.node_id]["endpoint"]
        nat.flush_mappings(self.topology, "r1")
        started = reactor.seconds()
        await stream_both_ways(self, outgoing, incoming, b"after the flush")
        await stream_both_ways(self, outgoing, incoming, b"and again")
        report(self, "recovered after the flush in", f"{(reactor.seconds() - started) * 1000:.0f} ms")
        await self.assert_path(a, b, DIRECT)
        self.assertNotEqual((await b.peers())[a.node_id]["endpoint"], before)
