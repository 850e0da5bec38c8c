"""The data exchange service on port 1001: typed messages and files from peers.

Every frame a peer sends is stored and acknowledged with one TEXT frame, as
the Go reference does: files under ``<home>/received/``, messages (TEXT, JSON,
BINARY) as JSON documents under ``<home>/inbox/``.  ``pilotctl received`` and
``pilotctl inbox`` read those directories.

Files stream to disk as they arrive (a 16 MiB frame is never held in memory):
each goes to a hidden partial file first and is renamed into place when the
frame is complete, so a reader never sees half a file and an interrupted
transfer leaves nothing behind.  Names come from the peer but only as a
checked bare base name (:func:`pilotnet.wire.dataexchange.check_file_name`),
stamped with the arrival time, and never replace an existing file.
"""

import base64
import json
import os
import tempfile
import time
from pathlib import Path

from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.crypto.identity import write_private_file
from pilotnet.errors import PilotError
from pilotnet.interfaces import NO_EVENTS, IStreamOwner
from pilotnet.wire import dataexchange as wire
from pilotnet.wire.address import PORT_DATA_EXCHANGE

log = Logger()

FILE_MODE = 0o600


def arrival_stamp(seconds):
    """``YYYYMMDD-HHMMSS.mmm`` in UTC, the reference's file-name stamp."""
    whole = int(seconds)
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1000):03d}"


def rfc3339(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def unused_path(directory, stem, suffix):
    """``directory/stem+suffix``, or with ``-1``, ``-2``… added until nothing is there."""
    candidate = directory / f"{stem}{suffix}"
    counter = 1
    while candidate.exists():
        candidate = directory / f"{stem}-{counter}{suffix}"
        counter += 1
    return candidate


class _Transfer:
    """One connection's frame in progress."""

    __slots__ = ("remote", "decoder", "start", "chunks", "partial", "handle", "received")

    def __init__(self, remote):
        self.remote = remote
        self.decoder = wire.DataStreamDecoder()
        self.start = None
        self.chunks = []
        self.partial = None
        self.handle = None
        self.received = 0

    def discard_partial(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self.partial is not None:
            try:
                os.unlink(self.partial)
            except FileNotFoundError:
                pass
            self.partial = None


@implementer(IStreamOwner)
class DataExchangeService:
    emitter = NO_EVENTS

    def __init__(self, streams, home, clock, port=PORT_DATA_EXCHANGE):
        self.streams = streams
        self.clock = clock
        self.received_dir = Path(home) / "received"
        self.inbox_dir = Path(home) / "inbox"
        self.saved_files = 0
        self.saved_messages = 0
        self.refused = 0
        self._transfers = {}
        streams.bind(port, self)

    # -- IStreamOwner ------------------------------------------------------------

    def stream_accepted(self, port, stream):
        self._transfers[stream.conn_id] = _Transfer(stream.remote)

    def stream_data(self, conn_id, data):
        transfer = self._transfers.get(conn_id)
        if transfer is None:
            return None
        try:
            for event in transfer.decoder.feed(data):
                self._on_event(conn_id, transfer, event)
        except PilotError as error:
            # A malformed frame or an unusable file name: the reference closes the connection.
            self.refused += 1
            log.info("data exchange from {peer} refused: {reason}", peer=str(transfer.remote),
                     reason=error.message)
            transfer.discard_partial()
            self._close(conn_id)
        return None

    def stream_closed(self, conn_id, code, message):
        transfer = self._transfers.pop(conn_id, None)
        if transfer is not None:
            transfer.discard_partial()
        if not code:
            self._close(conn_id)

    def datagram(self, src, src_port, dst_port, data):
        pass

    # -- frames ----------------------------------------------------------------------

    def _on_event(self, conn_id, transfer, event):
        if isinstance(event, wire.DataFrameStart):
            transfer.start = event
            transfer.received = 0
            if event.frame_type == wire.TYPE_FILE and event.file_name:
                self._open_partial(transfer)
        elif isinstance(event, wire.FrameData):
            transfer.received += len(event.data)
            if transfer.handle is not None:
                transfer.handle.write(event.data)
            elif transfer.start.frame_type != wire.TYPE_FILE:
                transfer.chunks.append(bytes(event.data))
        else:
            self._finish_frame(conn_id, transfer)

    def _open_partial(self, transfer):
        self.received_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=".partial-", dir=self.received_dir)
        os.fchmod(descriptor, FILE_MODE)
        transfer.partial = name
        transfer.handle = os.fdopen(descriptor, "wb")

    def _finish_frame(self, conn_id, transfer):
        start = transfer.start
        size = transfer.received
        try:
            if start.frame_type == wire.TYPE_FILE:
                if start.file_name:
                    self._save_file(transfer)
            elif start.frame_type in wire.TYPE_NAMES:
                self._save_message(transfer, b"".join(transfer.chunks))
            reply = wire.ack_text(start.frame_type, size)
        except OSError as error:
            transfer.discard_partial()
            reply = wire.error_text(start.frame_type, error.strerror or str(error))
        transfer.chunks = []
        transfer.start = None
        self._reply(conn_id, reply)

    def _save_file(self, transfer):
        transfer.handle.close()
        transfer.handle = None
        name = transfer.start.file_name
        stem, suffix = os.path.splitext(name)
        target = unused_path(self.received_dir, f"{stem}-{arrival_stamp(self.clock.seconds())}", suffix)
        os.replace(transfer.partial, target)
        transfer.partial = None
        self.saved_files += 1
        log.info("file {name} ({size} bytes) received from {peer}", name=target.name,
                 size=transfer.received, peer=str(transfer.remote))
        self.emitter.emit("file.received", filename=target.name, size=transfer.received, path=target)

    def _save_message(self, transfer, payload):
        kind = wire.type_name(transfer.start.frame_type)
        now = self.clock.seconds()
        document = {"type": kind, "from": str(transfer.remote), "bytes": len(payload),
                    "received_at": rfc3339(now)}
        if kind == "BINARY":
            document["data"] = base64.b64encode(payload).decode("ascii")
            document["encoding"] = "base64"
        else:
            document["data"] = payload.decode("utf-8", "replace")
        self.inbox_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = unused_path(self.inbox_dir, f"{kind}-{arrival_stamp(now)}", ".json")
        write_private_file(target, json.dumps(document).encode("utf-8"))
        self.saved_messages += 1
        self.emitter.emit("message.received", type=kind, size=len(payload), **{"from": transfer.remote})

    def _reply(self, conn_id, text):
        header, payload = wire.encode_frame(wire.TYPE_TEXT, text.encode("utf-8"))
        try:
            self.streams.write(conn_id, header + payload, self)
        except PilotError:
            pass  # the peer is gone; nothing to acknowledge to

    def _close(self, conn_id):
        try:
            self.streams.close(conn_id)
        except PilotError:
            pass

