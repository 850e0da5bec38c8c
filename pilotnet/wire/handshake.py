"""Trust handshake messages (port 444): one signed JSON object per connection.

The initiator opens a stream to the peer's port 444 and writes one object
with all seven fields, in this order (Go struct order, compact)::

    {"type": "handshake_request" | "handshake_accept" | "handshake_reject" | "handshake_revoke",
     "node_id": <sender, u32>, "public_key": "<base64 Ed25519 key or empty>",
     "justification": "...", "signature": "<base64 Ed25519 signature or empty>",
     "reason": "...", "timestamp": <Unix seconds>}

The signature covers only ``handshake:<sender>:<receiver>`` (decimal node
IDs), the same for every type; it binds neither type nor timestamp, which is
why receivers also check the timestamp and keep a replay set keyed by the
hash of :func:`encode_message` of what they decoded (our encoding is Go's, so
that hash is the one a Go receiver computes).

The receiver reads only the first stream segment, so the whole object must
fit in one segment: a daemon must compare ``len(encode_message(m))`` with its
segment size before sending.  :data:`MAX_MESSAGE_SIZE` is the hard bound
(the largest segment payload any peer can send).
"""

import base64
import binascii
from typing import Any, NamedTuple, Protocol

from pilotnet.errors import DecodeError
from pilotnet.wire import gojson

REQUEST = "handshake_request"
ACCEPT = "handshake_accept"
REJECT = "handshake_reject"
REVOKE = "handshake_revoke"
MESSAGE_TYPES = frozenset((REQUEST, ACCEPT, REJECT, REVOKE))

MAX_MESSAGE_SIZE = 0xFFFF
MAX_AGE = 5 * 60          # seconds a message stays acceptable
MAX_FUTURE_SKEW = 30      # seconds a message may be ahead of our clock
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
_MAX_NODE = 0xFFFFFFFF
_INT64 = (-(1 << 63), (1 << 63) - 1)
_WHAT = "handshake message"


class HandshakeMessage(NamedTuple):
    """A decoded port-444 message; ``public_key``/``signature`` are raw bytes, ``b""`` when absent."""

    kind: str
    node_id: int
    public_key: bytes
    justification: str
    signature: bytes
    reason: str
    timestamp: int


class Signer(Protocol):
    """What signs a message: an Ed25519 identity (:class:`pilotnet.crypto.identity.Identity`)."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


def challenge(sender_node: int, receiver_node: int) -> bytes:
    """The bytes every handshake signature covers: ``handshake:<sender>:<receiver>``."""
    return f"handshake:{sender_node}:{receiver_node}".encode("ascii")


def build_message(kind: str, identity: Signer, sender_node: int, receiver_node: int, timestamp: int,
                  justification: str = "", reason: str = "") -> HandshakeMessage:
    """A message from ``sender_node`` signed with ``identity`` (a :class:`pilotnet.crypto.identity.Identity`)."""
    message = HandshakeMessage(
        kind=kind,
        node_id=sender_node,
        public_key=identity.public_key,
        justification=justification,
        signature=identity.sign(challenge(sender_node, receiver_node)),
        reason=reason,
        timestamp=timestamp,
    )
    _validate(message)
    return message


def is_fresh(message: HandshakeMessage, now: float) -> bool:
    """Is the timestamp within 5 minutes in the past and 30 seconds in the future of ``now``?"""
    return now - MAX_AGE <= message.timestamp <= now + MAX_FUTURE_SKEW


def _validate(message: HandshakeMessage) -> None:
    if message.kind not in MESSAGE_TYPES:
        raise DecodeError(
            f"{_WHAT}: field 'type' = {message.kind[:64]!r} is not one of {', '.join(sorted(MESSAGE_TYPES))}"
        )
    if not 0 <= message.node_id <= _MAX_NODE:
        raise DecodeError(f"{_WHAT}: field 'node_id' = {message.node_id} does not fit in a u32")
    if len(message.public_key) not in (0, PUBLIC_KEY_SIZE):
        raise DecodeError(f"{_WHAT}: field 'public_key' is {len(message.public_key)} bytes, expected {PUBLIC_KEY_SIZE}")
    if len(message.signature) not in (0, SIGNATURE_SIZE):
        raise DecodeError(f"{_WHAT}: field 'signature' is {len(message.signature)} bytes, expected {SIGNATURE_SIZE}")
    if not _INT64[0] <= message.timestamp <= _INT64[1]:
        raise DecodeError(f"{_WHAT}: field 'timestamp' does not fit in an int64")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_message(message: HandshakeMessage) -> bytes:
    """The exact bytes a Go daemon writes for ``message``."""
    _validate(message)
    data = gojson.dumps({
        "type": message.kind,
        "node_id": message.node_id,
        "public_key": _b64(message.public_key),
        "justification": message.justification,
        "signature": _b64(message.signature),
        "reason": message.reason,
        "timestamp": message.timestamp,
    })
    _check_size(len(data))
    return data


def _check_size(size: int) -> None:
    if size > MAX_MESSAGE_SIZE:
        raise DecodeError(f"{_WHAT} is {size} bytes, more than the limit of {MAX_MESSAGE_SIZE}")


def _decode_b64(document: dict[str, Any], field: str, size: int) -> bytes:
    text = gojson.get_str(document, field, _WHAT)
    if not text:
        return b""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{_WHAT}: field {field!r} is not valid base64") from None
    if len(data) != size:
        raise DecodeError(f"{_WHAT}: field {field!r} is {len(data)} bytes, expected {size}")
    return data


def decode_message(data: bytes) -> HandshakeMessage:
    """Parse and check one message; :class:`DecodeError` names the field that is wrong.

    All seven fields are required (every reference version sends them all);
    unknown extra fields are ignored, as Go does.
    """
    _check_size(len(data))
    document = gojson.loads_object(data, _WHAT)
    message = HandshakeMessage(
        kind=gojson.get_str(document, "type", _WHAT),
        node_id=gojson.get_int(document, "node_id", _WHAT, 0, _MAX_NODE),
        public_key=_decode_b64(document, "public_key", PUBLIC_KEY_SIZE),
        justification=gojson.get_str(document, "justification", _WHAT),
        signature=_decode_b64(document, "signature", SIGNATURE_SIZE),
        reason=gojson.get_str(document, "reason", _WHAT),
        timestamp=gojson.get_int(document, "timestamp", _WHAT, *_INT64),
    )
    _validate(message)
    return message
