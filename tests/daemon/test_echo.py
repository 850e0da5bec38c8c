"""The echo service's answer to a push: at once when its write was taken, else when the write is."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.echo import EchoService


class WritingStreams:
    """Stands in for :class:`~pilotnet.daemon.streams.Streams`: records writes, answers as told."""

    def __init__(self, answer):
        self.answer = answer
        self.written = []

    def bind(self, port, owner):
        pass

    def write(self, conn_id, data, owner):
        self.written.append((conn_id, data))
        return self.answer


class EchoTests(SynchronousTestCase):
    def test_a_write_taken_at_once_answers_the_push_at_once(self):
        streams = WritingStreams(defer.succeed(None))
        echo = EchoService(streams, 7, Clock())
        self.assertIsNone(echo.stream_data(3, b"ping"))
        self.assertEqual(streams.written, [(3, b"ping")])

    def test_a_write_that_waits_makes_the_push_wait_with_it(self):
        waiting = defer.Deferred()
        echo = EchoService(WritingStreams(waiting), 7, Clock())
        self.assertIs(echo.stream_data(3, b"ping"), waiting)
