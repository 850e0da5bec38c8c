"""A blocking control-socket client for one command at a time, without Twisted.

``pilotctl`` runs once per action, so what it costs is mostly start-up; the
reactor and ``twisted.protocols.amp`` alone take longer to import than a whole
``info`` round trip.  AMP's framing is small enough to speak over a plain
socket (each key and value behind a 2-byte big-endian length, an empty key
ending a box; ``_command``/``_ask`` on a request, ``_answer`` or
``_error``/``_error_code``/``_error_description`` on its reply), and the
arguments are encoded by the very value types the daemon's AMP commands use
(:mod:`pilotnet.control.schema`), so the two cannot drift::

    with ControlClient(socket_path) as daemon:
        info = daemon.call(schema.INFO)["info"]

It sends one request and reads boxes until that request's answer.  Pushes
(the daemon's own commands: stream data, closes, datagrams, events) are
answered at once if they ask for an answer and kept for :meth:`next_push`,
which is enough for a one-shot exchange on a stream (``pilotctl send``); long
streams, listeners and subscriptions stay with the Twisted SDK, which has the
flow control they need.
"""

from __future__ import annotations

import os
import struct
import time

# The C module behind ``socket``: ``socket.py`` turns its constants into enums at import, which costs a
# fast ``pilotctl`` command more than the round trip to the daemon; this client needs none of that.
import _socket

from pilotnet.control import schema
from pilotnet.control.schema import MAX_ANSWER, MAX_KEY, MAX_VALUE, COMMAND_FAILED, CommandFailed, CommandSpec
from pilotnet.control.schema import check_timeout, not_running_error
from pilotnet.errors import INTERNAL, INVALID_ARGUMENT, NOT_RUNNING, TIMEOUT, PilotError

#: Seconds a command may take before it fails with ``timeout``.
DEFAULT_TIMEOUT = 30.0
_LENGTH = struct.Struct("!H")
_READ_SIZE = 256 * 1024
#: Pushes kept for :meth:`ControlClient.next_push`; a one-shot exchange needs a handful, more are dropped.
MAX_QUEUED_PUSHES = 1024
#: The commands the daemon sends to its clients, by AMP name.
PUSHES = {spec.name.encode("ascii"): spec for spec in (
    schema.ACCEPTED, schema.RECEIVED, schema.WRITTEN, schema.STREAM_CLOSED, schema.DATAGRAM_RECEIVED,
    schema.EVENT_RECEIVED, schema.EVENTS_RECEIVED,
)}


def encode_box(box: dict) -> bytes:
    """AMP's wire form of ``box`` (keys in insertion order)."""
    parts = []
    for key, value in box.items():
        if not 0 < len(key) <= MAX_KEY:
            raise PilotError(f"control key of {len(key)} bytes", code=INVALID_ARGUMENT)
        if len(value) > MAX_VALUE:
            raise PilotError(f"value of {len(value)} bytes is too large for one control message value",
                             code=INVALID_ARGUMENT)
        parts += [_LENGTH.pack(len(key)), key, _LENGTH.pack(len(value)), value]
    parts.append(b"\x00\x00")
    return b"".join(parts)


class BoxReader:
    """Splits a byte stream into AMP boxes (dicts of bytes to bytes); sans-IO, so it is tested on its own.

    A box larger than ``limit`` bytes is refused rather than held.
    """

    def __init__(self, limit: int = MAX_ANSWER) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._box: dict = {}
        self._key: bytes | None = None
        self._box_size = 0

    def feed(self, data: bytes) -> list:
        self._buffer += data
        boxes, offset, buffer = [], 0, self._buffer
        while len(buffer) - offset >= 2:
            (size,) = _LENGTH.unpack_from(buffer, offset)
            if len(buffer) - offset - 2 < size:
                break
            item = bytes(buffer[offset + 2:offset + 2 + size])
            offset += 2 + size
            self._box_size += 2 + size
            if self._box_size > self._limit:
                raise PilotError(f"the daemon sent a control message over {self._limit} bytes", code=INTERNAL)
            if self._key is None:
                if not item:
                    boxes.append(self._box)
                    self._box, self._box_size = {}, 0
                elif size > MAX_KEY:
                    raise PilotError("the daemon sent a malformed control message", code=INTERNAL)
                else:
                    self._key = item
            else:
                self._box[self._key] = item
                self._key = None
        del buffer[:offset]
        return boxes


