"""The fast path for unanswered data commands: same arguments, same handler, AMP for the rest."""

from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.driver import commands


class Recorder(commands.UnansweredFastPath, amp.AMP):
    fast_commands = commands.fast_path((commands.Write, "write"))

    def __init__(self):
        super().__init__()
        self.calls = []

    @commands.Write.responder
    def write(self, conn_id, data):
        self.calls.append(("write", conn_id, data))
        return {}

    @commands.Close.responder
    def close(self, conn_id):
        self.calls.append(("close", conn_id))
        return {}


def feed(protocol, **box):
    protocol.dataReceived(amp.AmpBox({key.encode(): value for key, value in box.items()}).serialize())


class FastPathTests(SynchronousTestCase):
    def setUp(self):
        self.protocol = Recorder()
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_a_fast_command_reaches_its_method_with_parsed_arguments_and_no_answer(self):
        feed(self.protocol, _command=b"Write", conn_id=b"12", data=b"\x00payload")
        self.assertEqual(self.protocol.calls, [("write", 12, b"\x00payload")])
        self.assertEqual(self.transport.value(), b"")

    def test_other_commands_go_through_amp_and_are_answered(self):
        feed(self.protocol, _command=b"Close", _ask=b"1", conn_id=b"3")
        self.assertEqual(self.protocol.calls, [("close", 3)])
        self.assertIn(b"_answer", self.transport.value())

    def test_a_fast_command_sent_with_an_ask_still_gets_amps_answer(self):
        feed(self.protocol, _command=b"Write", _ask=b"7", conn_id=b"1", data=b"x")
        self.assertEqual(self.protocol.calls, [("write", 1, b"x")])
        self.assertIn(b"_answer", self.transport.value())

    def test_answered_commands_cannot_take_the_fast_path(self):
        self.assertRaises(TypeError, commands.fast_path, (commands.Close, "close"))
