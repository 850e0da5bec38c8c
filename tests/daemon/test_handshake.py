"""Port 444: reassembling objects split over segments, and every reason a message is refused."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.crypto.identity import Identity
from pilotnet.daemon.handshake import (
    READ_TIMEOUT, HandshakeCourier, HandshakePort, Rejected, ReplayCache, Verifier, object_end,
)
from pilotnet.errors import DecodeError
from pilotnet.wire import handshake
from pilotnet.wire.address import Addr
from tests.daemon.fakes import StaticKeys

ME, PEER, OTHER = 5, 6, 7
NOW = 1_700_000_000


class ObjectEndTests(SynchronousTestCase):
    def test_complete_incomplete_and_braces_inside_strings(self):
        self.assertIsNone(object_end(b'{"a": "x'))
        self.assertIsNone(object_end(b'  {"a": {"b": 1}'))
        self.assertEqual(object_end(b'{"a": "}\\"{"}trailing'), len(b'{"a": "}\\"{"}'))

    def test_not_an_object(self):
        self.assertRaises(DecodeError, object_end, b'["x"]')


class ReplayCacheTests(SynchronousTestCase):
    def test_replays_expiry_and_capacity(self):
        cache = ReplayCache(capacity=2, ttl=10)
        self.assertTrue(cache.add(b"a", 0))
        self.assertFalse(cache.add(b"a", 5))
        self.assertTrue(cache.add(b"b", 5))
        self.assertFalse(cache.add(b"c", 6))  # full: refused rather than forgetting a live entry
        self.assertTrue(cache.add(b"c", 11))  # "a" expired and was pruned
        self.assertTrue(cache.add(b"a", 16))


class VerifierTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.peer = Identity.generate()
        self.keys = StaticKeys({PEER: self.peer.public_key})
        self.verifier = Verifier(self.clock, self.keys, lambda: ME)

    def message(self, identity=None, sender=PEER, timestamp=NOW, kind=handshake.REQUEST):
        return handshake.build_message(kind, identity or self.peer, sender, ME, timestamp, justification="hi")

    def verify(self, message, sender=PEER):
        data = message if isinstance(message, bytes) else handshake.encode_message(message)
        return self.successResultOf(self.verifier.verify(data, sender).addErrback(lambda f: f.trap(Rejected) and f.value))

    def test_a_genuine_message_passes_once(self):
        message = self.message()
        self.assertEqual(self.verify(message), message)
        self.assertEqual(self.verify(message).reason, "replayed")

    def test_refusals_are_counted_by_reason(self):
        forger = Identity.generate()
        cases = {
            "malformed": b'{"type": "handshake_request"}',
            "stale": self.message(timestamp=NOW - handshake.MAX_AGE - 1),
            "unsigned": self.message()._replace(signature=b""),
            "bad_signature": self.message()._replace(signature=forger.sign(handshake.challenge(PEER, ME))),
            "key_mismatch": self.message(identity=forger),
        }
        for reason, message in cases.items():
            self.assertEqual(self.verify(message).reason, reason)
        self.assertEqual(self.verify(self.message(timestamp=NOW + 31)).reason, "stale")
        self.assertEqual({k: v for k, v in self.verifier.rejected.items() if v},
                         {"malformed": 1, "stale": 2, "unsigned": 1, "bad_signature": 1, "key_mismatch": 1})

    def test_a_message_naming_another_node_than_its_tunnel_source(self):
        """The signature binds only sender:receiver, so the tunnel's authenticated source must match."""
        other = Identity.generate()
        self.keys.keys[OTHER] = other.public_key
        self.assertEqual(self.verify(self.message(identity=other, sender=OTHER), sender=PEER).reason, "wrong_sender")

    def test_a_node_the_registry_does_not_know(self):
        stranger = Identity.generate()
        self.assertEqual(self.verify(self.message(identity=stranger, sender=OTHER), sender=OTHER).reason,
                         "unknown_key")


class FakeStream:
    def __init__(self, conn_id, node):
        self.conn_id = conn_id
        self.remote = Addr(0, node)


class FakeStreams:
    def __init__(self):
        self.bound = {}
        self.closed = []
        self.written = []

    def bind(self, port, owner):
        self.bound[port] = owner

    def close(self, conn_id):
        self.closed.append(conn_id)

    def write(self, conn_id, data, owner):
        self.written.append((conn_id, data))
        return defer.succeed(None)


class HandshakePortTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.peer = Identity.generate()
        self.streams = FakeStreams()
        self.delivered = []
        verifier = Verifier(self.clock, StaticKeys({PEER: self.peer.public_key}), lambda: ME)
        self.verifier = verifier
        self.port = HandshakePort(self.streams, self.clock, verifier, self.delivered.append)

    def test_an_object_split_over_many_segments_is_reassembled(self):
        message = handshake.build_message(handshake.REQUEST, self.peer, PEER, ME, NOW, justification="x" * 3000)
        data = handshake.encode_message(message)
        self.port.stream_accepted(444, FakeStream(1, PEER))
        for start in range(0, len(data), 1024):
            self.port.stream_data(1, data[start:start + 1024])
        self.assertEqual(self.delivered, [message])
        self.assertEqual(self.streams.closed, [1])

    def test_an_incomplete_object_is_given_up_after_the_read_timeout(self):
        self.port.stream_accepted(444, FakeStream(2, PEER))
        self.port.stream_data(2, b'{"type": "handshake_req')
        self.clock.advance(READ_TIMEOUT)
        self.assertEqual(self.streams.closed, [2])
        self.assertEqual((self.delivered, self.verifier.rejected["malformed"]), ([], 1))


class CourierTests(SynchronousTestCase):
    def test_one_write_then_close_and_done_when_the_peer_closes(self):
        clock = Clock()
        streams = FakeStreams()
        dialled = []

        def dial(address, port, owner, timeout):
            dialled.append((address, port))
            return defer.succeed(FakeStream(9, address.node))

        courier = HandshakeCourier(dial, streams, clock)
        message = handshake.build_message(handshake.ACCEPT, Identity.generate(), ME, PEER, NOW)
        sending = courier.send(PEER, message)
        self.assertEqual(dialled, [(Addr(0, PEER), 444)])
        self.assertEqual(streams.written, [(9, handshake.encode_message(message))])
        self.assertEqual(streams.closed, [9])
        self.assertNoResult(sending)
        courier.stream_closed(9, "", "")
        self.successResultOf(sending)
        self.assertTrue(courier.fits(message))
