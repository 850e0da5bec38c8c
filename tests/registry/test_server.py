"""The registry over real TCP sockets on 127.0.0.1."""

import json
import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pilotnet.daemon.registry_link import RegistryLink
from pilotnet.errors import PilotError
from pilotnet.registry import tls
from pilotnet.registry.challenges import sign_fresh_request, sign_request
from pilotnet.registry.client import RegistryError, connect_registry
from pilotnet.registry import server as server_module
from pilotnet.registry.framing import MAX_MESSAGE, FrameDecoder
from pilotnet.registry.handlers import Registry
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.server import RegistryFactory, RegistryServer
from tests.registry.fixtures import identity


class _RawClient(Protocol):
    """Records what the server sends and when it hangs up."""

    def __init__(self):
        self.received = b""
        self.closed = Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(None)


class RegistryOverTCPTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        registry = Registry(register_limiter=RateLimiter(burst=100, window=60.0))
        self.factory = RegistryFactory(RegistryServer(registry, self.clock), max_connections=3)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    @inlineCallbacks
    def client(self):
        client = yield connect_registry(reactor, f"tcp:127.0.0.1:{self.port.getHost().port}")
        self.addCleanup(client.transport.abortConnection)
        return client

    @inlineCallbacks
    def raw(self):
        raw = _RawClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        yield connectProtocol(endpoint, raw)
        self.addCleanup(raw.transport.abortConnection)
        return raw

    @inlineCallbacks
    def test_register_and_pipelined_requests_in_order(self):
        client = yield self.client()
        alice = identity(1)
        registered = yield client.request({"type": "register", "public_key": alice.public_key_b64,
                                           "listen_addr": "0.0.0.0:4000"})
        node_id = registered["node_id"]
        self.assertEqual(registered["observed_addr"], "127.0.0.1:4000")
        replies = yield gatherResults([
            client.request(sign_request(alice, {"type": "heartbeat", "node_id": node_id})),
            client.request({"type": "lookup", "node_id": node_id}),
            client.request({"type": "list_networks"}),
        ])
        self.assertEqual([r["type"] for r in replies],
                         ["heartbeat_ok", "lookup_ok", "list_networks_ok"])

    @inlineCallbacks
    def test_error_reply_keeps_the_connection(self):
        client = yield self.client()
        with self.assertRaises(RegistryError) as raised:
            yield client.request({"type": "lookup", "node_id": 42})
        self.assertEqual(raised.exception.message, "node 42: node not found")
        self.assertEqual(raised.exception.code, "not_found")
        reply = yield client.request({"type": "beacon_list"})
        self.assertEqual(reply["beacons"], [])

    @inlineCallbacks
    def test_bad_json_answered_and_connection_kept(self):
        raw = yield self.raw()
        raw.transport.write(struct.pack(">I", 3) + b"{x}" + struct.pack(">I", 2) + b"{}")
        while raw.received.count(b'"type":"error"') < 2:
            yield _tick()
        self.assertIn(b"registry message: not valid JSON", raw.received)
        self.assertIn(b'unknown message type: \\"\\"', raw.received)

    @inlineCallbacks
    def test_oversized_message_closes_the_connection(self):
        raw = yield self.raw()
        raw.transport.write(struct.pack(">I", MAX_MESSAGE + 1))
        yield raw.closed
        self.assertIn(b"exceeds the 4194304-byte limit", raw.received)

    @inlineCallbacks
    def test_idle_connection_closed_after_five_minutes(self):
        raw = yield self.raw()
        while not self.factory.connections:
            yield _tick()
        self.clock.advance(299)
        self.assertFalse(raw.closed.called)
        self.clock.advance(2)
        yield raw.closed

    @inlineCallbacks
    def test_connection_cap(self):
        clients = []
        for _ in range(3):
            clients.append((yield self.client()))
        refused = yield self.raw()
        yield refused.closed
        reply = yield clients[0].request({"type": "beacon_list"})
        self.assertEqual(reply["type"], "beacon_list_ok")

    @inlineCallbacks
    def test_flooding_client_disconnected(self):
        self.patch(server_module, "HARD_REQUEST_RATE", 20)
        raw = yield self.raw()
        frame = struct.pack(">I", 22) + b'{"type":"beacon_list"}'
        raw.transport.write(frame * 50)
        yield raw.closed
        # Replies still in the send buffer are dropped with the connection.
        self.assertLessEqual(raw.received.count(b"beacon_list_ok"), 20)
        client = yield self.client()
        yield client.request({"type": "beacon_list"})


def _tick():
    waiting = Deferred()
    reactor.callLater(0.001, waiting.callback, None)
    return waiting


