"""The data exchange service on port 1001: typed messages and files from peers.

Every frame a peer sends is stored and acknowledged with one TEXT frame, as
the Go reference does: files under ``<home>/received/``, messages (TEXT, JSON,
BINARY) as JSON documents under ``<home>/inbox/``.  ``pilotctl received`` and
``pilotctl inbox`` read those directories.

Files stream to disk as they arrive (a 16 MiB frame is never held in memory):
each goes to a hidden partial file first and gets its name when the frame is
complete, so a reader never sees half a file; an interrupted transfer leaves
nothing behind, and partial files a crash left are removed when the daemon
starts.  Names come from the peer but only as a checked bare base name
(:func:`pilotnet.wire.filenames.check_base_name`), stamped with the arrival
time, and never replace an existing file.

Everything a peer can make us keep is bounded (:class:`DataExchangeLimits`):
a message frame is held in memory only up to ``message_max_bytes`` and only
while the services' shared :class:`~pilotnet.services.storage.ByteBudget`
covers it; ``received/`` and ``inbox/`` have quotas in bytes and files.  A
frame past a limit is answered ``ERR refused: <reason>`` and the connection
closed; frames that were complete before it are stored and acknowledged first.
File work runs on the services' :class:`~pilotnet.services.storage.FileWriter`,
in order, off the reactor thread.
"""

import base64
import json
import os
import time
from pathlib import Path
from typing import NamedTuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.errors import PilotError
from pilotnet.interfaces import NO_EVENTS, IStreamOwner
from pilotnet.ratelimit import TokenBucket
from pilotnet.services import storage
from pilotnet.wire import dataexchange as wire
from pilotnet.wire.address import PORT_DATA_EXCHANGE
from pilotnet.wire.rfc3339 import format_rfc3339

log = Logger()


class DataExchangeLimits(NamedTuple):
    """What one node keeps for its peers (daemon options ``--message-max-bytes``, ``--received-max-*``,
    ``--inbox-max-*``)."""

    message_max_bytes: int = 4 * storage.MiB
    received_max_bytes: int = 256 * storage.MiB
    received_max_files: int = 1000
    inbox_max_bytes: int = 64 * storage.MiB
    inbox_max_messages: int = 1000


def arrival_stamp(seconds):
    """``YYYYMMDD-HHMMSS.mmm`` in UTC, the reference's file-name stamp."""
    whole = int(seconds)
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1000):03d}"


class _Spool:
    """One incoming file, filled on the writer thread: a partial file, then a fresh name.

    On the reactor side, chunks that arrive while a write is queued wait in
    ``buffer`` and go to the thread together (one hop per batch, not per chunk).
    """

    __slots__ = ("directory", "path", "handle", "error", "buffer", "waiters", "queued")

    def __init__(self, directory):
        self.directory = directory
        self.path = None
        self.handle = None
        self.error = None
        self.buffer = []
        self.waiters = []  # a Deferred per buffered chunk, fired once it is written
        self.queued = 0  # writes handed to the writer and not yet done

    def open(self):
        try:
            self.path, self.handle = storage.open_partial(self.directory)
        except OSError as error:
            self.error = error

    def write(self, chunks):
        if self.error is None:
            try:
                self.handle.writelines(chunks)
            except OSError as error:
                self.error = error

    def finish(self, stem, suffix):
        """The saved file's path; the first error of the transfer if there was one."""
        self._close()
        if self.error is not None:
            self.discard()
            raise self.error
        try:
            return storage.place_new(self.path, self.directory, stem, suffix)
        except OSError:
            self.discard()
            raise

    def discard(self):
        self._close()
        if self.path is not None:
            storage.discard(self.path)
            self.path = None

    def _close(self):
        if self.handle is not None:
            handle, self.handle = self.handle, None
            try:
                handle.close()
            except OSError as error:
                self.error = self.error or error


class _Transfer:
    """One connection's frame in progress and what it holds of the node's limits."""

    __slots__ = ("remote", "decoder", "start", "chunks", "held", "spool", "reserved", "received", "refused")

    def __init__(self, remote):
        self.remote = remote
        self.decoder = wire.DataStreamDecoder()
        self.start = None
        self.chunks = []
        self.held = None  # bytes of the ByteBudget a message holds; None while no message is arriving
        self.spool = None
        self.reserved = None  # (quota, bytes) held for the frame being received
        self.received = 0
        self.refused = False


