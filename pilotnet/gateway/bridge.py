"""One TCP connection bridged to one Pilot stream, with backpressure and half-close both ways.

The TCP side is accepted on a mapping's local IP; the Pilot side is a stream
to the same port of the mapped agent, dialled through the gateway's daemon
connection (:class:`pilotnet.endpoints.PilotClientEndpoint`).  Each side's
transport is registered as the other's producer, as Twisted's port forwarder
does: when one side's send buffer is full it pauses reading on the other, so
the gateway never holds more than a few chunks per connection.  A FIN on
either side becomes a FIN on the other (both protocols are half-closeable);
the bridge ends when both directions have, or when either side fails.
"""

from typing import Optional

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IHalfCloseableProtocol, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.endpoints import PilotClientEndpoint

log = Logger()


@implementer(IHalfCloseableProtocol)
class _Side(Protocol):
    """One end of a bridge; what it receives goes out through its peer's transport."""

    peer: Optional["_Side"] = None

    def __init__(self):
        self.read_done = False

    def dataReceived(self, data):
        self.peer.transport.write(data)

    def readConnectionLost(self):
        self.read_done = True
        peer = self.peer
        if peer is not None:
            peer.transport.loseWriteConnection()
            if peer.read_done:
                self.transport.loseConnection()

    def writeConnectionLost(self):
        if self.read_done:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            peer.transport.loseConnection()


class PilotSide(_Side):
    def __init__(self, tcp: "TCPSide"):
        super().__init__()
        self.peer = tcp

    def connectionMade(self):
        tcp = self.peer
        tcp.peer = self
        self.transport.registerProducer(tcp.transport, True)
        tcp.transport.registerProducer(self.transport, True)
        tcp.transport.resumeProducing()


class TCPSide(_Side):
    """Accepted on ``local_ip:port``: dials the agent and bridges once the stream is open."""

    transport: ITCPTransport  # a TCP connection while connected (no class attribute: only a declaration)

    def __init__(self, bridges: "BridgeFactory"):
        super().__init__()
        self.bridges = bridges
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self):
        self.transport.pauseProducing()  # nothing is read until the stream is open
        self.bridges.connections.add(self)
        endpoint = PilotClientEndpoint(self.bridges.reactor, str(self.bridges.target), self.bridges.port,
                                       link=self.bridges.link, timeout=self.bridges.dial_timeout)
        connecting = endpoint.connect(Factory.forProtocol(lambda: PilotSide(self)))
        connecting.addErrback(self._dial_failed)

    def _dial_failed(self, failure):
        self.bridges.failed_dials += 1
        log.info("gateway: cannot reach {target} port {port}: {reason}", target=self.bridges.target,
                 port=self.bridges.port, reason=failure.getErrorMessage())
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.bridges.connections.discard(self)
        super().connectionLost(reason)
        self.lost.callback(None)


class BridgeFactory(Factory):
    """Accepts TCP connections for one mapping and port, up to :attr:`limit` at a time."""

    noisy = False

    def __init__(self, reactor, link, target, port: int, limit: int, dial_timeout: float):
        self.reactor = reactor
        self.link = link
        self.target = target
        self.port = port
        self.limit = limit
        self.dial_timeout = dial_timeout
        #: The bridged connections open now (their TCP sides).
        self.connections: set[TCPSide] = set()
        self.failed_dials = 0

    def close_all(self) -> Deferred:
        """End every bridged connection at once (the mapping goes); fires once they are gone."""
        connections = list(self.connections)
        for connection in connections:
            connection.transport.abortConnection()
        return DeferredList([connection.lost for connection in connections])

    def buildProtocol(self, addr):
        if len(self.connections) >= self.limit:
            return None  # Twisted closes the connection at once
        return TCPSide(self)
