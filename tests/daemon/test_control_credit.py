"""The control socket's write credit, enforced: a client that ignores it loses the stream, not the daemon's memory."""

from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.control import MAX_UNCREDITED, ControlProtocol
from pilotnet.driver.commands import MAX_CHUNK
from tests.daemon.test_streams import A, B, Pair, RecordingOwner


class WriteCreditTests(SynchronousTestCase):
    def setUp(self):
        self.pair = Pair()
        self.pair.nodes[2].bind(1000, RecordingOwner())
        node = SimpleNamespace(streams=self.pair.nodes[1], events=None)
        self.control = ControlProtocol(node, Clock())
        self.transport = StringTransport()
        self.control.makeConnection(self.transport)
        dialing = self.pair.nodes[1].dial(A, B, 1000, self.control)
        self.pair.pump()
        self.stream = self.successResultOf(dialing)
        self.transport.clear()

    def test_credit_comes_back_while_the_send_buffer_has_room(self):
        for _ in range(4):
            self.control.write(self.stream.conn_id, b"x" * MAX_CHUNK)
        self.assertIn(b"Written", self.transport.value())

    def test_writing_past_the_credit_resets_the_stream_with_an_error(self):
        # Nothing reaches the peer (the wire is not pumped), so the send buffer only grows.
        writes = 0
        while self.stream.conn.state.name == "ESTABLISHED" and writes < 200:
            self.control.write(self.stream.conn_id, b"x" * MAX_CHUNK)
            writes += 1
        self.assertLess(writes, 200)
        self.assertGreater(writes * MAX_CHUNK, MAX_UNCREDITED)
        output = self.transport.value()
        self.assertIn(b"StreamClosed", output)
        self.assertIn(b"invalid_argument", output)
        self.assertLess(self.stream.conn.send_buffered, 2 * MAX_UNCREDITED)
