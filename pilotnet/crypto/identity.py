"""Ed25519 node identities and their key files.

A node's identity is what keeps its virtual address across restarts: the
registry assigns node IDs per public key.  The file format is the Go daemon's,
so an identity can move between implementations::

    {"private_key": "<base64 of the 64-byte key: seed || public key>",
     "public_key":  "<base64 of the 32-byte public key>"}

Files are written atomically (temporary file, fsync, rename) with mode 0600,
and on load the pair is checked: a file whose halves do not belong together is
refused rather than used to sign things nobody can verify.
"""

import base64
import binascii
import json
import os
import tempfile
from typing import Self

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from pilotnet.errors import PilotError, INVALID_ARGUMENT, NOT_FOUND

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
FILE_MODE = 0o600


class IdentityError(PilotError):
    """An identity file that cannot be used (missing, corrupt, foreign, mismatched)."""

    code = INVALID_ARGUMENT


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str | bytes, what: str, size: int | None = None) -> bytes:
    """Strict standard base64 (padding required), optionally of an exact size."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise IdentityError(f"{what} is not valid base64") from None
    if size is not None and len(data) != size:
        raise IdentityError(f"{what} is {len(data)} bytes, expected {size}")
    return data


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        VerifyKey(bytes(public_key)).verify(bytes(message), bytes(signature))
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def verify_b64(public_key_b64: str, text: str | bytes, signature_b64: str) -> bool:
    """:func:`verify` for the base64 text forms used in JSON messages."""
    try:
        public_key = b64decode(public_key_b64, "public key", PUBLIC_KEY_SIZE)
        signature = b64decode(signature_b64, "signature", SIGNATURE_SIZE)
    except IdentityError:
        return False
    if isinstance(text, str):
        text = text.encode("utf-8")
    return verify(public_key, text, signature)


class Identity:
    """An Ed25519 key pair that signs on behalf of one node."""

    __slots__ = ("_signing_key", "public_key")

    def __init__(self, signing_key: SigningKey) -> None:
        self._signing_key = signing_key
        self.public_key = bytes(signing_key.verify_key)

    @classmethod
    def generate(cls) -> Self:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Self:
        if len(seed) != SEED_SIZE:
            raise IdentityError(f"an Ed25519 seed is {SEED_SIZE} bytes, not {len(seed)}")
        return cls(SigningKey(bytes(seed)))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing_key)

    @property
    def public_key_b64(self) -> str:
        return b64encode(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` (deterministic)."""
        return self._signing_key.sign(bytes(message)).signature

    def sign_b64(self, text: str | bytes) -> str:
        """Base64 signature of a challenge string, as registry and handshake messages carry it."""
        if isinstance(text, str):
            text = text.encode("utf-8")
        return b64encode(self.sign(text))

    # -- files -------------------------------------------------------------

    def to_json(self) -> dict[str, str]:
        return {
            "private_key": b64encode(self.seed + self.public_key),
            "public_key": self.public_key_b64,
        }

    @classmethod
    def from_json(cls, document: object, source: str = "identity") -> Self:
        if not isinstance(document, dict):
            raise IdentityError(f"{source}: expected a JSON object with private_key and public_key")
        for field in ("private_key", "public_key"):
            if not isinstance(document.get(field), str):
                raise IdentityError(f"{source}: field {field!r} is missing or not a string")
        private = b64decode(document["private_key"], f"{source}: private_key", SEED_SIZE + PUBLIC_KEY_SIZE)
        public = b64decode(document["public_key"], f"{source}: public_key", PUBLIC_KEY_SIZE)
        identity = cls.from_seed(private[:SEED_SIZE])
        if identity.public_key != private[SEED_SIZE:] or identity.public_key != public:
            raise IdentityError(
                f"{source}: the public key does not belong to the private key",
                hint="the file was edited or mixes two identities; restore it from a backup",
            )
        return identity

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read and check an identity file; :class:`IdentityError` says what is wrong."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as handle:
                raw = handle.read(64 * 1024)
        except FileNotFoundError:
            raise IdentityError(f"no identity file at {path}", code=NOT_FOUND) from None
        except OSError as exc:
            raise IdentityError(f"cannot read identity file {path}: {exc.strerror}") from None
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise IdentityError(
                f"{path} is not a JSON identity file",
                hint="an identity file holds {\"private_key\": ..., \"public_key\": ...}",
            ) from None
        return cls.from_json(document, source=path)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Self:
        """The identity at ``path``, generating and saving a new one if there is none."""
        try:
            return cls.load(path)
        except IdentityError as exc:
            if exc.code != NOT_FOUND:
                raise
        identity = cls.generate()
        identity.save(path)
        return identity

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically with mode 0600: a crash leaves the old file or the new, never half."""
        write_private_file(path, json.dumps(self.to_json(), indent=2).encode("ascii") + b"\n")

    def __repr__(self) -> str:
        return f"<Identity {self.public_key_b64}>"


def write_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
