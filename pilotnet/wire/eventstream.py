"""Event stream frames (port 1002): publish/subscribe events.

An event is::

    topic_len u16 | topic (UTF-8) | payload_len u32 | payload

with the topic at most 1024 bytes and the payload at most 2^24 bytes (both
limits inclusive, as the reference reader has them).  The first event on a
connection is the subscription (its payload is ignored); later ones are
publishes.  Which subscriptions a topic reaches is :mod:`pilotnet.wire.topics`.

An empty topic is carried (the reference reader accepts it and a Go client
could send one); it is an ordinary topic that only an empty subscription and
``*`` match.  Topics that are not UTF-8 are refused: topics are names people
type, and a broker keyed by text cannot hold them.
"""

import struct
from typing import NamedTuple

from pilotnet.errors import DecodeError

MAX_TOPIC = 1024
MAX_PAYLOAD = 1 << 24

_TOPIC_LENGTH = struct.Struct(">H")
_PAYLOAD_LENGTH = struct.Struct(">I")


class Event(NamedTuple):
    topic: str
    payload: bytes


def _topic_bytes(topic: str) -> bytes:
    try:
        raw = topic.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError(f"event topic {topic!r} cannot be encoded as UTF-8") from None
    _check_topic_length(len(raw))
    return raw


def _check_topic_length(length: int) -> None:
    if length > MAX_TOPIC:
        raise DecodeError(f"event topic is {length} bytes, more than the limit of {MAX_TOPIC}")


def _check_payload_length(length: int) -> None:
    if length > MAX_PAYLOAD:
        raise DecodeError(f"event payload is {length} bytes, more than the limit of {MAX_PAYLOAD}")


def encode_event(topic: str, payload: bytes = b"") -> bytes:
    """One event as a single write (the reference writes events whole)."""
    raw_topic = _topic_bytes(topic)
    _check_payload_length(len(payload))
    return b"".join((
        _TOPIC_LENGTH.pack(len(raw_topic)), raw_topic,
        _PAYLOAD_LENGTH.pack(len(payload)), bytes(payload),
    ))


def split_events(data: bytes, *, frames: bool = False) -> list[tuple[str, bytes]]:
    """Every event of ``data``, which must hold whole events back to back.

    Gives plain ``(topic, payload)`` pairs (the caller makes its own event
    objects, so none is built twice), or with ``frames`` ``(topic, frame)``
    pairs whose ``frame`` is the event's own wire bytes: a broker passes
    those on as they came instead of encoding each event again.  Raises
    :class:`DecodeError` when ``data`` is malformed or ends inside an event.
    """
    items, offset, _ = _scan(bytes(data), 0, frames)
    if offset != len(data):
        raise DecodeError("event data ends inside an event")
    return items


def _scan(data: bytes, offset: int, frames: bool) -> tuple[list[tuple[str, bytes]], int, int]:
    """The whole events of ``data`` from ``offset``.

    Returns them, where the first incomplete event starts, and how long
    ``data`` must be before that event can be complete (so a decoder
    collecting a large event does not scan again for every chunk of it).
    One loop over ``bytes`` with no per-event helper calls: this runs for
    every event a daemon forwards.
    """
    items: list[tuple[str, bytes]] = []
    size = len(data)
    topic_length_at, payload_length_at = _TOPIC_LENGTH.unpack_from, _PAYLOAD_LENGTH.unpack_from
    while True:
        if size - offset < _TOPIC_LENGTH.size:
            return items, offset, offset + _TOPIC_LENGTH.size
        (topic_length,) = topic_length_at(data, offset)
        if topic_length > MAX_TOPIC:
            _check_topic_length(topic_length)
        length_at = offset + _TOPIC_LENGTH.size + topic_length
        payload_at = length_at + _PAYLOAD_LENGTH.size
        if size < payload_at:
            return items, offset, payload_at
        (payload_length,) = payload_length_at(data, length_at)
        if payload_length > MAX_PAYLOAD:
            _check_payload_length(payload_length)
        end = payload_at + payload_length
        if size < end:
            return items, offset, end
        raw_topic = data[offset + _TOPIC_LENGTH.size:length_at]
        try:
            topic = raw_topic.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"event topic {raw_topic[:64]!r} is not valid UTF-8") from None
        items.append((topic, data[offset:end] if frames else data[payload_at:end]))
        offset = end


class EventDecoder:
    """Incremental reader: feed stream bytes in any chunks, get whole events.

    :meth:`feed` gives :class:`Event` values, :meth:`feed_frames` ``(topic,
    frame)`` pairs (see :func:`split_events`).  Lengths are checked as soon as
    they arrive, so an oversized event is refused before its bytes are
    buffered.  Chunks that end between events are decoded in place; only an
    event split across chunks is buffered, and a large one is not scanned
    again until enough bytes for it have arrived, so neither many small events
    nor one big event in small chunks costs quadratic copying.  After a
    :class:`DecodeError` the connection must be closed.
    """

    __slots__ = ("_buffer", "_wanted", "_failed")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._wanted = 0
        self._failed = False

    @property
    def at_boundary(self) -> bool:
        """True between events: a stream ending here ended cleanly."""
        return not self._buffer

    def feed(self, data: bytes) -> list[Event]:
        return [Event(topic, payload) for topic, payload in self._feed(data, False)]

    def feed_frames(self, data: bytes) -> list[tuple[str, bytes]]:
        return self._feed(data, True)

    def _feed(self, data: bytes, frames: bool) -> list[tuple[str, bytes]]:
        if self._failed:
            raise DecodeError("event stream already failed; close the connection")
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._wanted:
                return []
            data, self._buffer = bytes(self._buffer), bytearray()
        else:
            data = bytes(data)
        try:
            items, offset, self._wanted = _scan(data, 0, frames)
        except DecodeError:
            self._failed = True
            raise
        if offset < len(data):
            self._buffer = bytearray(data[offset:])
            self._wanted -= offset
        return items
