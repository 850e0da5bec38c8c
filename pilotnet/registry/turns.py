"""Writes handled under a time budget per reactor turn, so that reads are never stuck behind a burst of them.

When hundreds of connections each send a registration, one reactor turn reads
them all and would handle them back to back (some 300 µs each with the
signature check and the store's share, so a quarter of a second for 960)
before it reads again; a heartbeat arriving meanwhile waits for all of it.
:class:`WriteTurns` lets requests that may change state be handled while the
turn's writes have taken less than ``budget`` seconds and queues
the rest, in arrival order, for the next turns (``callLater(0)``: the reactor
polls its sockets in between).  Reads and heartbeats (what a standby answers)
are still handled as they arrive, so their wait is bounded by one budget
instead of by the burst.

A budget of time, not a count of writes: a count that is right for cheap
writes (a tag change) is several times too many for registrations (64 of
them held the reactor some 20 ms), and what the reads wait for is time.

Connections keep their order: once one of a connection's requests waits here,
its later requests wait behind it (see :class:`~pilotnet.registry.server.RegistryProtocol`,
which also stops reading a connection with too many of them waiting).  A quiet
registry queues nothing: its writes fit the budget and are handled at once.
"""

from collections import deque
from typing import Callable, Optional

# Seconds of writes per reactor turn: about 7 registrations, a hundred cheap writes.  A
# turn takes about twice its writes' time at full load (reading the next requests, sending
# what the commits acknowledge): 2 ms kept turns near 5 ms; 5 ms made them about 11 ms.
WRITE_BUDGET = 0.002


class WriteTurns:
    """Writes for at most ``budget`` seconds per reactor turn of ``clock``; the rest in order, later.

    ``clock`` schedules the next turn (``callLater``) and, unless ``timer`` is
    given, measures how long the writes took (``seconds()``): the reactor's
    time in a registry, and a test's ``task.Clock`` stands still unless the
    test moves it, so what waits does not depend on the machine's speed.  A
    step of the system clock changes one turn's budget at most: each turn
    starts a new one.
    """

    def __init__(self, clock, budget: float = WRITE_BUDGET,
                 timer: Optional[Callable[[], float]] = None) -> None:
        self._clock = clock
        self._budget = budget
        self._timer = timer if timer is not None else clock.seconds
        # When this turn's first write began (None: no write handled since the last turn).
        self._began: Optional[float] = None
        self._waiting: deque[Callable[[], None]] = deque()
        self._next_turn = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def admit(self) -> bool:
        """May one more write be handled now?  If not, queue it with :meth:`later`."""
        if self._waiting:
            return False
        if self._began is None:
            self._began = self._timer()
            self._schedule()
            return True
        return self._timer() - self._began < self._budget

    def later(self, handle: Callable[[], None]) -> None:
        """Call ``handle()`` in a later turn, after the writes queued before it."""
        self._waiting.append(handle)
        self._schedule()

    def _schedule(self) -> None:
        if self._next_turn is None:
            self._next_turn = self._clock.callLater(0, self._turn)

    def _turn(self) -> None:
        """Handle queued writes until the budget is spent (at least one, so the queue always moves)."""
        self._next_turn = None
        self._began = None
        waiting = self._waiting
        if not waiting:
            return
        self._began = began = self._timer()
        # The next turn starts a new budget; writes read before it share this one.
        self._schedule()
        while waiting:
            waiting.popleft()()
            if self._timer() - began >= self._budget:
                break
