"""The errors SDK users see when the daemon is unreachable or a call fails below the command."""

from twisted.internet.error import ConnectionClosed
from twisted.protocols import amp

from pilotnet.control.schema import not_running_error  # noqa: F401  (re-exported for the SDK)
from pilotnet.errors import INVALID_ARGUMENT, NOT_RUNNING, PilotError


def translate_failure(failure):
    """Turn transport-level failures of a call into the error values users see."""
    if failure.check(PilotError):
        return failure
    if failure.check(ConnectionClosed):
        raise PilotError(
            "lost the connection to the daemon", code=NOT_RUNNING,
            hint="check the daemon: pilotctl daemon status",
        )
    if failure.check(amp.TooLong):
        raise PilotError("value too large for one control message", code=INVALID_ARGUMENT)
    if failure.check(amp.UnhandledCommand):
        raise PilotError("the daemon does not support this command; is it up to date?")
    if failure.check(amp.UnknownRemoteError, amp.RemoteAmpError):
        raise PilotError(f"the daemon failed: {failure.value}")
    return failure
