"""Length-prefixed JSON messages, the registry's wire format.

Each message is a 4-byte big-endian length followed by that many bytes of a
UTF-8 JSON object.  Replies are encoded the way Go encodes a map (keys sorted,
compact separators, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped), so what we
send is byte-identical to what the reference would send for the same object.
"""

import json
import struct

from pilotnet.errors import DecodeError

# Larger bodies are refused and the connection closed, as the reference does.
MAX_MESSAGE = 4 * 1024 * 1024

_LENGTH = struct.Struct(">I")

# Escapes Go's encoder applies on top of plain JSON.  None of these characters
# can appear in JSON outside a string, so replacing them in the text is exact.
_GO_ESCAPES = (
    ("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
    ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
)


def go_json(value):
    """The bytes Go's ``json.Marshal`` produces for a map-shaped ``value``."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    for raw, escaped in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    # A lone surrogate (possible after decoding "\ud800") is not UTF-8; Go
    # would write U+FFFD, we write "?": either way the output stays valid.
    return text.encode("utf-8", "replace")


def encode_message(value):
    """One framed message: length prefix plus the Go-style JSON of ``value``."""
    body = go_json(value)
    if len(body) > MAX_MESSAGE:
        raise ValueError(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE}-byte limit")
    return _LENGTH.pack(len(body)) + body


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def decode_body(body):
    """The JSON object in one message body; :class:`DecodeError` if it is not one."""
    try:
        text = bytes(body).decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"invalid JSON message: {exc}") from None
    if not isinstance(value, dict):
        raise DecodeError(f"a message must be a JSON object, not {type(value).__name__}")
    return value


class FrameDecoder:
    """Splits a byte stream into message bodies.

    Fed whatever TCP delivers; returns the complete bodies so far.  An
    announced length above :data:`MAX_MESSAGE` raises :class:`DecodeError`
    before any of the body is buffered, so a hostile length cannot make us
    hold 4 GiB.
    """

    def __init__(self, max_message=MAX_MESSAGE):
        self._buffer = bytearray()
        self._max_message = max_message

    def feed(self, data):
        self._buffer += data
        bodies = []
        while len(self._buffer) >= 4:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > self._max_message:
                raise DecodeError(
                    f"message of {length} bytes exceeds the {self._max_message}-byte limit")
            if len(self._buffer) < 4 + length:
                break
            bodies.append(bytes(self._buffer[4:4 + length]))
            del self._buffer[:4 + length]
        return bodies

    @property
    def buffered(self):
        """Bytes received but not yet part of a complete message."""
        return len(self._buffer)
