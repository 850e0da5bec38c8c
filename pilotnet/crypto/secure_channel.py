"""The port-443 secure channel: an encrypted byte stream over an ordinary stream.

Applications (not the daemon) use it for end-to-end encryption on top of a
Pilot stream.  The exchange, as the current reference does it:

1. the client writes its 32-byte ephemeral X25519 public key; the server
   reads it and writes its own 32 bytes (raw, no framing);
2. both derive one AES-256-GCM key: HKDF-SHA256 of the X25519 secret, no
   salt, info ``pilot-secure-v1`` (:mod:`pilotnet.crypto.kdf`);
3. every write is one record::

       length u32 (= 12 + ciphertext length) | nonce 12 | ciphertext+tag

   where the nonce is the sender's role prefix (server ``00000001``, client
   ``00000002``) and a u64 counter from 1, and the associated data is that
   4-byte prefix.  Lengths below 12 + 16 (no room for a tag) or above 2^24
   are refused.

The stream underneath is reliable and ordered, so each record's counter must
be exactly the next one: a replayed, dropped or reordered record means
tampering, and the channel fails.  Everything here is sans-IO: feed received
bytes to :meth:`SecureChannel.receive`, write what it and :meth:`SecureChannel.seal`
return.
"""

import os
import struct
from typing import NamedTuple, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import crypto_scalarmult_base

from pilotnet.crypto.kdf import SECURE_CHANNEL_INFO, X25519_KEY_SIZE, derive_key, x25519_shared_secret
from pilotnet.errors import CryptoError, DecodeError

SERVER_PREFIX = b"\x00\x00\x00\x01"
CLIENT_PREFIX = b"\x00\x00\x00\x02"
NONCE_SIZE = 12
TAG_SIZE = 16
LENGTH_SIZE = 4
MIN_RECORD_LENGTH = NONCE_SIZE + TAG_SIZE
MAX_RECORD_LENGTH = 1 << 24
MAX_PLAINTEXT = MAX_RECORD_LENGTH - NONCE_SIZE - TAG_SIZE
# The counter is a u64 starting at 1; the last value is never used so that
# "next counter" always fits.
MAX_COUNTER = (1 << 64) - 1

_LENGTH = struct.Struct(">I")
_NONCE = struct.Struct(">4sQ")

SERVER = "server"
CLIENT = "client"
_PREFIXES = {SERVER: SERVER_PREFIX, CLIENT: CLIENT_PREFIX}
_PEER_ROLE = {SERVER: CLIENT, CLIENT: SERVER}

AWAITING_PEER_KEY = "awaiting-peer-key"
ESTABLISHED = "established"
FAILED = "failed"


def channel_key(private_key: bytes, peer_public_key: bytes) -> bytes:
    """The AES-256-GCM key both ends derive from their X25519 exchange."""
    return derive_key(x25519_shared_secret(private_key, peer_public_key), SECURE_CHANNEL_INFO)


class RecordSealer:
    """Turns plaintext into records for one direction, counting nonces from ``next_counter``."""

    __slots__ = ("_aead", "_prefix", "next_counter")

    def __init__(self, key: bytes, prefix: bytes, next_counter: int = 1) -> None:
        self._aead = AESGCM(key)
        self._prefix = prefix
        self.next_counter = next_counter

    def seal(self, plaintext: bytes | memoryview) -> bytes:
        """One record for up to :data:`MAX_PLAINTEXT` bytes."""
        if len(plaintext) > MAX_PLAINTEXT:
            raise CryptoError(f"a record carries at most {MAX_PLAINTEXT} bytes, not {len(plaintext)}")
        counter = self.next_counter
        if counter >= MAX_COUNTER:
            raise CryptoError("secure channel nonce counter exhausted", hint="open a new channel")
        self.next_counter = counter + 1
        nonce = _NONCE.pack(self._prefix, counter)
        sealed = self._aead.encrypt(nonce, bytes(plaintext), self._prefix)
        return _LENGTH.pack(NONCE_SIZE + len(sealed)) + nonce + sealed


