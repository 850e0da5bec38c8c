"""Short garbage collections for a registry whose directory holds a million nodes.

Every node record is an object the cyclic garbage collector tracks, and a full
collection walks all of them on the reactor: about half a second at 200,000
nodes on a busy machine, seconds at a million, during which no request is
answered.  Node records never form cycles (they hold strings, numbers and
tuples of those), so walking them finds nothing to free.

``gc.freeze()`` moves every object tracked so far to a generation that
collections skip.  The twistd plugins freeze once after loading the store
(:func:`pilotnet.registry.tap.freeze_loaded_state`); :class:`GrowthFreezer`
freezes again each time the directory has grown by ``step`` nodes beyond its
largest size so far, so a full collection never walks more than about
``step`` nodes plus the short-lived objects of the requests in flight.

The price: an object that is alive at a freeze and later becomes part of
unreachable cycle is never collected.  Freezes are bounded (one per ``step``
nodes of growth over the process's life, none while the directory only
churns), and each runs a full collection first, so only the cycles alive at
that moment (open connections, requests in flight) can be kept; Twisted breaks
a closed connection's cycle itself.
"""

import gc
from contextlib import contextmanager
from typing import Callable, Iterator

from twisted.application.internet import TimerService

FREEZE_STEP = 5_000
CHECK_INTERVAL = 1.0


class GrowthFreezer:
    """Freezes the collector's tracked objects once the directory grew by ``step`` nodes.

    ``size()`` is the directory's node count; ``collect`` and ``freeze`` are
    :func:`gc.collect` and :func:`gc.freeze` (tests pass recorders).
    """

    def __init__(self, size: Callable[[], int], step: int = FREEZE_STEP,
                 collect: Callable[[], object] = gc.collect,
                 freeze: Callable[[], None] = gc.freeze) -> None:
        self._size = size
        self._step = step
        self._collect = collect
        self._freeze = freeze
        self.frozen_at = size()
        self.freezes = 0

    def check(self) -> bool:
        """Freeze if the directory grew by ``step`` beyond its largest frozen size; whether it did."""
        size = self._size()
        if size < self.frozen_at + self._step:
            return False
        self._collect()
        self._freeze()
        self.frozen_at = size
        self.freezes += 1
        return True

    def service(self, clock, interval: float = CHECK_INTERVAL) -> TimerService:
        """A service that checks every ``interval`` seconds on ``clock``."""
        timer = TimerService(interval, self.check)
        timer.clock = clock
        return timer


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collections inside (loading a store creates millions of objects, no garbage).

    Without this, collections would walk the growing directory again and
    again while it loads, about a third of the load time at a million nodes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
