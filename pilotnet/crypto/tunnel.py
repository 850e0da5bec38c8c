"""Tunnel encryption: per-peer AES-256-GCM sessions keyed by X25519 + HKDF.

Each daemon has one long-lived X25519 key pair.  With a peer's public key
(from its PILA frame) both sides derive the same AES-256-GCM key
(HKDF-SHA256, no salt, info ``pilot-tunnel-v1``) and use it in both
directions.  A sealed frame is::

    "PILS" | sender node u32 | nonce (4-byte random prefix | u64 counter) | ciphertext+tag

with the sender's node ID (the same four bytes as offset 4-7) as associated
data.  Counters start at 1 and never repeat under one session; the random
prefixes keep the two directions' nonces apart.

Replay protection is a 256-counter sliding window that is consulted before
decryption but *changed only after the frame authenticated*: a forged frame
with a huge counter is rejected without moving the window, so it cannot blind
the receiver (the reference commits first and can be blinded this way).

There is one window per nonce prefix of the peer.  A peer that drops its
state for us (a revoke, a reset) and keys again with the same X25519 key has
the same session key but a fresh prefix and restarts its counter at 1; one
window for everything would take its new frames for replays of the old ones
until its counter caught up.  A new prefix gets its own window once a frame
under it authenticates (the prefix is part of the nonce, so it cannot be
forged), and the prefixes it replaces are retired: their frames stay refused.
"""

import os
import struct
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import crypto_scalarmult_base

from pilotnet.crypto.identity import verify
from pilotnet.crypto.kdf import TUNNEL_INFO, derive_key, x25519_shared_secret
from pilotnet.errors import CryptoError, DecodeError
from pilotnet.wire.handshake import Signer
from pilotnet.wire.tunnel import (
    MAGIC_SEALED, MIN_SEALED_SIZE, SEALED_HEADER_SIZE, AuthKeyOffer, auth_challenge,
)

REPLAY_WINDOW = 256
NONCE_PREFIX_SIZE = 4
# The counter is a u64; the last value is never used so "next" always fits.
MAX_COUNTER = (1 << 64) - 1

_SEALED_HEAD = struct.Struct(">4sI4sQ")
_COUNTER_AT_12 = struct.Struct(">12xQ")
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1


class ReplayedFrame(CryptoError):
    """A sealed frame whose counter was already accepted or fell behind the replay window.

    Its own class so the tunnel counts replays apart from forgeries.
    """


class TunnelKeyPair:
    """The daemon's X25519 key pair for tunnels (kept for the life of the process)."""

    __slots__ = ("private_key", "public_key")

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32:
            raise CryptoError("an X25519 private key is 32 bytes")
        self.private_key = bytes(private_key)
        self.public_key = crypto_scalarmult_base(self.private_key)

    @classmethod
    def generate(cls) -> Self:
        return cls(os.urandom(32))

    def session_key(self, peer_public_key: bytes) -> bytes:
        """The AES-256-GCM key shared with the owner of ``peer_public_key``."""
        return derive_key(x25519_shared_secret(self.private_key, peer_public_key), TUNNEL_INFO)


class ReplayWindow:
    """Which of the last 256 counters have been accepted.

    ``highest`` is the largest accepted counter; bit ``i`` of ``seen`` stands
    for counter ``highest - i``.  A Python int is the bitmap, so sliding the
    window is one shift.
    """

    __slots__ = ("highest", "seen")

    def __init__(self) -> None:
        self.highest = 0
        self.seen = 0

    def is_fresh(self, counter: int) -> bool:
        """Would ``counter`` be accepted?  Changes nothing."""
        if counter == 0:
            return False
        highest = self.highest
        if counter > highest:
            return True
        age = highest - counter
        return age < REPLAY_WINDOW and not (self.seen >> age) & 1

    def commit(self, counter: int) -> None:
        """Record an authenticated ``counter`` (call only after :meth:`is_fresh`)."""
        highest = self.highest
        if counter > highest:
            jump = counter - highest
            # A jump past the whole window forgets everything (and must not
            # shift a bitmap by up to 2**64 bits).
            self.seen = 1 if jump >= REPLAY_WINDOW else ((self.seen << jump) | 1) & _WINDOW_MASK
            self.highest = counter
        else:
            self.seen |= 1 << (highest - counter)


#: Prefixes of a peer whose frames are refused once it moved to a newer one (4 bytes each).
MAX_RETIRED_PREFIXES = 1024


