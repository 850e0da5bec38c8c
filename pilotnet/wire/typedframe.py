"""The ``type u32 | length u32 | payload`` framing shared by ports 1001 and 1003.

Data exchange (1001) and task submission (1003) both put typed frames on a
stream with this 8-byte big-endian header, and both readers refuse a length
above 2^24 (exactly 2^24 is allowed).  This module is the one place that
knows the header; the two services add only what their payloads mean.

Two ways to read:

* :class:`FrameStreamDecoder` turns bytes fed in any chunking into events
  (:class:`FrameStart`, :class:`FrameData`, :class:`FrameEnd`), so a 16 MiB
  file can be written to disk as it arrives instead of being held whole;
* :class:`FrameReader` collects those events into whole :class:`Frame` values
  for the small messages that are easier to handle in one piece.
"""

import struct
from collections.abc import Callable
from typing import NamedTuple

from pilotnet.errors import DecodeError

HEADER_SIZE = 8
MAX_PAYLOAD = 1 << 24
MAX_TYPE = 0xFFFFFFFF

_HEADER = struct.Struct(">II")


class FrameStart(NamedTuple):
    """A frame header arrived: ``length`` payload bytes follow as :class:`FrameData`."""

    frame_type: int
    length: int


class FrameData(NamedTuple):
    """The next piece of the current frame's payload (never empty)."""

    data: bytes


class FrameEnd(NamedTuple):
    """The current frame's payload is complete."""

    frame_type: int


class StreamDecodeError(DecodeError):
    """A malformed frame, carrying the events of everything decoded before it in the same input.

    A peer's frames that were complete before the bad one are good frames: a
    receiver handles (and acknowledges) ``events`` and then refuses the rest.
    """

    def __init__(self, cause: DecodeError, events: list["FrameEvent"]) -> None:
        super().__init__(cause.message, hint=cause.hint)
        self.events = events


#: What :meth:`FrameStreamDecoder.feed` returns, in order.
FrameEvent = FrameStart | FrameData | FrameEnd


class Frame(NamedTuple):
    """A whole frame: its type and its payload."""

    frame_type: int
    payload: bytes


def check_payload_length(length: int, what: str = "frame payload") -> None:
    """Refuse a payload the peer's reader would refuse (more than 2^24 bytes)."""
    if length > MAX_PAYLOAD:
        raise DecodeError(f"{what} length {length} exceeds the limit of {MAX_PAYLOAD} bytes")


def encode_header(frame_type: int, length: int) -> bytes:
    """The 8-byte header; written on its own, before the payload, as the reference does."""
    if not 0 <= frame_type <= MAX_TYPE:
        raise DecodeError(f"frame type {frame_type} does not fit in a u32")
    check_payload_length(length)
    return _HEADER.pack(frame_type, length)


def encode_frame(frame_type: int, payload: bytes) -> list[bytes]:
    """``[header, payload]``: the two writes the reference issues for one frame."""
    return [encode_header(frame_type, len(payload)), bytes(payload)]


def decode_header(header: bytes) -> tuple[int, int]:
    """``(frame_type, length)`` from exactly 8 bytes, refusing oversized lengths."""
    if len(header) != HEADER_SIZE:
        raise DecodeError(f"frame header is {len(header)} bytes, expected {HEADER_SIZE}")
    frame_type: int
    length: int
    frame_type, length = _HEADER.unpack(header)
    check_payload_length(length)
    return frame_type, length


class FrameStreamDecoder:
    """Incremental reader: feed stream bytes, get header/payload/end events.

    Only the 8 header bytes are ever buffered; payload bytes are handed out as
    slices of what was fed.  After a :class:`DecodeError` the stream is out of
    step and the decoder refuses further input: the connection must be closed.
    The error is a :class:`StreamDecodeError` holding the events decoded before it.
    """

    __slots__ = ("_header", "_frame_type", "_remaining", "_failed")

    def __init__(self) -> None:
        self._header = bytearray()
        self._frame_type: int | None = None
        self._remaining = 0
        self._failed = False

    @property
    def at_boundary(self) -> bool:
        """True between frames: a stream ending here ended cleanly."""
        return self._frame_type is None and not self._header

    def feed(self, data: bytes) -> list[FrameEvent]:
        if self._failed:
            raise DecodeError("frame stream already failed; close the connection")
        events: list[FrameEvent] = []
        view = memoryview(data)
        try:
            while view:
                if self._frame_type is None:
                    view = self._take_header(view, events)
                else:
                    taken = view[: self._remaining]
                    view = view[len(taken):]
                    self._remaining -= len(taken)
                    events.append(FrameData(bytes(taken)))
                    if not self._remaining:
                        self._end_frame(events)
        except DecodeError as error:
            raise StreamDecodeError(error, events) from None
        return events

    def _take_header(self, view: memoryview, events: list[FrameEvent]) -> memoryview:
        needed = HEADER_SIZE - len(self._header)
        self._header += view[:needed]
        if len(self._header) == HEADER_SIZE:
            try:
                frame_type, length = decode_header(bytes(self._header))
            except DecodeError:
                self._failed = True
                raise
            self._header.clear()
            self._frame_type, self._remaining = frame_type, length
            events.append(FrameStart(frame_type, length))
            if not length:
                self._end_frame(events)
        return view[needed:]

    def _end_frame(self, events: list[FrameEvent]) -> None:
        events.append(FrameEnd(self._frame_type))  # type: ignore[arg-type]  # only called inside a frame
        self._frame_type = None


class FrameReader:
    """Whole frames from stream bytes, for payloads small enough to hold at once."""

    __slots__ = ("_stream", "_parts", "_admit")

    def __init__(self, admit: Callable[[int, int], object] | None = None) -> None:
        """``admit(frame_type, length)``, if given, sees every header before any of its
        payload is held, and refuses the frame by raising :class:`DecodeError`."""
        self._stream = FrameStreamDecoder()
        self._parts: list[bytes] = []
        self._admit = admit

    @property
    def at_boundary(self) -> bool:
        return self._stream.at_boundary

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by ``data`` (possibly none)."""
        frames: list[Frame] = []
        for event in self._stream.feed(data):
            if isinstance(event, FrameStart):
                if self._admit is not None:
                    self._admit(event.frame_type, event.length)
            elif isinstance(event, FrameData):
                self._parts.append(event.data)
            elif isinstance(event, FrameEnd):
                frames.append(Frame(event.frame_type, b"".join(self._parts)))
                self._parts.clear()
        return frames
