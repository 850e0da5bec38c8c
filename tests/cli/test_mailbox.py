"""``send-message``, ``send-file``, ``received``, ``inbox`` in-process, with a test client playing the remote service.

The fake daemon connects a dial to whichever client bound the port, so the
test binds port 1001 and answers as the data exchange service would: ``ACK``
when it stores a frame, ``ERR …`` and a close when it refuses one.
"""

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from pilotnet.driver import client
from pilotnet.wire import dataexchange as wire
from pilotnet.wire.address import PORT_DATA_EXCHANGE
from tests.cli.support import ImmediateClock, PilotctlMixin


class RemoteService:
    """Port 1001 on the fake daemon: reads frames and answers each with ``reply(frame event)``.

    ``at_header``: answer as soon as a frame's header is in and close (a
    refusal at the header, while the sender is still writing).
    """

    def __init__(self, listener, reply, at_header=False):
        self.listener = listener
        self.reply = reply
        self.at_header = at_header
        ensureDeferred(self._serve()).addErrback(lambda failure: None)  # until the listener closes

    async def _serve(self):
        while True:
            await self._one(await self.listener.accept())

    async def _one(self, stream):
        decoder = wire.DataStreamDecoder()
        while True:
            data = await stream.read()
            if not data:
                return
            for event in decoder.feed(data):
                if isinstance(event, wire.DataFrameStart) and self.at_header:
                    await self._answer(stream, self.reply(event))
                    await stream.close()
                    return
                if isinstance(event, wire.FrameEnd):
                    await self._answer(stream, self.reply(event))

    @staticmethod
    async def _answer(stream, text):
        header, body = wire.encode_frame(wire.TYPE_TEXT, text.encode())
        await stream.write(header + body)


class MailboxTests(PilotctlMixin, TestCase):
    clock = ImmediateClock()

    def setUp(self):
        self.start_fake_daemon()

    async def remote(self, reply, at_header=False):
        daemon = await client.connect(reactor, self.socket_path)
        self.addCleanup(daemon.close)
        return RemoteService(await daemon.listen(PORT_DATA_EXCHANGE), reply, at_header)

    def a_file(self, size):
        path = Path(self.mktemp())
        path.write_bytes(os.urandom(size))
        return path

    async def test_an_acknowledged_message_is_a_success(self):
        await self.remote(lambda frame: "ACK TEXT 5 bytes")
        result = await self.pilotctl("send-message", "self", "--data", "hello", "--json")
        self.assertEqual((result.code, result.data["ack"]), (0, "ACK TEXT 5 bytes"), result)

    async def test_a_refused_message_exits_non_zero_with_the_remote_reason(self):
        service = await self.remote(
            lambda frame: "ERR refused: a TEXT message of 5 bytes is larger than this node accepts (4 bytes)")
        result = await self.pilotctl("send-message", "self", "--data", "hello", "--json")
        self.assertEqual(result.code, 1, result)
        self.assertEqual(result.stdout, "")
        self.assertEqual(result.error["code"], "refused")
        self.assertEqual(result.error["message"], "0:0000.0000.0005 refused the message: a TEXT message of 5 bytes "
                                                  "is larger than this node accepts (4 bytes)")
        self.assertIn("pilotctl inbox --clear", result.error["hint"])
        service.reply = lambda frame: "ERR TEXT save failed: disk full"
        result = await self.pilotctl("send-message", "5", "--data", "hello")
        self.assertEqual(result.code, 1, result)
        self.assertTrue(result.stderr.startswith(
            "error: 0:0000.0000.0005 refused the message: TEXT save failed: disk full\nhint:  "), result)

    async def test_a_file_refused_at_its_header_while_still_being_sent(self):
        """The service refuses before the content arrives and closes: the reason wins over the failed write."""
        await self.remote(lambda frame: "ERR refused: received files are full (256 MiB)", at_header=True)
        result = await self.pilotctl("send-file", "self", str(self.a_file(2 * 1024 * 1024)), "--json")
        self.assertEqual(result.code, 1, result)
        self.assertEqual((result.error["code"], result.error["message"]),
                         ("refused", "0:0000.0000.0005 refused the file: received files are full (256 MiB)"))
        self.assertIn("pilotctl received --clear", result.error["hint"])

    async def test_a_file_refused_after_its_content(self):
        await self.remote(lambda frame: "ERR FILE save failed: no space left on device")
        result = await self.pilotctl("send-file", "self", str(self.a_file(1000)), "--json")
        self.assertEqual((result.code, result.error["code"]), (1, "refused"), result)
        self.assertIn("FILE save failed: no space left on device", result.error["message"])

    async def test_send_file_prints_its_final_line_once_and_its_bar_only_on_a_terminal(self):
        path = self.a_file(300 * 1024)
        await self.remote(lambda frame: f"ACK FILE {300 * 1024} bytes")
        for terminal in (True, False):
            result = await self.pilotctl("send-file", "self", str(path), terminal=terminal)
            self.assertEqual(result.code, 0, result)
            self.assertEqual(result.stdout, f"sent {path.name} (300.0 KB) to 0:0000.0000.0005 "
                                            f"(ACK FILE {300 * 1024} bytes)\n")
            self.assertEqual(result.stderr.count("100%"), 1 if terminal else 0, result)
            self.assertEqual("\r" in result.stderr, terminal, result)


class ClearTests(PilotctlMixin, TestCase):
    """``received --clear`` and ``inbox --clear`` keep what is still arriving."""

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="pilot-test-")
        self.addCleanup(shutil.rmtree, self.home, True)

    def fill(self, name, *files):
        directory = Path(self.home, name)
        directory.mkdir()
        for file in files:
            (directory / file).write_bytes(b"content")
        return directory

    async def test_received_clear_leaves_files_in_transfer(self):
        directory = self.fill("received", "report-20261207-101500.000.pdf", "notes-20261207-101501.000.txt",
                              ".partial-k2j4h1")
        result = await self.pilotctl("received", "--clear", "--json")
        self.assertEqual(result.data, {"cleared": 2, "in_transfer": 1})
        self.assertEqual(sorted(p.name for p in directory.iterdir()), [".partial-k2j4h1"])
        (directory / "late-20261207-101502.000.bin").write_bytes(b"x")
        human = await self.pilotctl("received", "--clear")
        self.assertEqual(human.stdout.splitlines(), [
            f"cleared 1 files from {directory}",
            "left 1 still being received (listed once complete; clear again afterwards to remove them)"])

    async def test_inbox_clear_leaves_messages_being_written(self):
        directory = self.fill("inbox", "TEXT-20261207-101500.000.json", ".partial-a8d7")
        result = await self.pilotctl("inbox", "--clear", "--json")
        self.assertEqual(result.data, {"cleared": 1, "in_transfer": 1})
        self.assertEqual([p.name for p in directory.iterdir()], [".partial-a8d7"])
        nothing_left = await self.pilotctl("received", "--clear", "--json")
        self.assertEqual(nothing_left.error["code"], "not_found")  # never received anything
