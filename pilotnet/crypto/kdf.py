"""Key agreement and derivation shared by the tunnel and the secure channel.

Both derive an AES-256-GCM key from an X25519 shared secret with
HKDF-SHA256, no salt, and a domain string as ``info``.
"""

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.bindings import crypto_scalarmult
from nacl.exceptions import RuntimeError as NaclRuntimeError

from pilotnet.errors import CryptoError

TUNNEL_INFO = b"pilot-tunnel-v1"
SECURE_CHANNEL_INFO = b"pilot-secure-v1"
KEY_SIZE = 32
X25519_KEY_SIZE = 32


def x25519_shared_secret(private_key: bytes, peer_public_key: bytes) -> bytes:
    """Raw X25519 agreement; refuses a low-order peer key (all-zero secret) as Go does."""
    if len(private_key) != X25519_KEY_SIZE or len(peer_public_key) != X25519_KEY_SIZE:
        raise CryptoError("X25519 keys are 32 bytes")
    try:
        secret = crypto_scalarmult(bytes(private_key), bytes(peer_public_key))
    except NaclRuntimeError:
        # libsodium refuses low-order points itself.
        secret = bytes(KEY_SIZE)
    if secret == bytes(KEY_SIZE):
        raise CryptoError("X25519 agreement gave an all-zero secret (low-order peer key)")
    return secret


def derive_key(shared_secret: bytes, info: bytes) -> bytes:
    """HKDF-SHA256(salt none, ``info``) -> 32-byte AES-256-GCM key."""
    return HKDF(algorithm=SHA256(), length=KEY_SIZE, salt=None, info=info).derive(shared_secret)
