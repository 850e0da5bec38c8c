"""Data exchange frames (port 1001): typed messages and files between agents.

A frame is the shared ``type u32 | length u32 | payload`` framing of
:mod:`pilotnet.wire.typedframe`.  Types 1 TEXT, 2 BINARY, 3 JSON and 4 FILE
have names; any other type is carried unchanged and called ``UNKNOWN(n)``.
A FILE payload starts with its name::

    name_len u16 | name | file bytes          (the frame length covers all three)

File names come from peers and end up as paths on our disk, so they are held
to the project's one rule for such names,
:func:`pilotnet.wire.filenames.check_base_name` (a bare base name of at most
255 bytes of UTF-8: no separators, no ``..``, no leading ``.``, no control or
bidirectional-override characters).  An empty name is allowed (an unnamed
file, which the service acknowledges but does not save).

:class:`DataStreamDecoder` yields a file's name before its first byte so a
receiver can open the destination and stream 16 MiB to it without holding it;
:class:`DataFrameReader` gives whole :class:`DataFrame` values for chat-sized
messages.
"""

import struct
from typing import NamedTuple

from pilotnet.errors import DecodeError
from pilotnet.wire import typedframe
from pilotnet.wire.filenames import MAX_NAME_BYTES, check_base_name
# FrameData and FrameEnd are also DataStreamDecoder's events: services import them from here.
from pilotnet.wire.typedframe import FrameData, FrameEnd, FrameStart, StreamDecodeError  # noqa: F401

TYPE_TEXT = 1
TYPE_BINARY = 2
TYPE_JSON = 3
TYPE_FILE = 4
TYPE_NAMES = {TYPE_TEXT: "TEXT", TYPE_BINARY: "BINARY", TYPE_JSON: "JSON", TYPE_FILE: "FILE"}

MAX_PAYLOAD = typedframe.MAX_PAYLOAD
MAX_FILE_NAME = MAX_NAME_BYTES
_NAME_LENGTH = struct.Struct(">H")
_NAME_LENGTH_SIZE = _NAME_LENGTH.size


def type_name(frame_type: int) -> str:
    """``TEXT``, ``BINARY``, ``JSON``, ``FILE`` or ``UNKNOWN(n)``, as replies and logs spell it."""
    return TYPE_NAMES.get(frame_type) or f"UNKNOWN({frame_type})"


class DataFrame(NamedTuple):
    """One data exchange message; ``file_name`` is ``""`` unless it is a named FILE."""

    frame_type: int
    payload: bytes
    file_name: str = ""

    @property
    def type_name(self) -> str:
        return type_name(self.frame_type)


class DataFrameStart(NamedTuple):
    """A frame begins: ``length`` content bytes follow (for FILE, after the name)."""

    frame_type: int
    length: int
    file_name: str


def check_file_name(name: str) -> str:
    """Return ``name`` if it is empty (an unnamed file) or a safe bare file name, else :class:`DecodeError`."""
    if name == "":
        return name
    return check_base_name(name)


def _decode_file_name(raw: bytes | bytearray | memoryview) -> str:
    try:
        name = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"file name {bytes(raw)!r} is not valid UTF-8") from None
    return check_file_name(name)


def _file_name_header(file_name: str) -> bytes:
    name = check_file_name(file_name).encode("utf-8")
    return _NAME_LENGTH.pack(len(name)) + name


def encode_frame_header(frame_type: int, length: int, file_name: str = "") -> bytes:
    """The first write of a frame whose ``length`` content bytes are written separately.

    For FILE the name header rides with the frame header, so the content can
    be streamed from disk as the second and later writes.
    """
    if frame_type == TYPE_FILE:
        name_header = _file_name_header(file_name)
        return typedframe.encode_header(frame_type, len(name_header) + length) + name_header
    if file_name:
        raise DecodeError(f"only FILE frames carry a file name, not {type_name(frame_type)}")
    return typedframe.encode_header(frame_type, length)


def encode_frame(frame_type: int, payload: bytes, file_name: str = "") -> list[bytes]:
    """``[header, payload]``: the reference's two writes (for FILE the name leads the payload)."""
    if frame_type == TYPE_FILE:
        return typedframe.encode_frame(frame_type, _file_name_header(file_name) + bytes(payload))
    if file_name:
        raise DecodeError(f"only FILE frames carry a file name, not {type_name(frame_type)}")
    return typedframe.encode_frame(frame_type, payload)


def encode_ack(frame: DataFrame) -> list[bytes]:
    """The service's reply to ``frame``: a TEXT frame ``ACK <TYPE> <n> bytes``."""
    return encode_frame(TYPE_TEXT, ack_text(frame.frame_type, len(frame.payload)).encode("ascii"))


def ack_text(frame_type: int, content_length: int) -> str:
    """``ACK <TYPE> <n> bytes``; ``n`` counts content bytes, not a FILE's name header."""
    return f"ACK {type_name(frame_type)} {content_length} bytes"


def error_text(frame_type: int, reason: str) -> str:
    """``ERR <TYPE> save failed: <reason>``, the reply when a frame could not be stored."""
    return f"ERR {type_name(frame_type)} save failed: {reason}"