class RecordOpener:
    """Reads the peer's records from stream bytes fed in any chunks.

    Only the record with exactly the expected counter and the peer's prefix
    is accepted; the counter advances only after the record authenticated.
    """

    __slots__ = ("_aead", "_prefix", "next_counter", "_buffer")

    def __init__(self, key: bytes, peer_prefix: bytes, next_counter: int = 1) -> None:
        self._aead = AESGCM(key)
        self._prefix = peer_prefix
        self.next_counter = next_counter
        self._buffer = bytearray()

    @property
    def at_boundary(self) -> bool:
        """True between records: a stream ending here ended cleanly."""
        return not self._buffer

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """The plaintexts of the records completed by ``data`` (possibly none)."""
        self._buffer += data
        plaintexts: list[bytes] = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= LENGTH_SIZE:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if not MIN_RECORD_LENGTH <= length <= MAX_RECORD_LENGTH:
                raise DecodeError(
                    f"secure channel record length {length} is outside "
                    f"{MIN_RECORD_LENGTH}..{MAX_RECORD_LENGTH}"
                )
            end = offset + LENGTH_SIZE + length
            if len(buffer) < end:
                break
            plaintexts.append(self._open(bytes(buffer[offset + LENGTH_SIZE:end])))
            offset = end
        del buffer[:offset]
        return plaintexts

    def _open(self, record: bytes) -> bytes:
        prefix, counter = _NONCE.unpack_from(record)
        if prefix != self._prefix:
            raise CryptoError(f"secure channel record has nonce prefix {prefix.hex()}, expected {self._prefix.hex()}")
        if counter != self.next_counter:
            raise CryptoError(
                f"secure channel record counter {counter}, expected {self.next_counter} "
                f"(replayed, dropped or reordered record)"
            )
        try:
            plaintext = self._aead.decrypt(record[:NONCE_SIZE], record[NONCE_SIZE:], prefix)
        except InvalidTag:
            raise CryptoError("secure channel record failed authentication") from None
        self.next_counter = counter + 1
        return plaintext


class Received(NamedTuple):
    """What :meth:`SecureChannel.receive` produced: bytes to write back, and plaintexts."""

    to_send: bytes
    plaintexts: list[bytes]


class SecureChannel:
    """One end of a secure channel: awaiting the peer's key, then established, or failed.

    The client writes :meth:`opening_bytes` as soon as the stream is open;
    the server writes nothing until the client's key arrives, then answers
    with its own key (returned in :attr:`Received.to_send`).  Any error moves
    the channel to ``failed`` for good: the stream must be closed.
    """

    def __init__(self, role: str, private_key: bytes | None = None) -> None:
        if role not in _PREFIXES:
            raise ValueError(f"role must be {SERVER!r} or {CLIENT!r}, not {role!r}")
        self.role = role
        self.state = AWAITING_PEER_KEY
        self._private_key: bytes | None = bytes(private_key) if private_key is not None else os.urandom(X25519_KEY_SIZE)
        if len(self._private_key) != X25519_KEY_SIZE:
            raise CryptoError(f"an X25519 private key is {X25519_KEY_SIZE} bytes")
        self.public_key = crypto_scalarmult_base(self._private_key)
        self._peer_key = bytearray()
        self._sealer: RecordSealer | None = None
        self._opener: RecordOpener | None = None

    @classmethod
    def client(cls, private_key: bytes | None = None) -> Self:
        return cls(CLIENT, private_key)

    @classmethod
    def server(cls, private_key: bytes | None = None) -> Self:
        return cls(SERVER, private_key)

    def opening_bytes(self) -> bytes:
        """What to write as soon as the stream opens (the client's key; nothing for a server)."""
        return self.public_key if self.role == CLIENT else b""

    def receive(self, data: bytes) -> Received:
        """Feed bytes from the stream; :class:`CryptoError`/:class:`DecodeError` fail the channel."""
        if self.state == FAILED:
            raise CryptoError("secure channel has failed; close the stream")
        try:
            return self._receive(memoryview(data))
        except (CryptoError, DecodeError):
            self.state = FAILED
            raise

    def _receive(self, data: memoryview) -> Received:
        to_send = b""
        if self.state == AWAITING_PEER_KEY:
            needed = X25519_KEY_SIZE - len(self._peer_key)
            self._peer_key += data[:needed]
            data = data[needed:]
            if len(self._peer_key) < X25519_KEY_SIZE:
                return Received(b"", [])
            self._establish(bytes(self._peer_key))
            if self.role == SERVER:
                to_send = self.public_key
        opener = self._opener
        assert opener is not None  # established: receive() refuses a failed channel
        plaintexts = opener.feed(data) if data else []
        return Received(to_send, plaintexts)

    def _establish(self, peer_public_key: bytes) -> None:
        assert self._private_key is not None  # kept until the channel is established, once
        key = channel_key(self._private_key, peer_public_key)
        self._sealer = RecordSealer(key, _PREFIXES[self.role])
        self._opener = RecordOpener(key, _PREFIXES[_PEER_ROLE[self.role]])
        self._private_key = None  # ephemeral: not needed once the key exists
        self.state = ESTABLISHED

    def seal(self, data: bytes) -> bytes:
        """Records carrying ``data`` (split every :data:`MAX_PLAINTEXT` bytes), ready to write."""
        if self.state != ESTABLISHED:
            raise CryptoError(f"secure channel is {self.state}, cannot send")
        sealer = self._sealer
        assert sealer is not None  # established
        view = memoryview(data)
        if not view:
            return sealer.seal(b"")
        return b"".join(sealer.seal(view[i:i + MAX_PLAINTEXT]) for i in range(0, len(view), MAX_PLAINTEXT))

    @property
    def at_boundary(self) -> bool:
        """True when no partial key or record is buffered."""
        if self.state == AWAITING_PEER_KEY:
            return not self._peer_key
        return self.state == ESTABLISHED and self._opener is not None and self._opener.at_boundary
