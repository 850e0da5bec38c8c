"""Demultiplexing stream packets: connections by 4-tuple, listeners, limits.

Kept out of the engine because the daemon owns ports.  A connection is found
by (local port, remote address including network, remote port), as the Go
reference does.  A SYN for an unknown 4-tuple creates an acceptor if the port
listens and the limits allow, and is otherwise answered with RST; any other
packet matching nothing is dropped silently (the reference never resets those).
"""

from collections.abc import Callable, Iterator
from typing import NamedTuple

from pilotnet.transport.config import DEFAULT_CONFIG, StreamConfig
from pilotnet.transport.connection import StreamConnection
from pilotnet.transport.states import State
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_ACK, FLAG_RST, FLAG_SYN, PROTO_STREAM, Packet

MAX_CONNECTIONS_PER_PORT = 1024
MAX_CONNECTIONS = 65536


class Routed(NamedTuple):
    """What :meth:`ConnectionTable.route` did with a packet."""

    #: The connection that took the packet, or None.
    connection: StreamConnection | None
    #: True when the packet was a SYN that created ``connection``.
    accepted: bool
    #: A packet to send back when no connection took it (an RST), or None.
    reply: Packet | None


class ConnectionTable:
    """Connections by 4-tuple; ``config_for(remote)`` picks each new acceptor's configuration.

    Most owners use one configuration for every connection; the daemon gives
    peers on the same host larger segments (see :mod:`pilotnet.daemon.paths`).
    """

    def __init__(self, config: StreamConfig = DEFAULT_CONFIG, *, max_per_port: int = MAX_CONNECTIONS_PER_PORT,
                 max_connections: int = MAX_CONNECTIONS,
                 config_for: Callable[[Addr], StreamConfig] | None = None) -> None:
        self.config = config
        self.config_for: Callable[[Addr], StreamConfig] = config_for or (lambda remote: config)
        self.max_per_port = max_per_port
        self.max_connections = max_connections
        self.listening: set[int] = set()
        self.unmatched = 0
        self._connections: dict[tuple[int, Addr, int], StreamConnection] = {}
        self._per_port: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[StreamConnection]:
        return iter(list(self._connections.values()))

    def listen(self, port: int) -> None:
        self.listening.add(port)

    def unlisten(self, port: int) -> None:
        self.listening.discard(port)

    def add(self, conn: StreamConnection) -> None:
        """Register a connection we dial (or any built outside :meth:`route`)."""
        self._connections[(conn.local_port, conn.remote, conn.remote_port)] = conn
        self._per_port[conn.local_port] = self._per_port.get(conn.local_port, 0) + 1

    def find(self, local_port: int, remote: Addr, remote_port: int) -> StreamConnection | None:
        return self._connections.get((local_port, remote, remote_port))

    def remove(self, conn: StreamConnection) -> None:
        if self._connections.pop((conn.local_port, conn.remote, conn.remote_port), None) is conn:
            left = self._per_port[conn.local_port] - 1
            if left:
                self._per_port[conn.local_port] = left
            else:
                del self._per_port[conn.local_port]

    def reap(self) -> list[StreamConnection]:
        """Forget every CLOSED connection; returns them."""
        closed = [conn for conn in self._connections.values() if conn.state is State.CLOSED]
        for conn in closed:
            self.remove(conn)
        return closed

    def route(self, packet: Packet, now: float) -> Routed:
        conn = self._connections.get((packet.dst_port, packet.src, packet.src_port))
        if conn is not None:
            conn.receive(packet, now)
            return Routed(conn, False, None)
        flags = packet.flags
        if flags & FLAG_SYN and not flags & (FLAG_ACK | FLAG_RST):
            port = packet.dst_port
            if (port in self.listening and len(self._connections) < self.max_connections
                    and self._per_port.get(port, 0) < self.max_per_port):
                conn = StreamConnection.accept(packet, now, self.config_for(packet.src))
                self.add(conn)
                return Routed(conn, True, None)
            return Routed(None, False, reset_for(packet))
        self.unmatched += 1
        return Routed(None, False, None)


def reset_for(packet: Packet) -> Packet:
    """The RST answering ``packet``: addresses and ports swapped, everything else zero."""
    return Packet(PROTO_STREAM, packet.dst, packet.src, packet.dst_port, packet.src_port, flags=FLAG_RST)
