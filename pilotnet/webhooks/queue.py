"""A bounded queue of events and the one background sender that drains it.

:meth:`DeliveryQueue.enqueue` is what the rest of the process calls: it appends
to a bounded deque and at most schedules the sender for the next reactor turn,
so an event costs the caller O(1) and no I/O.  When the queue is full the new
event is dropped and counted.

The sender delivers one event at a time (a receiver sees them in order) through
an injected ``send(payload)`` that returns a Deferred: success, a
:class:`PermanentFailure` (an HTTP 4xx, a refused target: never retried) or any
other failure (network errors, timeouts, 5xx: retried).  Retries wait
``backoff`` seconds, doubling, up to ``attempts`` attempts in all, on the
injected clock.  An event that finally fails is counted and kept in a bounded
dead-letter list (the last ``dead_letters`` failures).

:meth:`DeliveryQueue.stop` stops taking events and keeps delivering for at
most ``grace`` seconds; what is still queued then is counted as dropped.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer, task
from twisted.logger import Logger

from pilotnet.errors import PilotError

QUEUE_SIZE = 1024
ATTEMPTS = 3
BACKOFF = 1.0
DEAD_LETTERS = 100
STOP_GRACE = 5.0


class PermanentFailure(PilotError):
    """A delivery that retrying cannot fix (the receiver answered 4xx, the target is refused)."""


@dataclass
class DeadLetter:
    payload: dict
    error: str
    attempts: int
    failed_at: float

    def describe(self) -> dict:
        return {"payload": self.payload, "error": self.error, "attempts": self.attempts,
                "failed_at": self.failed_at}


class DeliveryQueue:
    """Bounded, retried, in-order delivery of payloads through ``send``."""

    log = Logger()

    def __init__(self, clock, send: Callable[[dict], defer.Deferred], *, queue_size: int = QUEUE_SIZE,
                 attempts: int = ATTEMPTS, backoff: float = BACKOFF, dead_letters: int = DEAD_LETTERS,
                 name: str = "webhook"):
        self.clock = clock
        self.send = send
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.name = name
        self.queue: deque = deque()
        self.queue_size = queue_size
        self.dead_letters: deque[DeadLetter] = deque(maxlen=dead_letters)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0
        self._running = None  # the Deferred of the sender while it runs
        self._wake = None  # the scheduled start of the sender
        self._stopping = False
        self._giving_up = False
        self._warned_full = False

    # -- what callers use -------------------------------------------------------

    def enqueue(self, payload: dict) -> bool:
        """Queue ``payload``; False (and counted) when the queue is full or stopping."""
        if self._stopping or len(self.queue) >= self.queue_size:
            self.dropped += 1
            if not self._warned_full:
                self._warned_full = True
                self.log.warn("{name}: queue full ({size}), dropping events", name=self.name, size=self.queue_size)
            return False
        self.queue.append(payload)
        if self._running is None and self._wake is None:
            self._wake = self.clock.callLater(0, self._start)
        return True

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped, "retries": self.retries,
                "queued": len(self.queue), "dlq_size": len(self.dead_letters)}

    def dead_letter_list(self) -> list[dict]:
        """The last failures, oldest first."""
        return [letter.describe() for letter in self.dead_letters]

    def stop(self, grace: float = STOP_GRACE) -> defer.Deferred:
        """Stop taking events; fires when the queue is drained or after ``grace`` seconds."""
        self._stopping = True
        if self._wake is not None and self._wake.active():
            self._wake.cancel()
        if self._running is None and self.queue:
            self._start()
        if self._running is None:  # nothing queued, or it all finished at once
            return defer.succeed(None)
        done = defer.Deferred()
        deadline = self.clock.callLater(grace, self._give_up)

        def finished(_):
            if deadline.active():
                deadline.cancel()
            done.callback(None)

        self._running.addBoth(finished)
        return done

    # -- the sender ---------------------------------------------------------------

    def _start(self):
        self._wake = None
        self._running = defer.ensureDeferred(self._drain())
        self._running.addErrback(lambda failure: self.log.failure("{name}: sender failed", failure, name=self.name))
        self._running.addBoth(self._stopped)

    def _stopped(self, _):
        self._running = None

    async def _drain(self):
        while self.queue:
            await self._deliver(self.queue.popleft())
        self._warned_full = False  # drained: the next overflow is news again

    async def _deliver(self, payload: dict):
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                await self.send(payload)
                self.sent += 1
                return
            except PermanentFailure as error:
                return self._failed(payload, error.message, attempt)
            except defer.CancelledError:
                if self._giving_up:
                    return self._failed(payload, "stopped before delivery", attempt)
                reason = "timed out"  # the sender cancelled its own attempt
            except Exception as error:  # network errors and 5xx: worth another try
                reason = getattr(error, "message", None) or str(error) or type(error).__name__
            if attempt == self.attempts:
                return self._failed(payload, reason, attempt)
            self.retries += 1
            try:
                await task.deferLater(self.clock, delay)
            except defer.CancelledError:
                return self._failed(payload, f"stopped before retrying ({reason})", attempt)
            delay *= 2

    def _failed(self, payload: dict, reason: str, attempts: int):
        self.failed += 1
        self.dead_letters.append(DeadLetter(payload, reason, attempts, self.clock.seconds()))
        self.log.info("{name}: event {event_id} not delivered after {attempts} attempt(s): {reason}",
                      name=self.name, event_id=payload.get("event_id"), attempts=attempts, reason=reason)

    def _give_up(self):
        """The stop grace ran out: what is queued is dropped, the one in flight cancelled."""
        self._giving_up = True
        self.dropped += len(self.queue)
        self.queue.clear()
        if self._running is not None:
            self._running.cancel()
