"""The Twisted transport over an SDK stream, against a scripted stream: pull reads, pauses, producers, closes."""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pilotnet.errors import CONNECTION_FAILED, PilotError
from pilotnet.stream_transport import PilotAddress, StreamTransport
from pilotnet.wire.address import Addr


class ScriptedStream:
    """What StreamTransport uses of an SDK stream; the test answers reads and writes by hand."""

    local_port = 80
    remote_address = Addr(0, 5)
    remote_port = 49152

    def __init__(self):
        self.half_open = False
        self.reads = []
        self.written = []
        self.waiting_writes = []
        self.credit = True
        self.closed = Deferred()
        self.close_calls = 0
        self.write_shut = False

    def read(self):
        self.reads.append(Deferred())
        return self.reads[-1]

    def write(self, data):
        self.written.append(bytes(data))
        if self.credit:
            return succeed(None)
        self.waiting_writes.append(Deferred())
        return self.waiting_writes[-1]

    def shutdown_write(self):
        self.write_shut = True

    def close(self):
        self.close_calls += 1
        return succeed(None)

    def deliver(self, data):
        self.reads.pop(0).callback(data)


class Recorder(Protocol):
    def __init__(self):
        self.data = []
        self.lost = None

    def dataReceived(self, data):
        self.data.append(data)

    def connectionLost(self, reason):
        self.lost = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseable(Recorder):
    read_lost = False

    def readConnectionLost(self):
        self.read_lost = True

    def writeConnectionLost(self):
        pass


@implementer(IPushProducer)
class Pushing:
    paused = False
    stopped = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        self.stopped = True


@implementer(IPullProducer)
class Pulling:
    def __init__(self, transport, chunks):
        self.transport = transport
        self.chunks = list(chunks)

    def resumeProducing(self):
        if self.chunks:
            self.transport.write(self.chunks.pop(0))
        else:
            self.transport.unregisterProducer()

    def stopProducing(self):
        pass


class StreamTransportTests(SynchronousTestCase):
    def connect(self, protocol=None):
        self.stream = ScriptedStream()
        self.protocol = protocol or Recorder()
        self.transport = StreamTransport(self.stream, self.protocol, "0:0000.0000.0004")
        self.transport.start()
        return self.transport

    def test_addresses_and_half_open_streams(self):
        transport = self.connect()
        self.assertTrue(self.stream.half_open)
        self.assertEqual(transport.getHost(), PilotAddress("0:0000.0000.0004", 80))
        self.assertEqual(transport.getPeer(), PilotAddress("0:0000.0000.0005", 49152))
        self.assertIs(self.protocol.transport, transport)

    def test_reads_one_at_a_time_and_none_while_paused(self):
        transport = self.connect()
        self.assertEqual(len(self.stream.reads), 1)
        self.stream.deliver(b"one")
        self.assertEqual((self.protocol.data, len(self.stream.reads)), ([b"one"], 1))
        transport.pauseProducing()
        self.stream.deliver(b"two")  # the read already asked for: held, not delivered
        self.assertEqual((self.protocol.data, self.stream.reads), ([b"one"], []))
        transport.resumeProducing()
        self.assertEqual((self.protocol.data, len(self.stream.reads)), ([b"one", b"two"], 1))

    def test_a_write_without_credit_pauses_the_push_producer_until_taken(self):
        transport = self.connect()
        producer = Pushing()
        transport.registerProducer(producer, True)
        transport.write(b"fits")
        self.assertFalse(producer.paused)
        self.stream.credit = False
        transport.write(b"waits")
        self.assertTrue(producer.paused)
        self.stream.waiting_writes.pop().callback(None)
        self.assertFalse(producer.paused)

    def test_a_pull_producer_is_asked_while_its_writes_are_taken(self):
        transport = self.connect()
        self.stream.credit = False
        producer = Pulling(transport, [b"a", b"b", b"c"])
        transport.registerProducer(producer, False)
        self.assertEqual(self.stream.written, [b"a"])  # asked once; its write waits
        self.stream.credit = True
        self.stream.waiting_writes.pop().callback(None)
        self.assertEqual(self.stream.written, [b"a", b"b", b"c"])
        self.assertIsNone(transport._producer)  # it unregistered at its end

    def test_lose_connection_closes_the_stream_after_pending_writes(self):
        transport = self.connect()
        self.stream.credit = False
        transport.write(b"last words")
        transport.loseConnection()
        self.assertEqual(self.stream.close_calls, 0)
        self.stream.waiting_writes.pop().callback(None)
        self.assertEqual(self.stream.close_calls, 2)  # graceful close, then the end's own (idempotent)
        self.protocol.lost.trap(ConnectionDone)
        transport.write(b"after the end")
        self.assertEqual(self.stream.written, [b"last words"])

    def test_the_peers_end_disconnects_an_ordinary_protocol(self):
        self.connect()
        self.stream.deliver(b"bye")
        self.stream.deliver(b"")
        self.assertEqual(self.protocol.data, [b"bye"])
        self.protocol.lost.trap(ConnectionDone)

    def test_a_half_closeable_protocol_keeps_writing_after_the_peers_end(self):
        transport = self.connect(HalfCloseable())
        self.stream.deliver(b"")
        self.assertTrue(self.protocol.read_lost)
        self.assertIsNone(self.protocol.lost)
        self.assertEqual(self.stream.reads, [])  # nothing more to read
        transport.write(b"the answer")
        self.assertEqual(self.stream.written, [b"the answer"])
        transport.loseConnection()
        self.protocol.lost.trap(ConnectionDone)

    def test_lose_write_connection_sends_our_fin_and_keeps_reading(self):
        transport = self.connect(HalfCloseable())
        transport.loseWriteConnection()
        self.assertTrue(self.stream.write_shut)
        transport.write(b"dropped")
        self.assertEqual(self.stream.written, [])
        self.stream.deliver(b"reply")
        self.assertEqual(self.protocol.data, [b"reply"])
        self.stream.deliver(b"")
        self.protocol.lost.trap(ConnectionDone)

    def test_a_failed_stream_loses_the_connection_with_its_reason(self):
        self.connect()
        self.stream.reads.pop().errback(PilotError("peer reset the connection", code=CONNECTION_FAILED))
        self.protocol.lost.trap(ConnectionLost)
        self.assertIn("peer reset the connection", str(self.protocol.lost.value))
