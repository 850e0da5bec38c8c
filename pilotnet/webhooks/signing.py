"""The ``X-Pilot-Signature`` a receiver checks to know a webhook came from us, fresh.

Each delivery attempt carries two headers::

    X-Pilot-Timestamp: 1765130000
    X-Pilot-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>." + body)>

The MAC covers the timestamp, so a receiver that rejects timestamps older
than a few minutes also rejects a captured request replayed later; the
payload's ``event_id`` lets it drop a retry it already processed.
docs/webhooks.md shows the check in Python and in shell.
"""

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Pilot-Signature"
TIMESTAMP_HEADER = "X-Pilot-Timestamp"
SCHEME = "sha256="
#: How far a receiver using :func:`verify` lets a timestamp be from its own clock.
DEFAULT_TOLERANCE = 300
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh webhook secret: 32 random bytes as hex."""
    return secrets.token_hex(SECRET_BYTES)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` over ``b"<timestamp>." + body``."""
    mac = hmac.new(secret.encode("utf-8"), b"%d." % timestamp + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The two headers of one delivery attempt."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(secret: str, timestamp_header: str, signature_header: str, body: bytes, now: float,
           tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Is this a fresh request signed with ``secret``?  (What a Python receiver runs.)"""
    if not timestamp_header.isdigit() or not timestamp_header.isascii():
        return False
    timestamp = int(timestamp_header)
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), signature_header)
