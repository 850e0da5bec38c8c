"""Writes handled a slice per reactor turn, so that reads are never stuck behind a burst of them.

When hundreds of connections each send a registration, one reactor turn reads
them all and would handle them back to back (about 35 µs each, so tens of
milliseconds) before it reads again; a heartbeat arriving meanwhile waits for
all of it.  :class:`WriteTurns` lets ``per_turn`` requests that may change
state be handled in a turn and queues the rest, in arrival order, for the next
turns (``callLater(0)``: the reactor polls its sockets in between).  Reads and
heartbeats (what a standby answers) are still handled as they arrive, so their
wait is bounded by one slice instead of by the burst.

Connections keep their order: once one of a connection's requests waits here,
its later requests wait behind it (see :class:`~pilotnet.registry.server.RegistryProtocol`).
Below ``per_turn`` writes a turn nothing is queued, so a quiet registry
handles everything at once, as before.
"""

from collections import deque
from typing import Callable

WRITES_PER_TURN = 64


class WriteTurns:
    """At most ``per_turn`` writes per reactor turn of ``clock``; the rest in order, later."""

    def __init__(self, clock, per_turn: int = WRITES_PER_TURN) -> None:
        self._clock = clock
        self._per_turn = per_turn
        self._handled = 0
        self._waiting: deque[Callable[[], None]] = deque()
        self._next_turn = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def admit(self) -> bool:
        """May one more write be handled now?  Counted if so; queue it with :meth:`later` if not."""
        if self._waiting or self._handled >= self._per_turn:
            return False
        self._count()
        return True

    def later(self, handle: Callable[[], None]) -> None:
        """Call ``handle()`` in a later turn, after the writes queued before it."""
        self._waiting.append(handle)
        self._schedule()

    def _count(self) -> None:
        self._handled += 1
        self._schedule()

    def _schedule(self) -> None:
        # A new turn starts the count again: the first write of a turn asks for it.
        if self._next_turn is None:
            self._next_turn = self._clock.callLater(0, self._turn)

    def _turn(self) -> None:
        self._next_turn = None
        self._handled = 0
        while self._waiting and self._handled < self._per_turn:
            self._count()
            self._waiting.popleft()()