def _check_name_length(name_length: int, payload_length: int) -> None:
    if name_length > MAX_FILE_NAME:
        raise DecodeError(f"file name length {name_length} exceeds the limit of {MAX_FILE_NAME}")
    if _NAME_LENGTH_SIZE + name_length > payload_length:
        raise DecodeError(f"file name length {name_length} overruns the {payload_length}-byte FILE payload")


def _short_file_payload(payload_length: int) -> DecodeError:
    return DecodeError(f"FILE payload is {payload_length} bytes, too short for its name length")


def split_file_payload(payload: bytes) -> tuple[str, bytes]:
    """``(file_name, content)`` of a whole FILE payload."""
    if len(payload) < _NAME_LENGTH_SIZE:
        raise _short_file_payload(len(payload))
    (name_length,) = _NAME_LENGTH.unpack_from(payload)
    _check_name_length(name_length, len(payload))
    end = _NAME_LENGTH_SIZE + name_length
    return _decode_file_name(payload[_NAME_LENGTH_SIZE:end]), bytes(payload[end:])


#: What :meth:`DataStreamDecoder.feed` returns, in order.
DataEvent = DataFrameStart | FrameData | FrameEnd


class DataStreamDecoder:
    """Incremental reader of data exchange frames.

    ``feed(bytes)`` returns :class:`DataFrameStart`, :class:`FrameData` and
    :class:`FrameEnd` events.  For FILE frames the name header is held back
    until complete (at most 257 bytes), then reported in the start event; the
    data events carry file content only.
    """

    __slots__ = ("_frames", "_pending_file", "_name_buffer", "_failed")

    def __init__(self) -> None:
        self._frames = typedframe.FrameStreamDecoder()
        self._pending_file: FrameStart | None = None  # FrameStart of a FILE whose name is still arriving
        self._name_buffer = bytearray()
        self._failed = False

    @property
    def at_boundary(self) -> bool:
        return self._frames.at_boundary

    def feed(self, data: bytes) -> list[DataEvent]:
        """The events ``data`` completes; a malformed frame raises :class:`StreamDecodeError`
        carrying the events of the frames before it, and the decoder takes nothing more."""
        if self._failed:
            raise DecodeError("data exchange stream already failed; close the connection")
        events: list[DataEvent] = []
        failure: DecodeError | None
        try:
            raw = self._frames.feed(data)
            failure = None
        except StreamDecodeError as error:
            raw, failure = error.events, error
        try:
            for event in raw:
                self._translate(event, events)
        except DecodeError as error:
            failure = error  # before whatever the frame layer refused later in ``data``
        if failure is not None:
            self._failed = True
            raise StreamDecodeError(failure, events)  # type: ignore[arg-type]  # a list of events too
        return events

    def _translate(self, event: typedframe.FrameEvent, events: list[DataEvent]) -> None:
        if isinstance(event, FrameStart):
            if event.frame_type == TYPE_FILE:
                self._pending_file = event
            else:
                events.append(DataFrameStart(event.frame_type, event.length, ""))
        elif self._pending_file is None:
            events.append(event)
        elif isinstance(event, FrameData):
            self._take_name_bytes(event.data, events)
        else:
            # Only a FILE payload shorter than 2 bytes can end before its
            # name: longer names were refused when their length arrived.
            raise _short_file_payload(self._pending_file.length)

    def _take_name_bytes(self, data: bytes, events: list[DataEvent]) -> None:
        # Buffer only the name header; content is passed on as it came.
        view = memoryview(data)
        view = self._buffer_name_bytes(view, _NAME_LENGTH_SIZE)
        if len(self._name_buffer) < _NAME_LENGTH_SIZE:
            return
        pending_file = self._pending_file
        assert pending_file is not None  # a FILE frame's data is being read
        (name_length,) = _NAME_LENGTH.unpack_from(self._name_buffer)
        _check_name_length(name_length, pending_file.length)
        header_size = _NAME_LENGTH_SIZE + name_length
        view = self._buffer_name_bytes(view, header_size)
        if len(self._name_buffer) < header_size:
            return
        file_name = _decode_file_name(self._name_buffer[_NAME_LENGTH_SIZE:])
        events.append(DataFrameStart(TYPE_FILE, pending_file.length - header_size, file_name))
        if view:
            events.append(FrameData(bytes(view)))
        self._pending_file = None
        self._name_buffer.clear()

    def _buffer_name_bytes(self, view: memoryview, wanted: int) -> memoryview:
        needed = max(0, wanted - len(self._name_buffer))
        self._name_buffer += view[:needed]
        return view[needed:]


class DataFrameReader:
    """Whole :class:`DataFrame` values from stream bytes (for messages, not big files)."""

    __slots__ = ("_frames",)

    def __init__(self) -> None:
        self._frames = typedframe.FrameReader()

    @property
    def at_boundary(self) -> bool:
        return self._frames.at_boundary

    def feed(self, data: bytes) -> list[DataFrame]:
        messages: list[DataFrame] = []
        for frame in self._frames.feed(data):
            if frame.frame_type == TYPE_FILE:
                file_name, content = split_file_payload(frame.payload)
                messages.append(DataFrame(TYPE_FILE, content, file_name))
            else:
                messages.append(DataFrame(frame.frame_type, frame.payload))
        return messages
