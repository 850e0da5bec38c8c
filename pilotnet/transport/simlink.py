"""A simulated link between two stream engines, on a virtual clock (a testing aid).

Shipped with the package because the tests and the benchmarks both drive
engines with it; nothing in the daemon uses it.  Packets travel after a delay,
and may be lost, duplicated or reordered (held back by a random extra delay),
all from one seeded random generator so every run is reproducible.  The clock
jumps straight to the next packet arrival or engine deadline, so simulated
minutes cost only the CPU their packets cost.

Side ``a`` dials, side ``b`` is created from the first SYN that reaches it.
"""

import heapq
import random
from collections.abc import Callable
from typing import Literal

from pilotnet.transport.config import DEFAULT_CONFIG, StreamConfig
from pilotnet.transport.connection import StreamConnection
from pilotnet.transport.events import StreamEvent
from pilotnet.transport.states import State
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_ACK, FLAG_SYN, Packet

DIALER_ADDR = Addr(1, 0x0A)
ACCEPTOR_ADDR = Addr(1, 0x0B)
DIALER_PORT = 49152
ACCEPTOR_PORT = 1001

#: The two ends: ``a`` dials, ``b`` accepts.
Side = Literal["a", "b"]


class Impairment:
    """What the link does to each packet, one direction."""

    def __init__(self, *, loss: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0, delay: float = 0.005,
                 jitter: float = 0.0) -> None:
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay = delay
        self.jitter = jitter


class SimLink:
    def __init__(self, impairment: Impairment | None = None, *, config: StreamConfig = DEFAULT_CONFIG,
                 acceptor_config: StreamConfig | None = None, reverse: Impairment | None = None, seed: int = 0,
                 wire: bool = False, start: float = 0.0) -> None:
        forward = impairment or Impairment()
        self.impairments: dict[Side, Impairment] = {"a": forward, "b": reverse or forward}
        self.now = start
        self.random = random.Random(seed)
        #: Encode and decode every packet, as a real link would.
        self.wire = wire
        self.a = StreamConnection(DIALER_ADDR, DIALER_PORT, ACCEPTOR_ADDR, ACCEPTOR_PORT, config)
        self.b: StreamConnection | None = None
        self._acceptor_config = acceptor_config or config
        self.received: dict[Side, bytearray] = {"a": bytearray(), "b": bytearray()}
        self.events: dict[Side, list[StreamEvent]] = {"a": [], "b": []}
        self.dark = False
        self.packets = 0
        self._queue: list[tuple[float, int, Side, Packet]] = []
        self._order = 0

    def conn(self, side: Side) -> StreamConnection | None:
        return self.a if side == "a" else self.b

    def open(self) -> None:
        self.a.open(self.now)
        self._collect()

    def _transmit(self, sender_side: Side, packet: Packet) -> None:
        """Put ``packet`` from ``sender_side`` on the wire towards the other side."""
        self.packets += 1
        if self.dark:
            return
        imp = self.impairments[sender_side]
        rnd = self.random.random
        if imp.loss and rnd() < imp.loss:
            return
        copies = 2 if imp.duplicate and rnd() < imp.duplicate else 1
        if self.wire:
            packet = Packet.decode(packet.encode())
        target: Side = "b" if sender_side == "a" else "a"
        for _ in range(copies):
            at = self.now + imp.delay
            if imp.jitter:
                at += rnd() * imp.jitter
            if imp.reorder and rnd() < imp.reorder:
                at += rnd() * 4 * (imp.delay + imp.jitter)
            self._order += 1
            heapq.heappush(self._queue, (at, self._order, target, packet))

    def _collect(self) -> None:
        sides: tuple[Side, Side] = ("a", "b")
        for side in sides:
            conn = self.conn(side)
            if conn is None:
                continue
            if conn.events:
                self.events[side].extend(conn.take_events())
            if conn.outbox:
                for packet in conn.take_packets():
                    self._transmit(side, packet)
            if conn._recv.delivered:
                for chunk in conn.take_delivered():
                    self.received[side] += chunk

    def _deliver(self, target: Side, packet: Packet) -> None:
        if target == "b" and self.b is None:
            if packet.flags & FLAG_SYN and not packet.flags & FLAG_ACK:
                self.b = StreamConnection.accept(packet, self.now, self._acceptor_config)
            return
        conn = self.conn(target)
        if conn is not None:
            conn.receive(packet, self.now)

    def next_time(self) -> float | None:
        deadlines = [conn.next_deadline() for conn in (self.a, self.b) if conn is not None]
        if self._queue:
            deadlines.append(self._queue[0][0])
        times = [t for t in deadlines if t is not None]
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next arrival or deadline and process it; False when nothing is left."""
        at = self.next_time()
        if at is None:
            return False
        if at > self.now:
            self.now = at
        queue = self._queue
        while queue and queue[0][0] <= self.now:
            _, _, target, packet = heapq.heappop(queue)
            self._deliver(target, packet)
            self._collect()
        for conn in (self.a, self.b):
            if conn is not None:
                deadline = conn.next_deadline()
                if deadline is not None and deadline <= self.now:
                    conn.tick(self.now)
        self._collect()
        return True

    def run(self, until: Callable[[], bool], limit: float) -> bool:
        """Step until ``until()`` holds or the virtual clock passes ``limit``; returns ``until()``."""
        while not until():
            if self.now > limit or not self.step():
                break
        return until()

    def send(self, side: Side, data: bytes) -> None:
        self.conn(side).send(data, self.now)  # type: ignore[union-attr]  # a test sends on a side that exists
        self._collect()

    def close(self, side: Side) -> None:
        self.conn(side).close(self.now)  # type: ignore[union-attr]  # as in send()
        self._collect()

    def closed(self) -> bool:
        return (self.a.state is State.CLOSED and self.b is not None and self.b.state is State.CLOSED)
