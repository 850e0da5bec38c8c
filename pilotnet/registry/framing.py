"""Length-prefixed JSON messages, the registry's wire format.

Each message is a 4-byte big-endian length followed by that many bytes of a
UTF-8 JSON object.  Replies are encoded the way Go encodes a map (keys sorted,
compact separators, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped), so what we
send is byte-identical to what the reference would send for the same object.
"""

import re
import struct

from pilotnet.errors import DecodeError
from pilotnet.wire import cjson, gojson

# Larger bodies are refused and the connection closed, as the reference does.
MAX_MESSAGE = 4 * 1024 * 1024

_LENGTH = struct.Struct(">I")
# One C pass per reply: sorted keys as Go writes a map, then Go's escapes only
# when the text has a character that needs one (it rarely does).
_SORTED = cjson.compact_encoder(ensure_ascii=False, sort_keys=True, allow_nan=False)
_NEEDS_ESCAPE = re.compile("[<>&\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def go_json(value):
    """The bytes Go's ``json.Marshal`` produces for a map (see :mod:`pilotnet.wire.gojson`).

    Registry replies carry no floats (times are whole seconds), so the float
    refusal of :func:`gojson.dumps` is not needed on this hot path.
    """
    text = _SORTED(value)
    # Three substring scans and an ASCII check cost less than one regular-expression search.
    if (not text.isascii() or "<" in text or ">" in text or "&" in text) \
            and _NEEDS_ESCAPE.search(text):
        text = _SURROGATE.sub("\ufffd", text.translate(gojson.GO_ESCAPES))
    return text.encode("utf-8")


def encode_message(value):
    """One framed message: length prefix plus the Go-style JSON of ``value``."""
    body = go_json(value)
    if len(body) > MAX_MESSAGE:
        raise ValueError(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE}-byte limit")
    return _LENGTH.pack(len(body)) + body


def decode_body(body):
    """The JSON object in one message body; :class:`DecodeError` if it is not one."""
    return gojson.loads_object(body, "registry message")


class FrameDecoder:
    """Splits a byte stream into message bodies.

    Fed whatever TCP delivers; returns the complete bodies so far.  An
    announced length above :data:`MAX_MESSAGE` raises :class:`DecodeError`
    before any of the body is buffered, so a hostile length cannot make us
    hold 4 GiB.

    Cost is linear in the bytes fed, however they are split: complete messages
    are sliced straight out of the read (one copy each), and a partial one is
    appended to a buffer that is parsed again only once it holds the bytes the
    message still needs, so a large body arriving in many reads is not
    re-copied per read.
    """

    def __init__(self, max_message=MAX_MESSAGE):
        self._buffer = bytearray()
        self._needed = 0  # bytes the buffer must hold before it can yield a message
        self._max_message = max_message

    def feed(self, data):
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._needed:
                return []
            data = bytes(buffer)
            buffer.clear()
        bodies = []
        offset, end = 0, len(data)
        needed = 4
        while end - offset >= 4:
            (length,) = _LENGTH.unpack_from(data, offset)
            if length > self._max_message:
                raise DecodeError(
                    f"message of {length} bytes exceeds the {self._max_message}-byte limit")
            needed = 4 + length
            if end - offset < needed:
                break
            bodies.append(data[offset + 4:offset + needed])
            offset += needed
            needed = 4
        if offset < end:
            buffer += memoryview(data)[offset:]
            self._needed = needed
        return bodies

    @property
    def buffered(self):
        """Bytes received but not yet part of a complete message."""
        return len(self._buffer)