class TunnelSession:
    """Sealing and opening for one peer.

    ``local_node`` is our node ID (the AAD of what we seal); frames we open
    carry their own sender ID, which the caller used to pick this session.
    """

    __slots__ = ("_aead", "local_node", "peer_public_key", "prefix", "_send_counter", "replay", "_local_head",
                 "_peer_prefix", "_retired")

    def __init__(self, key: bytes, local_node: int, *, peer_public_key: bytes | None = None,
                 prefix: bytes | None = None) -> None:
        self._aead = AESGCM(key)
        self.local_node = local_node
        self.peer_public_key = peer_public_key
        self.prefix = prefix if prefix is not None else os.urandom(NONCE_PREFIX_SIZE)
        if len(self.prefix) != NONCE_PREFIX_SIZE:
            raise CryptoError("a nonce prefix is 4 bytes")
        self._send_counter = 0
        #: The window of the peer's current prefix (``_peer_prefix``, unknown before its first frame).
        self.replay = ReplayWindow()
        self._peer_prefix: bytes | None = None
        self._retired: dict[bytes, None] = {}  # insertion-ordered: the oldest goes first
        self._local_head = struct.pack(">I", local_node)

    @classmethod
    def with_peer(cls, key_pair: TunnelKeyPair, local_node: int, peer_public_key: bytes, *,
                  prefix: bytes | None = None) -> Self:
        return cls(key_pair.session_key(peer_public_key), local_node,
                   peer_public_key=bytes(peer_public_key), prefix=prefix)

    @property
    def send_counter(self) -> int:
        """The counter of the last frame sealed (0 before the first)."""
        return self._send_counter

    def seal(self, packet_bytes: bytes) -> bytes:
        """A PILS frame carrying ``packet_bytes``."""
        counter = self._send_counter + 1
        if counter >= MAX_COUNTER:
            raise CryptoError(
                "tunnel nonce counter exhausted",
                hint="the session must be re-keyed with a fresh key exchange",
            )
        self._send_counter = counter
        head = _SEALED_HEAD.pack(MAGIC_SEALED, self.local_node, self.prefix, counter)
        return head + self._aead.encrypt(head[8:], packet_bytes, self._local_head)

    def open(self, frame: bytes) -> bytes:
        """The packet bytes inside a PILS frame from this peer.

        Raises :class:`ReplayedFrame` for a replayed or too old frame,
        :class:`CryptoError` for a forged one and
        :class:`DecodeError` for one too short to be a frame at all.
        """
        if len(frame) < MIN_SEALED_SIZE:
            raise DecodeError(f"encrypted frame too short: {len(frame)} bytes, minimum {MIN_SEALED_SIZE}")
        (counter,) = _COUNTER_AT_12.unpack_from(frame)
        peer_prefix = self._peer_prefix
        current = peer_prefix is not None and frame.startswith(peer_prefix, 8)
        replay = self.replay if current else self._window_for(frame[8:12])
        if not replay.is_fresh(counter):
            raise ReplayedFrame(f"replayed or too old tunnel frame (counter {counter})")
        view = memoryview(frame)
        try:
            plaintext = self._aead.decrypt(view[8:SEALED_HEADER_SIZE], view[SEALED_HEADER_SIZE:], view[4:8])
        except InvalidTag:
            raise CryptoError("tunnel frame failed authentication") from None
        replay.commit(counter)
        if not current:
            self._move_to(bytes(frame[8:12]), replay)
        return plaintext

    def _window_for(self, prefix: bytes) -> ReplayWindow:
        """The window for frames under a prefix other than the peer's current one (the rare path)."""
        if self._peer_prefix is None:
            return self.replay
        if prefix in self._retired:
            raise ReplayedFrame("tunnel frame of a key exchange the peer has since replaced")
        return ReplayWindow()

    def _move_to(self, prefix: bytes, window: ReplayWindow) -> None:
        """An authenticated frame under ``prefix``: the peer's state for us is new from now on."""
        if self._peer_prefix is not None:
            if len(self._retired) >= MAX_RETIRED_PREFIXES:
                del self._retired[next(iter(self._retired))]
            self._retired[self._peer_prefix] = None
        self._peer_prefix = prefix
        self.replay = window


def build_auth_key_offer(identity: Signer, node: int, key_pair: TunnelKeyPair, *, caps: int = 0,
                         flags: int = 0) -> AuthKeyOffer:
    """Our PILA frame: the tunnel key signed by the node's Ed25519 identity."""
    return AuthKeyOffer(
        node=node,
        x25519_public=key_pair.public_key,
        ed25519_public=identity.public_key,
        signature=identity.sign(auth_challenge(node, key_pair.public_key)),
        caps=caps,
        flags=flags,
    )


def check_auth_key_offer(offer: AuthKeyOffer, registered_ed25519_key: bytes) -> None:
    """Accept a peer's PILA only if it is signed by the key the registry holds for that node.

    Raises :class:`CryptoError` saying which check failed.
    """
    if offer.ed25519_public != registered_ed25519_key:
        raise CryptoError(f"PILA from node {offer.node} carries a key the registry does not hold for it")
    if not verify(registered_ed25519_key, offer.signed_message, offer.signature):
        raise CryptoError(f"PILA from node {offer.node} has a bad signature")