class RequestRateTests(SynchronousTestCase):
    """The per-connection limits, counted per read (StringTransport, a Clock)."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        factory = RegistryFactory(RegistryServer(Registry(), self.clock))
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, count):
        body = b'{"type":"beacon_list"}'
        self.protocol.dataReceived((struct.pack(">I", len(body)) + body) * count)

    def replies(self):
        return FrameDecoder().feed(self.transport.value())

    def test_under_the_soft_rate_nothing_pauses(self):
        for _ in range(20):
            self.send(9)
            self.clock.advance(0.1)
        self.assertEqual(len(self.replies()), 180)
        self.assertEqual(self.transport.producerState, "producing")

    def test_over_the_soft_rate_all_answered_then_reading_pauses(self):
        self.send(server_module.SOFT_REQUEST_RATE + 50)
        self.assertEqual(len(self.replies()), server_module.SOFT_REQUEST_RATE + 50)
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(server_module.THROTTLE_DELAY)
        self.assertEqual(self.transport.producerState, "producing")

    def test_over_the_hard_rate_the_connection_is_dropped_unanswered(self):
        self.send(server_module.HARD_REQUEST_RATE + 1)
        self.assertEqual(self.replies(), [])
        self.assertTrue(self.transport.disconnecting)


class _Frames(_RawClient):
    """A raw client that also decodes the replies it got."""

    def replies(self):
        return [json.loads(body) for body in FrameDecoder().feed(self.received)]


def _frame(message):
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


class AttacksOverTCPTests(TestCase):
    """Issue 14's registry attacks, performed over real sockets against a real registry."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.registry = Registry(register_limiter=RateLimiter(burst=100, window=60.0))
        self.factory = RegistryFactory(RegistryServer(self.registry, self.clock),
                                       max_per_ip=3, max_buffered=1000, request_deadline=30.0)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    @inlineCallbacks
    def connect(self, source="127.0.0.1", client=None):
        client = client if client is not None else _Frames()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port,
                                      bindAddress=(source, 0))
        yield connectProtocol(endpoint, client)
        self.addCleanup(client.transport.abortConnection)
        return client

    @inlineCallbacks
    def ask(self, client, message):
        expected = len(client.replies()) + 1
        client.transport.write(_frame(message))
        while len(client.replies()) < expected and not client.closed.called:
            yield _tick()
        return client.replies()[-1]

    @inlineCallbacks
    def test_register_with_a_live_nodes_key_from_elsewhere_changes_nothing(self):
        alice = identity(1)
        owner = yield self.connect()
        registered = yield self.ask(owner, sign_fresh_request(alice, {
            "type": "register", "public_key": alice.public_key_b64,
            "listen_addr": "0.0.0.0:4000", "hostname": "alice"}, self.clock.seconds()))
        node_id = registered["node_id"]
        attacker = yield self.connect("127.0.0.2")
        hijack = yield self.ask(attacker, {"type": "register", "public_key": alice.public_key_b64,
                                           "listen_addr": "0.0.0.0:6666", "hostname": "mallory",
                                           "lan_addrs": ["10.6.6.6:6666"]})
        self.assertIn("register refused", hijack["error"])
        node = self.registry.directory.nodes[node_id]
        self.assertEqual((node.real_addr, node.hostname, node.lan_addrs),
                         ("127.0.0.1:4000", "alice", ()))
        # A Go-style unsigned re-registration from the node's own address still works.
        again = yield self.ask(owner, {"type": "register", "public_key": alice.public_key_b64,
                                       "listen_addr": "0.0.0.0:4001", "hostname": "alice"})
        self.assertEqual((again["node_id"], again["observed_addr"]), (node_id, "127.0.0.1:4001"))

    @inlineCallbacks
    def test_captured_legacy_set_visibility_is_refused_over_plaintext(self):
        alice = identity(1)
        client = yield self.connect()
        node_id = (yield self.ask(client, {"type": "register",
                                           "public_key": alice.public_key_b64}))["node_id"]
        captured = sign_request(alice, {"type": "set_visibility", "node_id": node_id,
                                        "public": False})
        replayed = yield self.ask(client, dict(captured, public=True))
        self.assertIn("only over TLS", replayed["error"])
        self.assertFalse(self.registry.directory.nodes[node_id].public)

    @inlineCallbacks
    def test_a_daemon_with_a_skewed_clock_signs_on_the_registrys_clock(self):
        """This registry's clock is years behind ours: signed requests are stale until a reply
        carrying the registry's time tells the link the offset."""
        alice = identity(1)
        link = RegistryLink(reactor, f"127.0.0.1:{self.port.getHost().port}", alice)
        link.startService()
        self.addCleanup(link.stopService)
        register = {"type": "register", "public_key": alice.public_key_b64}
        with self.assertRaises(PilotError) as stale:
            yield link.signed(register)
        self.assertIn("stale signature", stale.exception.message)
        node_id = (yield link.request(register))["node_id"]
        reply = yield link.signed({"type": "set_visibility", "node_id": node_id, "public": True})
        self.assertEqual(reply["type"], "set_visibility_ok")

    @inlineCallbacks
    def test_one_source_ip_cannot_take_every_slot(self):
        for _ in range(3):
            yield self.connect()
        while len(self.factory.connections) < 3:
            yield _tick()
        refused = yield self.connect()
        yield refused.closed
        other = yield self.connect("127.0.0.2")
        reply = yield self.ask(other, {"type": "beacon_list"})
        self.assertEqual(reply["type"], "beacon_list_ok")

    @inlineCallbacks
    def test_unfinished_requests_share_one_budget(self):
        first = yield self.connect()
        first.transport.write(struct.pack(">I", 2000) + b"x" * 600)
        while self.factory.budget.used < 600:
            yield _tick()
        second = yield self.connect("127.0.0.2")
        second.transport.write(struct.pack(">I", 2000) + b"y" * 600)
        yield second.closed
        self.assertFalse(first.closed.called)
        self.assertLessEqual(self.factory.budget.used, 1000)
        first.transport.abortConnection()
        yield first.closed
        while self.factory.budget.used:
            yield _tick()

    @inlineCallbacks
    def test_a_one_byte_trickle_does_not_keep_a_connection(self):
        client = yield self.connect()
        frame = _frame({"type": "beacon_list"})
        sent = 0
        while not client.closed.called and sent < len(frame):
            client.transport.write(frame[sent:sent + 1])
            sent += 1
            while self.factory.budget.used < 1 and sent > 4 and not client.closed.called:
                yield _tick()
            yield _tick()
            self.clock.advance(5)
        yield client.closed
        self.assertLess(sent, len(frame))
        self.assertEqual(client.replies(), [])


