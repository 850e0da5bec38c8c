"""The test-case base for the lab: one topology per process, fresh processes per test.

Building namespaces is cheap but not free, so a test process builds the
topology once (deleted at exit, or by the next run if this one is killed) and
every test resets the routers' NAT rules, conntrack tables and loss
rules before starting its own rendezvous and daemons (killed in its cleanup).
"""

import atexit
import os

from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.processes import wait_until
from tests.netlab import nat
from tests.netlab.processes import TUNNEL_PORT_BASE, LabDaemon, LabRendezvous
from tests.netlab.topology import HOSTS, ROUTERS, Topology, unavailable_reason


_shared = {}


def shared_topology():
    """The one topology of this process, built on first use and deleted when the process exits."""
    if "topology" not in _shared:
        _shared["topology"] = Topology().build()
        atexit.register(_shared["topology"].destroy)
    return _shared["topology"]


class LabTestCase(TestCase):
    timeout = 120

    def setUp(self):
        if "topology" not in _shared:
            reason = unavailable_reason()
            if reason:
                raise SkipTest(reason)
        self.topology = shared_topology()

    def tunnel_port(self, host):
        return TUNNEL_PORT_BASE + sorted(HOSTS).index(host)

    def set_nat(self, router, flavour):
        ports = {host: self.tunnel_port(host) for host, (behind, _) in HOSTS.items() if behind == router}
        nat.configure(self.topology, router, flavour, ports)

    async def start(self, flavours, hosts):
        """Routers get ``flavours`` (router -> flavour), then a rendezvous and a daemon per host."""
        for router in ROUTERS:
            self.set_nat(router, flavours.get(router, nat.CONE))
        for host in HOSTS:
            nat.set_loss(self.topology, host, 0)
        base = os.path.abspath(self.mktemp())
        self.rendezvous = await LabRendezvous(self, os.path.join(base, "rendezvous"),
                                              self.topology.ns("pub")).start()
        daemons = [LabDaemon(self, os.path.join(base, host), self.rendezvous, self.topology.ns(host),
                             self.tunnel_port(host), hostname=host) for host in hosts]
        started = await DeferredList([ensureDeferred(d.start()) for d in daemons], fireOnOneErrback=True,
                                     consumeErrors=True)
        return [daemon for _, daemon in started]

    async def wait_for_path(self, daemon, peer, path, timeout=30):
        """Poll ``pilotctl peers`` until ``daemon`` reaches ``peer`` over ``path``."""
        async def on_path():
            row = (await daemon.peers()).get(peer.node_id)
            return row is not None and row["path"] == path
        await wait_until(on_path, f"{daemon.hostname} to reach {peer.hostname} over the {path} path",
                         timeout=timeout, interval=0.5)
