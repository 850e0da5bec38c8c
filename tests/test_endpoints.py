"""``pilot:`` endpoints and HTTP over Pilot, with real daemons at a real rendezvous.

A Twisted protocol listens with ``serverFromString(reactor, "pilot:…")`` on one
daemon and another dials it with ``clientFromString``; twisted.web serves and
``Agent``/treq fetch over Pilot; a dial to a host nobody has fails with a
``ConnectError`` carrying the project's error code.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol, serverFromString
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data, File
from zope.interface import implementer

from pilotnet.endpoints import PilotConnectError, pilot_agent
from pilotnet.errors import NOT_FOUND
from pilotnet.stream_transport import PilotAddress
from tests.integration.processes import DaemonProcess, RendezvousProcess, _Collect, wait_until

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def escaped(path):
    return path.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


@implementer(IHalfCloseableProtocol)
class Collect(Protocol):
    """Keeps what arrives; answers the sha256 of it when the peer half-closes."""

    def __init__(self):
        self.received = bytearray()
        self.ended = Deferred()

    def dataReceived(self, data):
        self.received += data

    def readConnectionLost(self):
        self.transport.write(hashlib.sha256(self.received).hexdigest().encode())
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        if not self.ended.called:
            self.ended.callback(bytes(self.received))


@implementer(IHalfCloseableProtocol)
class SendThenRead(Collect):
    def __init__(self, payload):
        super().__init__()
        self.payload = payload

    def connectionMade(self):
        self.transport.write(self.payload)
        self.transport.loseWriteConnection()

    def readConnectionLost(self):
        self.transport.loseConnection()


class EndpointTests(TestCase):
    timeout = 120

    async def start(self):
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        self.alpha = await DaemonProcess(self, os.path.join(base, "alpha"), self.rendezvous, hostname="alpha").start()
        self.beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous, hostname="beta").start()

    async def listen(self, daemon, port, factory):
        endpoint = serverFromString(reactor, f"pilot:{port}:socket={escaped(daemon.socket_path)}")
        listening = await endpoint.listen(factory)
        self.addCleanup(listening.stopListening)
        return listening

    def client(self, daemon, target, port):
        return clientFromString(reactor, f"pilot:{escaped(target)}:{port}:socket={escaped(daemon.socket_path)}")

    async def test_server_and_client_endpoints_carry_bytes_and_half_close(self):
        await self.start()
        served = []

        def build():
            served.append(Collect())
            return served[-1]

        listening = await self.listen(self.beta, 5000, Factory.forProtocol(build))
        self.assertEqual(listening.getHost(), PilotAddress(self.beta.address, 5000))
        payload = os.urandom(3 * 1024 * 1024 + 17)
        protocol = await connectProtocol(self.client(self.alpha, "beta", 5000), SendThenRead(payload))
        self.assertEqual(protocol.transport.getPeer(), PilotAddress(self.beta.address, 5000))
        answer = await protocol.ended
        self.assertEqual(answer, hashlib.sha256(payload).hexdigest().encode())
        self.assertEqual(bytes(served[0].received), payload)
        self.assertEqual(served[0].transport.getPeer().host, self.alpha.address)

    async def test_client_endpoint_by_address_and_node_id(self):
        await self.start()
        await self.listen(self.beta, 5001, Factory.forProtocol(Collect))
        for target in (self.beta.address, str(self.beta.node_id)):
            protocol = await connectProtocol(self.client(self.alpha, target, 5001), SendThenRead(b"x" * 10))
            self.assertEqual(await protocol.ended, hashlib.sha256(b"x" * 10).hexdigest().encode())

    async def test_unknown_host_is_a_connect_error_with_our_code(self):
        await self.start()
        endpoint = self.client(self.alpha, "nobody-has-this-name", 80)
        with self.assertRaises(ConnectError) as raised:
            await connectProtocol(endpoint, Protocol())
        self.assertIsInstance(raised.exception, PilotConnectError)
        self.assertEqual(raised.exception.code, NOT_FOUND)
        self.assertIn("nobody-has-this-name", raised.exception.message)

    async def test_no_daemon_is_a_connect_error_saying_not_running(self):
        endpoint = clientFromString(reactor, f"pilot:beta:80:socket={escaped(self.mktemp())}")
        with self.assertRaises(PilotConnectError) as raised:
            await connectProtocol(endpoint, Protocol())
        self.assertEqual(raised.exception.code, "not_running")

    async def test_web_site_over_pilot_fetched_with_agent_and_treq(self):
        await self.start()
        root = Resource()
        big = os.urandom(2 * 1024 * 1024)
        root.putChild(b"", Data(b"hello over pilot", "text/plain"))
        root.putChild(b"big", Data(big, "application/octet-stream"))
        files = self.mktemp()
        os.makedirs(files)
        with open(os.path.join(files, "large.bin"), "wb") as handle:
            handle.write(big[::-1])
        root.putChild(b"files", File(files))  # served by a pull producer, a chunk when asked
        await self.listen(self.beta, 80, Site(root))
        agent = pilot_agent(reactor, self.alpha.socket_path)
        for url in ("http://beta/", "http://beta.pilot/", "pilot://beta/", f"http://{self.beta.node_id}/"):
            response = await treq.get(url, agent=agent)
            self.assertEqual((response.code, await response.content()), (200, b"hello over pilot"), url)
        response = await treq.get("http://beta/big", agent=agent)
        self.assertEqual(hashlib.sha256(await response.content()).digest(), hashlib.sha256(big).digest())
        response = await treq.get("http://beta/files/large.bin", agent=agent)
        self.assertEqual(hashlib.sha256(await response.content()).digest(), hashlib.sha256(big[::-1]).digest())
        with self.assertRaises(PilotConnectError) as raised:
            await treq.get("http://nobody-has-this-name/", agent=agent)
        self.assertEqual(raised.exception.code, NOT_FOUND)

    def example(self, daemon, script, *args):
        """``examples/<script>`` as a program of ``daemon``'s node; its output collector (killed in cleanup)."""
        collect = _Collect()
        env = dict(os.environ, PILOT_SOCKET=daemon.socket_path, PILOT_HOME=daemon.home)
        process = reactor.spawnProcess(collect, sys.executable, [sys.executable, str(EXAMPLES / script), *args],
                                       env=env)
        self.addCleanup(lambda: None if collect.ended.called else process.signalProcess("KILL") or collect.ended)
        return collect

    async def test_the_klein_example_served_and_fetched_by_the_client_example(self):
        await self.start()
        server = self.example(self.beta, "webserver.py")
        await wait_until(lambda: b"serving on" in server.stdout, "examples/webserver.py to listen", timeout=30)
        self.assertIn(f"serving on {self.beta.address} port 80".encode(), server.stdout)
        fetcher = self.example(self.alpha, "httpclient.py", "http://beta/api/status")
        self.assertEqual(await fetcher.ended, 0, fetcher.stderr)
        self.assertEqual(json.loads(fetcher.stdout), {"status": "ok", "served_over": "pilot"})
        self.assertIn(b"HTTP 200 OK", fetcher.stderr)
        page = self.example(self.alpha, "httpclient.py", "pilot://beta/")
        self.assertEqual(await page.ended, 0, page.stderr)
        self.assertIn(f"You are {self.alpha.address}".encode(), page.stdout)
        missing = self.example(self.alpha, "httpclient.py", "http://nobody-has-this-name/")
        self.assertEqual(await missing.ended, 1)
        self.assertIn(b"[not_found]", missing.stderr)
