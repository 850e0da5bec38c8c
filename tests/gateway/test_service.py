"""The gateway in-process over real daemons: bridging, backpressure both ways, control socket, DNS front.

No root needed: the aliases are a recording fake and every mapping's listener
binds 127.0.0.1 port 0 (the namespace test, tests/netlab/test_gateway.py, runs
the real thing with aliases and fixed ports).  The agent's side is a Twisted
protocol on a ``pilot:`` endpoint of the second daemon.
"""

import hashlib
import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol, serverFromString
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.names import client as dns_client, error as dns_error
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from pilotnet.endpoints import DaemonLink
from pilotnet.errors import NOT_FOUND, NOT_RUNNING, PilotError
from pilotnet.gateway import control
from pilotnet.gateway.mappings import MappingTable, parse_subnet
from pilotnet.gateway.service import Gateway
from tests.integration.processes import DaemonProcess, RendezvousProcess, pause, wait_until

PORT = 5080
SIZE = 24 * 1024 * 1024
#: What the gateway may hold for one connection while a side does not read (both buffers, generously).
GATEWAY_BUFFER_BOUND = 4 * 1024 * 1024


def escaped(path):
    return path.replace(":", "\\:")


class RecordingAliases:
    def __init__(self):
        self.present = set()
        self.stale = []

    def add(self, ip):
        self.present.add(ip)

    def remove(self, ip):
        self.present.discard(ip)

    def remove_stale(self, subnet):
        return self.stale


@implementer(IHalfCloseableProtocol)
class Peer(Protocol):
    """Either end of a test connection: collects, can stop reading, reports half-close."""

    def __init__(self):
        self.digest = hashlib.sha256()
        self.received = 0
        self.read_closed = Deferred()
        self.lost = Deferred()

    def dataReceived(self, data):
        self.digest.update(data)
        self.received += len(data)

    def readConnectionLost(self):
        self.read_closed.callback(None)

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        if not self.read_closed.called:
            self.read_closed.callback(None)
        self.lost.callback(None)


