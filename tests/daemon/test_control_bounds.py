"""The control socket's bounds: a client that stops reading, or sends an endless box, cannot grow the daemon."""

from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.control import commands
from pilotnet.control.client import encode_box
from pilotnet.control.schema import MAX_BOX, MAX_CHUNK, MAX_VALUE
from pilotnet.daemon.control import MAX_BACKLOG, ControlProtocol

#: What a socket transport buffers before it asks its producer to pause.
TRANSPORT_BUFFER = 64 * 1024


class BufferingTransport(StringTransport):
    """A transport that, like a real socket's, pauses its producer once writes pile up unread."""

    aborted = False

    def write(self, data):
        super().write(data)
        if self.producer is not None and len(self.value()) > TRANSPORT_BUFFER and not self.producer.paused:
            self.producer.pauseProducing()

    def drain(self):
        self.clear()
        self.producer.resumeProducing()

    def abortConnection(self):
        self.aborted = True


class BigInfoNode:
    def __init__(self):
        self.calls = 0

    def info(self):
        self.calls += 1
        return {"filler": "x" * 20_000}


def info_requests(count):
    return b"".join(encode_box({b"_command": b"Info", b"_ask": b"%d" % n}) for n in range(count))


class BoundsTests(SynchronousTestCase):
    def setUp(self):
        self.node = BigInfoNode()
        self.control = ControlProtocol(SimpleNamespace(info=self.node.info, streams=None, events=None), Clock())
        self.transport = BufferingTransport()
        self.control.makeConnection(self.transport)

    def test_a_client_that_stops_reading_stops_being_read(self):
        self.assertIs(self.transport.producer, self.control)
        self.control.dataReceived(info_requests(1000))
        answered = self.node.calls
        self.assertLess(answered, 10)  # answers stopped draining: the rest of the requests wait unread
        self.assertEqual(self.transport.producerState, "paused")
        self.transport.drain()
        self.assertGreater(self.node.calls, answered)  # reading resumes where it stopped, nothing lost

    def test_pushes_to_a_client_that_never_reads_are_bounded(self):
        self.control.pauseProducing()
        pushes = MAX_BACKLOG // MAX_CHUNK + 2
        for _ in range(pushes):
            self.control.callRemote(commands.Received, conn_id=1, data=b"x" * MAX_CHUNK)
        self.assertTrue(self.transport.aborted)
        self.assertLess(len(self.transport.value()), MAX_BACKLOG + 2 * MAX_CHUNK)

    def test_a_reading_client_is_not_dropped(self):
        for _ in range(MAX_BACKLOG // MAX_CHUNK + 2):
            self.control.callRemote(commands.Received, conn_id=1, data=b"x" * MAX_CHUNK)
            if self.control.paused:
                self.transport.drain()
        self.assertFalse(self.transport.aborted)

    def test_an_endless_box_is_refused(self):
        value = b"v" * MAX_VALUE
        keys = 0
        while not self.transport.aborted and keys < MAX_BOX // MAX_VALUE + 2:
            self.control.dataReceived(encode_box({b"k%d" % keys: value})[:-2])  # never the empty key that ends it
            keys += 1
        self.assertTrue(self.transport.aborted)
        self.assertEqual(self.node.calls, 0)

    def test_normal_boxes_still_work(self):
        self.control.dataReceived(encode_box({b"_command": b"Info", b"_ask": b"1"}))
        self.assertEqual(self.node.calls, 1)
        self.assertIn(amp.ANSWER, self.transport.value())