@implementer(IStreamOwner)
class DataExchangeService:
    emitter = NO_EVENTS

    def __init__(self, streams, home, clock, port=PORT_DATA_EXCHANGE, *, limits=DataExchangeLimits(),
                 budget=None, writer=None):
        self.streams = streams
        self.clock = clock
        self.limits = limits
        self.budget = budget if budget is not None else storage.ByteBudget(4 * limits.message_max_bytes)
        self.writer = writer if writer is not None else storage.FileWriter()
        self.received_dir = Path(home) / "received"
        self.inbox_dir = Path(home) / "inbox"
        for directory in (self.received_dir, self.inbox_dir):
            removed = storage.remove_leftovers(directory)
            if removed:
                log.info("removed {count} unfinished files from {dir}", count=removed, dir=str(directory))
        self.received_quota = storage.DirectoryQuota(
            self.received_dir, limits.received_max_bytes, limits.received_max_files, clock,
            what="received files", hint="the receiver must clear them: pilotctl received --clear")
        self.inbox_quota = storage.DirectoryQuota(
            self.inbox_dir, limits.inbox_max_bytes, limits.inbox_max_messages, clock,
            what="inbox messages", hint="the receiver must clear them: pilotctl inbox --clear")
        self.saved_files = 0
        self.saved_messages = 0
        self.refused = 0
        self._refusal_log = TokenBucket(*storage.REFUSAL_LOG_RATE)
        self._transfers = {}
        streams.bind(port, self)

    # -- IStreamOwner ------------------------------------------------------------

    def stream_accepted(self, port, stream):
        self._transfers[stream.conn_id] = _Transfer(stream.remote)

    def stream_data(self, conn_id, data):
        """Handle what ``data`` completes; the Deferred of the file work it queued (the stream's
        credit comes back when the disk has taken the bytes)."""
        transfer = self._transfers.get(conn_id)
        if transfer is None or transfer.refused:
            return None
        try:
            events, failure = transfer.decoder.feed(data), None
        except wire.StreamDecodeError as error:
            events, failure = error.events, error
        queued = None
        try:
            for event in events:
                queued = self._on_event(conn_id, transfer, event) or queued
        except PilotError as error:
            failure = error  # a limit: the frames before this one stand
        if failure is not None:
            queued = self._refuse(conn_id, transfer, failure)
        return queued

    def stream_closed(self, conn_id, code, message):
        transfer = self._transfers.pop(conn_id, None)
        if transfer is not None:
            self._abandon(transfer)
        if not code:
            # The peer has finished sending: close once the acknowledgments still queued are written.
            self.writer.run(lambda: None).addCallback(lambda _: self._close(conn_id))

    def datagram(self, src, src_port, dst_port, data):
        pass

    # -- frames ----------------------------------------------------------------------

    def _on_event(self, conn_id, transfer, event):
        if isinstance(event, wire.DataFrameStart):
            transfer.start = event
            transfer.received = 0
            if event.frame_type == wire.TYPE_FILE:
                if event.file_name:
                    return self._start_file(transfer, event.length)
            elif event.frame_type in wire.TYPE_NAMES:
                self._start_message(transfer, event.length)
            return None
        if isinstance(event, wire.FrameData):
            transfer.received += len(event.data)
            if transfer.spool is not None:
                return self._spool_write(transfer.spool, event.data)
            if transfer.held is not None:
                transfer.chunks.append(event.data)
            return None
        return self._finish_frame(conn_id, transfer)

    def _start_file(self, transfer, length):
        self.received_quota.reserve(length)
        transfer.reserved = (self.received_quota, length)
        transfer.spool = _Spool(self.received_dir)
        return self.writer.run(transfer.spool.open)

    def _spool_write(self, spool, data):
        """A Deferred that fires once ``data`` is on disk (the stream's credit waits for it)."""
        written = Deferred()
        spool.buffer.append(data)
        spool.waiters.append(written)
        if not spool.queued:
            self._flush(spool)
        return written

    def _flush(self, spool):
        """Hand the buffered chunks to the writer, after everything queued before."""
        chunks, waiters = spool.buffer, spool.waiters
        spool.buffer, spool.waiters = [], []
        spool.queued += 1
        self.writer.run(spool.write, chunks).addBoth(self._flushed, spool, waiters)

    def _flushed(self, _, spool, waiters):
        spool.queued -= 1
        if spool.buffer and not spool.queued:
            self._flush(spool)
        for written in waiters:
            written.callback(None)

    def _start_message(self, transfer, length):
        if length > self.limits.message_max_bytes:
            raise PilotError(f"a {wire.type_name(transfer.start.frame_type)} message of {length} bytes is larger "
                             f"than this node accepts ({self.limits.message_max_bytes} bytes)",
                             hint="send large content as a file")
        self.inbox_quota.reserve(length)
        try:
            self.budget.take(length, "message")
        except PilotError:
            self.inbox_quota.release(length)
            raise
        transfer.reserved = (self.inbox_quota, length)
        transfer.held = length

    def _finish_frame(self, conn_id, transfer):
        start, size = transfer.start, transfer.received
        transfer.start = None
        reserved, transfer.reserved = transfer.reserved, None
        if start.frame_type == wire.TYPE_FILE and transfer.spool is not None:
            spool, transfer.spool = transfer.spool, None
            if spool.buffer:
                self._flush(spool)
            stem, suffix = os.path.splitext(start.file_name)
            work = self.writer.run(spool.finish, f"{stem}-{arrival_stamp(self.clock.seconds())}", suffix)
            work.addCallback(self._file_saved, transfer, size)
        elif transfer.held is not None:
            held, transfer.held = transfer.held, None
            payload, transfer.chunks = b"".join(transfer.chunks), []
            document = self._message_document(start.frame_type, transfer.remote, payload)
            work = self.writer.run(self._write_message, f"{wire.type_name(start.frame_type)}-"
                                   f"{arrival_stamp(self.clock.seconds())}", document)
            work.addCallback(self._message_saved, document)
            work.addBoth(self._give_back, held)
        else:
            work = self.writer.run(lambda: None)
        if reserved is not None:
            quota, amount = reserved
            work.addCallbacks(self._stored, self._not_stored, (quota, amount), errbackArgs=(quota, amount))
        work.addCallbacks(lambda _: wire.ack_text(start.frame_type, size),
                          lambda failure: wire.error_text(start.frame_type, _reason(failure)))
        return work.addCallback(lambda text: self._reply(conn_id, text))

    def _file_saved(self, target, transfer, size):
        self.saved_files += 1
        log.info("file {name} ({size} bytes) received from {peer}", name=target.name, size=size,
                 peer=str(transfer.remote))
        self.emitter.emit("file.received", filename=target.name, size=size, path=target)
        return target

    def _message_saved(self, target, document):
        self.emitter.emit("message.received", type=document["type"], size=document["bytes"],
                          **{"from": document["from"]})
        return target

    def _message_document(self, frame_type, remote, payload):
        kind = wire.type_name(frame_type)
        document = {"type": kind, "from": str(remote), "bytes": len(payload),
                    "received_at": format_rfc3339(self.clock.seconds())}
        if kind == "BINARY":
            document["data"] = base64.b64encode(payload).decode("ascii")
            document["encoding"] = "base64"
        else:
            document["data"] = payload.decode("utf-8", "replace")
        return document

    def _write_message(self, stem, document):
        """On the writer thread: the inbox document under a fresh name."""
        return storage.write_new(self.inbox_dir, stem, ".json", json.dumps(document).encode("utf-8"))

    def _stored(self, target, quota, amount):
        quota.stored(amount, target.stat().st_size)
        if quota is self.inbox_quota:
            self.saved_messages += 1
        return target

    def _not_stored(self, failure, quota, amount):
        quota.release(amount)
        return failure

    def _give_back(self, result, held):
        self.budget.give_back(held)
        return result

    # -- refusals and ends ---------------------------------------------------------

    def _refuse(self, conn_id, transfer, error):
        """Answer ``ERR refused`` after the frames before it, and close: the stream is out of step."""
        transfer.refused = True
        self.refused += 1
        if self._refusal_log.take(1, self.clock.seconds()):
            log.info("data exchange from {peer} refused: {reason} ({count} refused so far)",
                     peer=str(transfer.remote), reason=error.message, count=self.refused)
        self._abandon(transfer)
        return self.writer.run(lambda: None).addCallback(self._reply_and_close, conn_id,
                                                         f"ERR refused: {error.message}")

    def _reply_and_close(self, _, conn_id, text):
        self._reply(conn_id, text)
        self._close(conn_id)

    def _abandon(self, transfer):
        """Give back what an unfinished frame holds: its partial file, its memory, its quota room."""
        if transfer.spool is not None:
            spool, transfer.spool = transfer.spool, None
            if spool.buffer:
                self._flush(spool)  # its waiters are owed an answer; the bytes go with the file
            self.writer.run(spool.discard)
        if transfer.held is not None:
            self.budget.give_back(transfer.held)
            transfer.held = None
            transfer.chunks = []
        if transfer.reserved is not None:
            quota, amount = transfer.reserved
            transfer.reserved = None
            quota.release(amount)

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


def _reason(failure):
    error = failure.value
    if isinstance(error, OSError):
        return error.strerror or str(error)
    log.failure("data exchange frame not stored", failure)
    return "internal error"
