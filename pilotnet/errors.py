"""The project's error values.

Every failure a user or a peer can cause is a :class:`PilotError` carrying a
stable ``code`` (what scripts branch on), a message naming what is wrong, and
where useful a ``hint`` saying what to do about it.  The codes are the ones
``pilotctl --json`` reports.
"""

INVALID_ARGUMENT = "invalid_argument"
NOT_FOUND = "not_found"
ALREADY_EXISTS = "already_exists"
NOT_RUNNING = "not_running"
CONNECTION_FAILED = "connection_failed"
TIMEOUT = "timeout"
INTERNAL = "internal"
# A dial diagnosed early (pilotnet.daemon.reachability): the peer gives no sign of life,
# or it answers but its trust gate refuses us.
UNREACHABLE = "unreachable"
NOT_TRUSTED = "not_trusted"
#: The remote side refused the request (a task, a handshake); the message carries its reason.
REFUSED = "refused"
#: What this version cannot do yet (the message says what is missing).
UNAVAILABLE = "unavailable"
#: An admin command without the registry's admin token (the reference's code).
AUTH_REQUIRED = "auth_required"


class PilotError(Exception):
    """Base of every error pilotnet raises on purpose."""

    code: str = INTERNAL

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class DecodeError(PilotError):
    """Bytes or text that do not form a valid message.

    The only exception any decoder in :mod:`pilotnet.wire` or
    :mod:`pilotnet.crypto` lets escape on malformed input, so callers on the
    network path can catch exactly one thing, count it and drop the input.
    """

    code = INVALID_ARGUMENT


class CryptoError(PilotError):
    """A frame that failed authentication, a replayed or stale nonce, a bad key."""

    code = INVALID_ARGUMENT