class ControlClient:
    """One connection to the daemon's control socket; ``not_running`` if nothing answers there."""

    def __init__(self, socket_path: str | os.PathLike, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self._timeout = check_timeout(timeout)
        self._socket = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._socket.settimeout(self._timeout)
        try:
            self._socket.connect(os.fspath(socket_path))
        except (OSError, ValueError):
            self._socket.close()
            raise not_running_error() from None
        self._reader = BoxReader()
        self._tags = 0
        #: Tag -> reply box (``None`` until it comes) of the requests sent and not yet answered.
        self._replies: dict = {}
        self._pushes: list = []

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close()

    def call(self, spec: CommandSpec, /, answer_within: float | None = None, **arguments: object) -> dict:
        """Send ``spec`` with ``arguments``; its decoded answer, or the daemon's error as a :class:`PilotError`.

        ``answer_within`` replaces the client's timeout for this one answer
        (a dial with a longer timeout of its own).
        """
        self._tags += 1
        tag = b"%x" % self._tags
        box = {b"_command": spec.name.encode("ascii")}
        if spec.answered:
            box[b"_ask"] = tag
        spec.encode_arguments(arguments, box)
        self._send(encode_box(box))
        if not spec.answered:
            return {}
        self._replies[tag] = None
        if answer_within is not None:
            self._socket.settimeout(max(check_timeout(answer_within), self._timeout or 0))
        try:
            while self._replies[tag] is None:
                self._route(self._receive())
        finally:
            self._socket.settimeout(self._timeout)
        reply = self._replies.pop(tag)
        if b"_error" in reply:
            raise self._error(reply)
        return self._decoded(spec, reply)

    def next_push(self, timeout: float | None) -> tuple | None:
        """The daemon's next push as ``(spec, arguments)``, or ``None`` if none came within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pushes:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._socket.settimeout(remaining)
            try:
                self._route(self._receive())
            except PilotError as error:
                if error.code == TIMEOUT:
                    return None
                raise
            finally:
                self._socket.settimeout(self._timeout)
        return self._pushes.pop(0)

    def _route(self, boxes: list) -> None:
        for box in boxes:
            tag = box.get(b"_answer", box.get(b"_error"))
            if tag is not None:
                if self._replies.get(tag, box) is None:  # only answers to what we asked are kept
                    self._replies[tag] = box
                continue
            spec = PUSHES.get(box.get(b"_command"))
            if b"_ask" in box:
                self._send(encode_box({b"_answer": box[b"_ask"]}))
            if spec is not None and len(self._pushes) < MAX_QUEUED_PUSHES:
                try:
                    self._pushes.append((spec, spec.decode_arguments(box)))
                except (KeyError, ValueError, UnicodeDecodeError):
                    continue  # a push this client cannot read is one it has no use for

    def _send(self, data: bytes) -> None:
        try:
            self._socket.sendall(data)
        except TimeoutError:
            raise self._timed_out() from None
        except OSError:
            raise self._lost() from None

    def _receive(self) -> list:
        try:
            data = self._socket.recv(_READ_SIZE)
        except TimeoutError:
            raise self._timed_out() from None
        except OSError:
            raise self._lost() from None
        if not data:
            raise self._lost()
        return self._reader.feed(data)

    @staticmethod
    def _decoded(spec: CommandSpec, reply: dict) -> dict:
        try:
            return spec.decode_response(reply)
        except (KeyError, ValueError, UnicodeDecodeError):
            raise PilotError(f"the daemon's answer to {spec.name} is malformed", code=INTERNAL,
                             hint="is the daemon the same version as pilotctl?") from None

    @staticmethod
    def _error(reply: dict) -> PilotError:
        description = reply.get(b"_error_description", b"").decode("utf-8", "replace")
        code = reply.get(b"_error_code", b"")
        if code == COMMAND_FAILED:
            return CommandFailed(description)
        if code == b"UNHANDLED" and "Unhandled Command" in description:
            return PilotError("the daemon does not support this command; is it up to date?", code=INTERNAL)
        return PilotError(f"the daemon failed: {description}", code=INTERNAL)

    def _timed_out(self) -> PilotError:
        return PilotError(f"the daemon did not answer within {self._timeout or 0:g}s", code=TIMEOUT,
                          hint="check the daemon: pilotctl daemon status")

    @staticmethod
    def _lost() -> PilotError:
        return PilotError("lost the connection to the daemon", code=NOT_RUNNING,
                          hint="check the daemon: pilotctl daemon status")
