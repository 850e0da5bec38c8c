"""One call per key at a time: askers of a key already being fetched wait for that fetch.

A burst of dials to one peer asks the same questions of the registry at once
(its endpoint, whether it exists); answering them all with one request each
keeps the daemon's registry budget for the requests that differ, such as the
key lookup that completes the tunnel the burst is waiting for.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

from twisted.internet import defer
from twisted.python.failure import Failure


class InFlight:
    """Shares the outcome of a running ``start()`` among every asker of the same key."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, list[defer.Deferred]] = {}

    def call(self, key: Hashable, start: Callable[[], Any]) -> defer.Deferred:
        """``start()``'s outcome, or that of the call already running for ``key``."""
        waiter: defer.Deferred = defer.Deferred()
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(waiter)
            return waiter
        self._waiting[key] = [waiter]
        defer.maybeDeferred(start).addBoth(self._finished, key)
        return waiter

    def _finished(self, outcome: Any, key: Hashable) -> None:
        for waiter in self._waiting.pop(key):
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)
