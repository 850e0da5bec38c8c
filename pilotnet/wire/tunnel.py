"""Tunnel frames: what daemons put in the UDP datagrams they exchange.

Every frame starts with a four-byte magic::

    PILT  plaintext   "PILT" | packet
    PILS  encrypted   "PILS" | sender node u32 | nonce 12 | AES-256-GCM(packet) with 16-byte tag
    PILK  key offer   "PILK" | sender node u32 | X25519 public key 32          (unauthenticated)
    PILA  key offer   "PILA" | sender node u32 | X25519 public 32 | Ed25519 public 32 | signature 64
                      [ | caps varint [ | flags varint ] ]                      (authenticated)
    PILP  punch       "PILP"                                                    (nothing else)

The PILA signature covers ``"auth" | node u32 | X25519 public``.  The optional
trailer (unsigned LEB128 varints) is what current Go daemons append: 137 bytes
with capabilities, 138 with capabilities and flags.  It is not signed, so it is
parsed leniently and never trusted for anything but hints.

Sealing and opening PILS payloads is :mod:`pilotnet.crypto.tunnel`'s job; this
module only lays out bytes.
"""

import struct
from typing import NamedTuple

from pilotnet.errors import DecodeError

MAGIC_PLAINTEXT = b"PILT"
MAGIC_SEALED = b"PILS"
MAGIC_KEY = b"PILK"
MAGIC_AUTH_KEY = b"PILA"
MAGIC_PUNCH = b"PILP"
MAGIC_SIZE = 4

NONCE_SIZE = 12
TAG_SIZE = 16
X25519_SIZE = 32
ED25519_SIZE = 32
SIGNATURE_SIZE = 64

SEALED_HEADER_SIZE = MAGIC_SIZE + 4 + NONCE_SIZE  # 20
MIN_SEALED_SIZE = SEALED_HEADER_SIZE + TAG_SIZE
KEY_FRAME_SIZE = MAGIC_SIZE + 4 + X25519_SIZE  # 40
AUTH_FRAME_SIZE = MAGIC_SIZE + 4 + X25519_SIZE + ED25519_SIZE + SIGNATURE_SIZE  # 136

AUTH_CHALLENGE_PREFIX = b"auth"

# PILA trailer bits (hints only: the trailer is not signed).
CAP_GOSSIP = 0x1
FLAG_REQUEST = 0x1
FLAG_RESPONSE = 0x2
# A u64 never needs more than ten LEB128 bytes; longer runs are not a varint.
_MAX_VARINT_BYTES = 10

_NODE = struct.Struct(">I")
_NODE_AT_4 = struct.Struct(">4xI")


class KeyOffer(NamedTuple):
    """A PILK frame: a peer's X25519 key with nothing vouching for it."""

    node: int
    x25519_public: bytes

    def encode(self) -> bytes:
        return MAGIC_KEY + _NODE.pack(self.node) + self.x25519_public


class AuthKeyOffer(NamedTuple):
    """A PILA frame: a peer's X25519 key signed with its Ed25519 identity."""

    node: int
    x25519_public: bytes
    ed25519_public: bytes
    signature: bytes
    caps: int = 0
    flags: int = 0

    def encode(self) -> bytes:
        trailer = b""
        if self.caps or self.flags:
            trailer = encode_varint(self.caps)
            if self.flags:
                trailer += encode_varint(self.flags)
        return b"".join((
            MAGIC_AUTH_KEY, _NODE.pack(self.node), self.x25519_public,
            self.ed25519_public, self.signature, trailer,
        ))

    @property
    def signed_message(self) -> bytes:
        return auth_challenge(self.node, self.x25519_public)


def auth_challenge(node: int, x25519_public: bytes) -> bytes:
    """The 40 bytes a PILA signature covers."""
    return AUTH_CHALLENGE_PREFIX + _NODE.pack(node) + bytes(x25519_public)


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, offset: int) -> tuple[int, int] | None:
    """``(value, next offset)``, or ``None`` when no complete varint starts at ``offset``."""
    value = 0
    for index in range(_MAX_VARINT_BYTES):
        position = offset + index
        if position >= len(data):
            return None
        byte = data[position]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, position + 1
    return None


def frame_magic(datagram: bytes) -> bytes | None:
    """The first four bytes (the frame kind), or ``None`` for a datagram too short to have one."""
    if len(datagram) < MAGIC_SIZE:
        return None
    return bytes(datagram[:MAGIC_SIZE])


def plaintext_frame(packet_bytes: bytes) -> bytes:
    return MAGIC_PLAINTEXT + packet_bytes


def sealed_sender(datagram: bytes) -> int:
    """The sender node ID of a PILS frame (needed to find its key before opening it)."""
    if len(datagram) < MIN_SEALED_SIZE:
        raise DecodeError(
            f"encrypted frame too short: {len(datagram)} bytes, minimum {MIN_SEALED_SIZE}"
        )
    node: int = _NODE_AT_4.unpack_from(datagram)[0]
    return node


def decode_key_offer(datagram: bytes) -> KeyOffer:
    if len(datagram) < KEY_FRAME_SIZE:
        raise DecodeError(f"PILK frame too short: {len(datagram)} bytes, need {KEY_FRAME_SIZE}")
    if datagram[:MAGIC_SIZE] != MAGIC_KEY:
        raise DecodeError("not a PILK frame")
    return KeyOffer(_NODE.unpack_from(datagram, 4)[0], bytes(datagram[8:40]))


def decode_auth_key_offer(datagram: bytes) -> AuthKeyOffer:
    """Parse a PILA frame of 136 bytes plus an optional varint trailer.

    A trailer that is not a well-formed varint is ignored (caps and flags 0):
    it is unsigned, optional and advisory, and a peer must not be cut off over it.
    """
    if len(datagram) < AUTH_FRAME_SIZE:
        raise DecodeError(f"PILA frame too short: {len(datagram)} bytes, need {AUTH_FRAME_SIZE}")
    if datagram[:MAGIC_SIZE] != MAGIC_AUTH_KEY:
        raise DecodeError("not a PILA frame")
    caps = flags = 0
    parsed = _read_varint(datagram, AUTH_FRAME_SIZE)
    if parsed is not None:
        caps, after_caps = parsed
        parsed = _read_varint(datagram, after_caps)
        if parsed is not None:
            flags = parsed[0]
    return AuthKeyOffer(
        node=_NODE.unpack_from(datagram, 4)[0],
        x25519_public=bytes(datagram[8:40]),
        ed25519_public=bytes(datagram[40:72]),
        signature=bytes(datagram[72:136]),
        caps=caps,
        flags=flags,
    )
