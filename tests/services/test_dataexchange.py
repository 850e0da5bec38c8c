"""The data exchange service: files stream to disk, messages land in the inbox, every frame is acknowledged."""

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import NOT_FOUND, PilotError
from pilotnet.services.dataexchange import DataExchangeService, arrival_stamp
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
