"""Two ways to do one thing, raced: the preferred one gets a head start, the first success wins.

A handshake request can go straight to the peer's port 444 or through the
registry's relay.  Trying them one after the other makes the user wait for the
first to time out (seconds) whenever it cannot work, which is the usual case
for a private peer; running both at once would always spend the relay.  So the
preferred path starts at once, the fallback after a short head start (or as
soon as the preferred one fails), and whichever succeeds first wins: the
other is cancelled (a fallback not started yet never starts).

:func:`twisted.internet.defer.race` does the "first success, cancel the rest"
part; this adds only the delayed start.
"""

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure


def _delayed(clock: IReactorTime, delay: float, start: Callable[[], defer.Deferred]):
    """``(deferred, start_now)``: ``start()``'s result after ``delay`` seconds, or at once when asked.

    Cancelling the Deferred cancels the timer, or the started attempt.
    """
    started: list = []

    def cancel(_):
        if timer.active():
            timer.cancel()
        for attempt in started:
            attempt.cancel()

    result: defer.Deferred[Any] = defer.Deferred(canceller=cancel)

    def start_now():
        if timer.active():
            timer.cancel()
        if started or result.called:
            return
        attempt = defer.maybeDeferred(start)
        started.append(attempt)
        attempt.chainDeferred(result)

    timer = clock.callLater(delay, start_now)
    return result, start_now


def race_with_head_start(clock: IReactorTime, preferred: Callable[[], defer.Deferred],
                         fallback: Callable[[], defer.Deferred], head_start: float) -> defer.Deferred:
    """Fires with ``(0, result)`` or ``(1, result)``: which attempt succeeded first, and its result.

    Fails with the fallback's failure when both fail (the fallback is the
    last resort, so its reason is the one worth reporting).
    """
    first = defer.maybeDeferred(preferred)
    second, start_fallback = _delayed(clock, head_start, fallback)
    failures: list = []

    def failed(failure: Failure) -> Failure:
        failures.append(failure)
        if not failure.check(defer.CancelledError):  # cancelled: the race is over, start nothing
            start_fallback()
        return failure

    def noted(failure: Failure) -> Failure:
        failures.append(failure)
        return failure

    first.addErrback(failed)
    second.addErrback(noted)
    racing = defer.race([first, second])

    def unwrap(failure: Failure) -> Failure:
        failure.trap(defer.FailureGroup)
        real = [f for f in failures if not f.check(defer.CancelledError)]
        return real[-1] if real else failure

    return racing.addErrback(unwrap)

