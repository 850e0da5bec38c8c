"""The data exchange service: files stream to disk, messages land in the inbox, every frame is acknowledged."""

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import NOT_FOUND, PilotError
from pilotnet.services.dataexchange import DataExchangeLimits, DataExchangeService, arrival_stamp
from pilotnet.services.storage import ByteBudget
from pilotnet.wire import dataexchange as wire
from pilotnet.wire.address import Addr

PEER = Addr(0, 7)


class FakeStream:
    def __init__(self, conn_id):
        self.conn_id = conn_id
        self.remote = PEER
        self.remote_port = 49152
        self.conn = SimpleNamespace(nodelay=False)


class FakeStreams:
    """Records what the service writes and closes."""

    def __init__(self):
        self.owners = {}
        self.written = {}
        self.closed = []

    def bind(self, port, owner):
        self.owners[port] = owner

    def write(self, conn_id, data, owner):
        self.written.setdefault(conn_id, bytearray()).extend(data)

    def close(self, conn_id):
        if conn_id in self.closed:
            raise PilotError("gone", code=NOT_FOUND)
        self.closed.append(conn_id)


def frames(*encoded):
    return b"".join(b"".join(parts) for parts in encoded)


class DataExchangeTests(SynchronousTestCase):
    def setUp(self):
        self.home = Path(self.mktemp())
        self.clock = Clock()
        self.clock.advance(1767225600.25)
        self.streams = FakeStreams()
        self.service = DataExchangeService(self.streams, self.home, self.clock)
        self.service.stream_accepted(1001, FakeStream(1))

    def feed(self, data, chunk=7):
        for start in range(0, len(data), chunk):
            self.service.stream_data(1, data[start:start + chunk])

    def replies(self):
        return [frame.payload.decode() for frame in wire.DataFrameReader().feed(bytes(self.streams.written[1]))]

    def test_messages_are_stored_and_acknowledged(self):
        self.feed(frames(wire.encode_frame(wire.TYPE_TEXT, b"hello"),
                         wire.encode_frame(wire.TYPE_JSON, b'{"a":1}'),
                         wire.encode_frame(wire.TYPE_BINARY, b"\x00\xff")))
        self.assertEqual(self.replies(), ["ACK TEXT 5 bytes", "ACK JSON 7 bytes", "ACK BINARY 2 bytes"])
        documents = sorted((json.loads(p.read_text()) for p in (self.home / "inbox").iterdir()),
                           key=lambda d: d["type"])
        self.assertEqual([d["type"] for d in documents], ["BINARY", "JSON", "TEXT"])
        self.assertEqual(documents[2]["data"], "hello")
        self.assertEqual(documents[2]["from"], str(PEER))
        self.assertEqual(documents[0]["encoding"], "base64")
        self.assertEqual(documents[2]["received_at"], "2026-01-01T00:00:00Z")

    def test_empty_messages_are_stored_too(self):
        self.feed(frames(wire.encode_frame(wire.TYPE_TEXT, b"")))
        self.assertEqual(self.replies(), ["ACK TEXT 0 bytes"])
        [stored] = (self.home / "inbox").iterdir()
        self.assertEqual(json.loads(stored.read_text())["data"], "")
        self.assertEqual(self.service.inbox_quota.used_files, 1)

    def test_files_stream_to_disk_under_a_stamped_safe_name(self):
        content = os.urandom(300_000)
        self.feed(frames(wire.encode_frame(wire.TYPE_FILE, content, "report.pdf")), chunk=4096)
        [saved] = (self.home / "received").iterdir()
        self.assertEqual(saved.name, f"report-{arrival_stamp(self.clock.seconds())}.pdf")
        self.assertEqual(saved.read_bytes(), content)
        self.assertEqual(stat.S_IMODE(saved.stat().st_mode), 0o600)
        self.assertEqual(self.replies(), ["ACK FILE 300000 bytes"])

    def test_same_name_never_overwrites(self):
        for _ in range(3):
            self.feed(frames(wire.encode_frame(wire.TYPE_FILE, b"x", "a.txt")))
        self.assertEqual(len(list((self.home / "received").iterdir())), 3)

    def test_traversal_is_refused_and_the_connection_closed(self):
        header = wire.typedframe.encode_header(wire.TYPE_FILE, 2 + 9 + 1)
        self.feed(header + b"\x00\x09../passwd" + b"x")
        self.assertEqual(self.streams.closed, [1])
        self.assertFalse((self.home / "received").exists() and list((self.home / "received").iterdir()))
        self.assertEqual(self.service.refused, 1)

    def test_an_interrupted_file_leaves_nothing_behind(self):
        header, payload = wire.encode_frame(wire.TYPE_FILE, os.urandom(10_000), "big.bin")
        self.feed(header + payload[:5000])
        self.service.stream_closed(1, "connection_failed", "reset")
        self.assertEqual(list((self.home / "received").iterdir()), [])

    def test_unknown_types_are_acknowledged_but_not_stored(self):
        self.feed(frames(wire.typedframe.encode_frame(9, b"???")))
        self.assertEqual(self.replies(), ["ACK UNKNOWN(9) 3 bytes"])
        self.assertFalse((self.home / "inbox").exists())

    def test_a_good_file_before_a_refused_frame_is_kept_and_acknowledged(self):
        # Both frames arrive in one read: the traversal name is refused, the file before it stands.
        bad_name = b"../../victim.txt"
        bad = (wire.typedframe.encode_header(wire.TYPE_FILE, 2 + len(bad_name) + 5)
               + len(bad_name).to_bytes(2, "big") + bad_name + b"owned")
        self.service.stream_data(1, frames(wire.encode_frame(wire.TYPE_FILE, b"good", "good.txt")) + bad)
        [saved] = (self.home / "received").iterdir()
        self.assertEqual(saved.read_bytes(), b"good")
        replies = self.replies()
        self.assertEqual(replies[0], "ACK FILE 4 bytes")
        self.assertTrue(replies[1].startswith("ERR refused: file name '../../victim.txt' contains"), replies)
        self.assertEqual(self.streams.closed, [1])
        self.assertFalse((self.home.parent / "victim.txt").exists())

    def test_leftover_partial_files_are_removed_at_start(self):
        received = self.home / "received"
        received.mkdir(parents=True)
        (received / ".partial-abc123").write_bytes(b"half")
        (self.home / "inbox").mkdir()
        (self.home / "inbox" / ".tmp-xyz").write_bytes(b"half")
        (received / "kept.txt").write_bytes(b"whole")
        DataExchangeService(FakeStreams(), self.home, self.clock)
        self.assertEqual([p.name for p in received.iterdir()], ["kept.txt"])
        self.assertEqual(list((self.home / "inbox").iterdir()), [])



