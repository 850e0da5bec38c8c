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


def _topic_bytes(topic):
    try:
        raw = topic.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError(f"event topic {topic!r} cannot be encoded as UTF-8") from None
    _check_topic_length(len(raw))
    return raw


def _check_topic_length(length):
    if length > MAX_TOPIC:
        raise DecodeError(f"event topic is {length} bytes, more than the limit of {MAX_TOPIC}")


def _check_payload_length(length):
    if length > MAX_PAYLOAD:
        raise DecodeError(f"event payload is {length} bytes, more than the limit of {MAX_PAYLOAD}")


def encode_event(topic, payload=b""):
    """One event as a single write (the reference writes events whole)."""
    raw_topic = _topic_bytes(topic)
    _check_payload_length(len(payload))
    return b"".join((
        _TOPIC_LENGTH.pack(len(raw_topic)), raw_topic,
        _PAYLOAD_LENGTH.pack(len(payload)), bytes(payload),
    ))


class EventDecoder:
    """Incremental reader: feed stream bytes in any chunks, get whole :class:`Event` values.

    Lengths are checked as soon as they arrive, so an oversized event is
    refused before its bytes are buffered.  Bytes are kept in one buffer that
    is compacted only when a feed leaves nothing undecoded or when the consumed
    part is large, so many small events in one chunk cost no quadratic copying.
    After a :class:`DecodeError` the connection must be closed.
    """

    __slots__ = ("_buffer", "_offset", "_failed")

    def __init__(self):
        self._buffer = bytearray()
        self._offset = 0
        self._failed = False

    @property
    def at_boundary(self):
        """True between events: a stream ending here ended cleanly."""
        return self._offset == len(self._buffer)

    def feed(self, data):
        if self._failed:
            raise DecodeError("event stream already failed; close the connection")
        self._buffer += data
        events = []
        try:
            while True:
                event = self._next_event()
                if event is None:
                    break
                events.append(event)
        except DecodeError:
            self._failed = True
            raise
        if self._offset == len(self._buffer) or self._offset > 65536:
            del self._buffer[:self._offset]
            self._offset = 0
        return events

    def _next_event(self):
        buffer, start = self._buffer, self._offset
        if len(buffer) - start < _TOPIC_LENGTH.size:
            return None
        (topic_length,) = _TOPIC_LENGTH.unpack_from(buffer, start)
        _check_topic_length(topic_length)
        payload_length_at = start + _TOPIC_LENGTH.size + topic_length
        if len(buffer) < payload_length_at + _PAYLOAD_LENGTH.size:
            return None
        (payload_length,) = _PAYLOAD_LENGTH.unpack_from(buffer, payload_length_at)
        _check_payload_length(payload_length)
        payload_at = payload_length_at + _PAYLOAD_LENGTH.size
        end = payload_at + payload_length
        if len(buffer) < end:
            return None
        raw_topic = bytes(buffer[start + _TOPIC_LENGTH.size:payload_length_at])
        try:
            topic = raw_topic.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"event topic {raw_topic[:64]!r} is not valid UTF-8") from None
        self._offset = end
        return Event(topic, bytes(buffer[payload_at:end]))