def payload(seed, size=SIZE):
    block = hashlib.sha256(seed).digest() * 4096
    return (block * (size // len(block) + 1))[:size]


class GatewayServiceTests(TestCase):
    timeout = 180

    async def start(self, dns_port=None):
        base = self.mktemp()
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        self.alpha = await DaemonProcess(self, os.path.join(base, "alpha"), rendezvous, hostname="alpha").start()
        self.beta = await DaemonProcess(self, os.path.join(base, "beta"), rendezvous, hostname="beta").start()
        directory = tempfile.mkdtemp(prefix="pilotgw-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.control_path = os.path.join(directory, "gateway.sock")
        self.bound = {}
        self.aliases = RecordingAliases()
        self.aliases.stale = ["10.4.0.3"]
        self.gateway = Gateway(
            reactor, DaemonLink(reactor, self.alpha.socket_path, keep=True), MappingTable(parse_subnet("10.4.0.0/16")),
            [PORT], self.aliases, control_path=self.control_path, listen=self.listen, dns_port=dns_port)
        self.gateway.startService()
        await self.gateway.ready
        self.addCleanup(self.gateway.stopService)
        self.agent_side = []
        listening = await serverFromString(reactor, f"pilot:{PORT}:socket={escaped(self.beta.socket_path)}") \
            .listen(Factory.forProtocol(self.agent_protocol))
        self.addCleanup(listening.stopListening)

    async def listen(self, ip, port, factory):
        listening = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.bound[(ip, port)] = listening.getHost().port
        return listening

    def agent_protocol(self):
        self.agent_side.append(Peer())
        return self.agent_side[-1]

    async def connect_tcp(self, ip):
        client = Peer()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.bound[(ip, PORT)]), client)
        await wait_until(lambda: self.agent_side, "the bridged stream to reach the agent")
        return client, self.agent_side[-1]

    def bridge(self, ip):
        [factory] = self.gateway._bridges[ip]
        [tcp_side] = factory.connections
        return tcp_side

    async def test_agent_to_tcp_stalls_the_agent_when_the_tcp_client_does_not_read(self):
        await self.start()
        mapping = await self.gateway.map("beta")
        client, agent = await self.connect_tcp(mapping.local_ip)
        client.transport.pauseProducing()  # the TCP client stops reading
        data = payload(b"down")
        agent.transport.write(data)
        tcp_side = self.bridge(mapping.local_ip)
        stream = tcp_side.peer.transport.stream

        def held():
            tcp = tcp_side.transport
            return len(stream._buffer) + len(tcp.dataBuffer) + tcp._tempDataLen

        await pause(3)
        self.assertLess(held(), GATEWAY_BUFFER_BOUND)
        unsent = sum(len(chunk) for chunk, _ in agent.transport.stream._chunks)
        self.assertGreater(unsent, SIZE // 2)  # the agent waits instead of the gateway filling up
        client.transport.resumeProducing()
        agent.transport.loseConnection()
        await client.read_closed  # the agent's FIN reached the TCP client as its end of input
        self.assertEqual((client.received, client.digest.digest()), (SIZE, hashlib.sha256(data).digest()))
        client.transport.loseConnection()
        await agent.lost

    async def test_tcp_to_agent_stalls_the_tcp_client_when_the_agent_does_not_read(self):
        await self.start()
        mapping = await self.gateway.map("beta")
        client, agent = await self.connect_tcp(mapping.local_ip)
        agent.transport.pauseProducing()  # the agent stops reading
        data = payload(b"up")
        client.transport.write(data)
        client.transport.loseWriteConnection()
        tcp_side = self.bridge(mapping.local_ip)
        stream = tcp_side.peer.transport.stream
        await pause(3)
        queued = sum(len(chunk) for chunk, _ in stream._chunks)
        self.assertLess(queued, GATEWAY_BUFFER_BOUND)
        client_unsent = len(client.transport.dataBuffer) + client.transport._tempDataLen
        self.assertGreater(client_unsent, SIZE // 2)  # the TCP client waits instead of the gateway filling up
        agent.transport.resumeProducing()
        await agent.read_closed  # the client's half-close arrived as the agent's end of input
        self.assertEqual((agent.received, agent.digest.digest()), (SIZE, hashlib.sha256(data).digest()))
        # Half-close: the agent still answers after the client finished sending.
        agent.transport.write(b"answer after your FIN")
        agent.transport.loseConnection()
        await client.read_closed
        self.assertEqual(client.received, len(b"answer after your FIN"))
        client.transport.loseConnection()
        await client.lost

    async def test_map_unmap_status_over_the_control_socket(self):
        await self.start()
        self.assertEqual(self.aliases.present, set())
        mapping = (await control.call(reactor, self.control_path, control.Map, target="beta"))["mapping"]
        self.assertEqual((mapping["local_ip"], mapping["pilot_addr"], mapping["hostname"]),
                         ("10.4.0.1", self.beta.address, "beta"))
        self.assertEqual(mapping["ports"], [self.bound[("10.4.0.1", PORT)]])
        again = (await control.call(reactor, self.control_path, control.Map, target=self.beta.address,
                                    ip="10.4.0.8"))["mapping"]
        self.assertEqual(again["local_ip"], "10.4.0.1")
        status = (await control.call(reactor, self.control_path, control.Status))["status"]
        self.assertEqual((status["subnet"], status["ports"], len(status["mappings"])), ("10.4.0.0/16", [PORT], 1))
        self.assertEqual(self.aliases.present, {"10.4.0.1"})
        with self.assertRaises(PilotError) as raised:
            await control.call(reactor, self.control_path, control.Map, target="no-such-agent")
        self.assertEqual(raised.exception.code, NOT_FOUND)
        with self.assertRaises(PilotError) as raised:
            await control.call(reactor, self.control_path, control.Unmap, ip="10.4.0.9")
        self.assertEqual((raised.exception.code, raised.exception.message), (NOT_FOUND, "no mapping for 10.4.0.9"))
        await control.call(reactor, self.control_path, control.Unmap, ip="10.4.0.1")
        self.assertEqual(self.aliases.present, set())
        self.assertEqual(os.stat(self.control_path).st_mode & 0o777, 0o600)
        await self.gateway.stopService()
        with self.assertRaises(PilotError) as raised:
            await control.call(reactor, self.control_path, control.Status)
        self.assertEqual(raised.exception.code, NOT_RUNNING)

    async def test_stop_removes_every_alias_and_listener(self):
        await self.start()
        await self.gateway.map("beta")
        await self.gateway.map(self.alpha.address)
        self.assertEqual(self.aliases.present, {"10.4.0.1", "10.4.0.2"})
        await self.gateway.stopService()
        self.assertEqual(self.aliases.present, set())
        self.assertEqual(self.gateway._listeners, {})

    async def test_dns_front_answers_a_queries_for_agents(self):
        await self.start(dns_port=0)
        port = self.gateway.dns_address.port
        resolver = dns_client.Resolver(servers=[("127.0.0.1", port)], reactor=reactor)
        answers, _, _ = await resolver.lookupAddress("beta.pilot")
        self.assertEqual([(a.name.name, a.payload.dottedQuad()) for a in answers], [(b"beta.pilot", "10.4.0.1")])
        self.assertEqual(self.aliases.present, {"10.4.0.1"})  # mapped on demand
        answers, _, _ = await resolver.lookupAddress(f"{self.alpha.node_id}.pilot")
        self.assertEqual(answers[0].payload.dottedQuad(), "10.4.0.2")
        answers, _, _ = await resolver.lookupIPV6Address("beta.pilot")
        self.assertEqual(answers, [])
        for name in ("nobody-here.pilot", "example.com", "a.b.pilot"):
            with self.assertRaises(dns_error.DNSNameError):
                await resolver.lookupAddress(name)


class ControlOwnershipTests(SynchronousTestCase):
    def test_a_root_gateway_hands_its_control_socket_to_the_daemon_sockets_owner(self):
        daemon_socket = self.mktemp()
        open(daemon_socket, "w").close()
        owner = os.stat(daemon_socket)
        chowned = []
        self.patch(os, "geteuid", lambda: 0)
        self.patch(os, "chown", lambda path, uid, gid: chowned.append((path, uid, gid)))
        gateway = Gateway(reactor, DaemonLink(reactor, daemon_socket, keep=True),
                          MappingTable(parse_subnet("10.4.0.0/16")), [80], RecordingAliases(), control_path="/x/gw.sock")
        gateway._hand_control_to_daemon_owner()
        self.assertEqual(chowned, [("/x/gw.sock", owner.st_uid, owner.st_gid)])
        self.patch(os, "geteuid", lambda: 1000)  # not root: nothing to hand over
        gateway._hand_control_to_daemon_owner()
        self.assertEqual(len(chowned), 1)