class LimitTests(SynchronousTestCase):
    """Every limit refused with an ``ERR refused`` frame, the connection closed, nothing kept beyond it."""

    def setUp(self):
        self.home = Path(self.mktemp())
        self.clock = Clock()
        self.clock.advance(1767225600.25)

    def start(self, writer=None, budget=None, **limits):
        streams = FakeStreams()
        service = DataExchangeService(streams, self.home, self.clock, limits=DataExchangeLimits(**limits),
                                      writer=writer, budget=budget)
        return streams, service

    def connect(self, service, conn_id):
        service.stream_accepted(1001, FakeStream(conn_id))

    def replies(self, streams, conn_id):
        return [f.payload.decode() for f in wire.DataFrameReader().feed(bytes(streams.written.get(conn_id, b"")))]

    def test_a_message_larger_than_the_limit_is_refused_at_its_header(self):
        streams, service = self.start(message_max_bytes=1000)
        self.connect(service, 1)
        header, _ = wire.encode_frame(wire.TYPE_BINARY, b"x" * 1001)
        service.stream_data(1, header)  # refused before a byte of the payload is held
        [reply] = self.replies(streams, 1)
        self.assertIn("BINARY message of 1001 bytes is larger than this node accepts (1000 bytes)", reply)
        self.assertEqual(streams.closed, [1])
        self.assertEqual(service.budget.in_use, 0)

    def test_unfinished_messages_share_one_memory_budget(self):
        streams, service = self.start(budget=ByteBudget(1500), message_max_bytes=1000)
        for conn_id in (1, 2):
            self.connect(service, conn_id)
        header, payload = wire.encode_frame(wire.TYPE_TEXT, b"a" * 1000)
        service.stream_data(1, header + payload[:10])  # holds 1000 bytes of the budget
        self.assertEqual(service.budget.in_use, 1000)
        service.stream_data(2, header)
        [reply] = self.replies(streams, 2)
        self.assertTrue(reply.startswith("ERR refused: message: 1000 bytes would exceed the 1500 bytes"), reply)
        service.stream_data(1, payload[10:])
        self.assertEqual(self.replies(streams, 1), ["ACK TEXT 1000 bytes"])
        self.assertEqual(service.budget.in_use, 0)
        self.connect(service, 3)
        service.stream_data(3, header)
        service.stream_closed(3, "connection_failed", "reset")  # a half-sent message gives its room back
        self.assertEqual(service.budget.in_use, 0)

    def test_received_files_have_a_quota_in_files_and_bytes(self):
        streams, service = self.start(received_max_files=2, received_max_bytes=100)
        self.connect(service, 1)
        one = frames(wire.encode_frame(wire.TYPE_FILE, b"x" * 40, "a.bin"))
        service.stream_data(1, one + one + one)
        replies = self.replies(streams, 1)
        self.assertEqual(replies[:2], ["ACK FILE 40 bytes", "ACK FILE 40 bytes"])
        self.assertTrue(replies[2].startswith("ERR refused: received files are full: 2 files, 80 bytes"), replies)
        self.assertEqual(len(list((self.home / "received").iterdir())), 2)
        # Too many bytes, with room for files: refused at the header as well.
        for path in (self.home / "received").iterdir():
            path.unlink()  # pilotctl received --clear
        self.clock.advance(1)
        self.connect(service, 2)
        service.stream_data(2, wire.encode_frame_header(wire.TYPE_FILE, 101, "big.bin"))
        self.assertIn("101 more bytes refused", self.replies(streams, 2)[0])
        # After the clear, files fit again.
        self.connect(service, 3)
        service.stream_data(3, one)
        self.assertEqual(self.replies(streams, 3), ["ACK FILE 40 bytes"])

    def test_the_inbox_has_a_quota(self):
        streams, service = self.start(inbox_max_messages=2)
        self.connect(service, 1)
        message = frames(wire.encode_frame(wire.TYPE_TEXT, b"hi"))
        service.stream_data(1, message * 3)
        replies = self.replies(streams, 1)
        self.assertEqual(replies[:2], ["ACK TEXT 2 bytes"] * 2)
        self.assertTrue(replies[2].startswith("ERR refused: inbox messages are full"), replies)
        self.assertEqual(len(list((self.home / "inbox").iterdir())), 2)

    def test_file_work_waits_for_the_writer_and_holds_back_the_stream(self):
        writer = QueuedWriter()
        streams, service = self.start(writer=writer)
        self.connect(service, 1)
        header, payload = wire.encode_frame(wire.TYPE_FILE, b"0123456789", "f.txt")
        taken = service.stream_data(1, header + payload)
        self.assertFalse(taken.called)  # the stream's credit waits for the disk
        self.assertEqual(self.replies(streams, 1), [])
        service.stream_closed(1, "", "")  # the peer is done: the close waits for the ack
        self.assertEqual(streams.closed, [])
        writer.run_all()
        self.assertTrue(taken.called)
        self.assertEqual(self.replies(streams, 1), ["ACK FILE 10 bytes"])
        self.assertEqual(streams.closed, [1])
        [saved] = (self.home / "received").iterdir()
        self.assertEqual(saved.read_bytes(), b"0123456789")


class QueuedWriter:
    """A FileWriter that runs its work when the test says, in order."""

    def __init__(self):
        self.queue = []

    def run(self, work, *args):
        done = Deferred()
        self.queue.append((work, args, done))
        return done

    def run_next(self):
        work, args, done = self.queue.pop(0)
        maybeDeferred(work, *args).chainDeferred(done)

    def run_all(self):
        while self.queue:
            self.run_next()