class TLSRegistryTests(TestCase):
    """Over TLS (pinned), the legacy Go forms are accepted: they cannot be captured there."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.registry = Registry(register_limiter=RateLimiter(burst=100, window=60.0))
        key, certificate = tls.self_signed_certificate()
        self.fingerprint = tls.fingerprint(certificate)
        factory = RegistryFactory(RegistryServer(self.registry, self.clock), over_tls=True)
        self.port = reactor.listenTCP(0, tls.tls_factory(factory, key, certificate),
                                      interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    def connect(self, fingerprint):
        link = RegistryLink(reactor, f"127.0.0.1:{self.port.getHost().port}", identity(1),
                            fingerprint)
        link.startService()
        self.addCleanup(link.stopService)
        return link

    @inlineCallbacks
    def test_legacy_signature_accepted_over_pinned_tls(self):
        alice = identity(1)
        link = self.connect(self.fingerprint)
        node_id = (yield link.request({"type": "register",
                                       "public_key": alice.public_key_b64}))["node_id"]
        reply = yield link.request(sign_request(alice, {"type": "set_visibility",
                                                        "node_id": node_id, "public": True}))
        self.assertEqual(reply["type"], "set_visibility_ok")

    @inlineCallbacks
    def test_a_go_daemons_requests_work_over_tls(self):
        """What a Go daemon sends, signed as Go signs: register (unsigned), heartbeat, set_tags,
        resolve and the relayed handshake, between two Go-style nodes."""
        alice, bob = identity(1), identity(2)
        link = self.connect(self.fingerprint)
        a = (yield link.request({"type": "register", "public_key": alice.public_key_b64,
                                 "listen_addr": "0.0.0.0:4000", "owner": "a@example.com"}))["node_id"]
        b = (yield link.request({"type": "register", "public_key": bob.public_key_b64,
                                 "listen_addr": "0.0.0.0:4001"}))["node_id"]
        steps = [
            (alice, {"type": "heartbeat", "node_id": a}),
            (alice, {"type": "set_tags", "node_id": a, "tags": ["gpu"]}),
            (alice, {"type": "request_handshake", "from_node_id": a, "to_node_id": b,
                     "justification": "hi"}),
            (bob, {"type": "poll_handshakes", "node_id": b}),
            (bob, {"type": "respond_handshake", "node_id": b, "peer_id": a, "accept": True}),
            (alice, {"type": "resolve", "node_id": b, "requester_id": a}),
        ]
        for who, request in steps:
            reply = yield link.request(sign_request(who, request))
            self.assertEqual(reply["type"], request["type"] + "_ok", reply)
        self.assertEqual(reply["real_addr"], "127.0.0.1:4001")
        again = yield link.request({"type": "register", "public_key": alice.public_key_b64,
                                    "listen_addr": "0.0.0.0:4002"})
        self.assertEqual(again["node_id"], a)

    @inlineCallbacks
    def test_a_different_certificate_is_refused(self):
        link = self.connect("00" * 32)
        with self.assertRaises(PilotError):
            yield link.request({"type": "beacon_list"})
