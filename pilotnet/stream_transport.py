"""A Pilot stream as a Twisted transport, so any Twisted protocol runs over Pilot unchanged.

:class:`StreamTransport` wraps an SDK :class:`~pilotnet.driver.streams.Stream`
and drives an ordinary :class:`~twisted.internet.interfaces.IProtocol`:
``twisted.web`` servers and clients, Klein, AMP, a proxy.  It is the piece
under the ``pilot:`` endpoints (:mod:`pilotnet.endpoints`) and the gateway's
bridges.

Backpressure both ways, with nothing buffered without bound:

* reading is pull: the transport asks the stream for the next bytes only
  while the protocol has not paused it (``pauseProducing``, as
  ``twisted.web`` does while it answers a request, or a proxy does when the
  other side's send buffer is full).  A paused transport reads nothing, the
  SDK stops returning receive window, and the peer's sender waits.
* writing: a write the stream cannot take at once (its write credit is spent)
  pauses the registered producer until the stream has taken it; a pull
  producer is asked for more only once everything written has been taken.

Closing: ``loseConnection`` ends the stream after what was written;
``loseWriteConnection`` is a half-close (our FIN, then reading goes on until
the peer's end).  A peer's FIN reaches a protocol that provides
``IHalfCloseableProtocol`` as ``readConnectionLost`` (it may go on writing);
any other protocol is disconnected once its writes are out, as Twisted's TCP
transport does.
"""

from typing import Optional

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress, IConsumer, IHalfCloseableProtocol, IPushProducer, ITransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from pilotnet.errors import PilotError


@implementer(IAddress)
class PilotAddress:
    """Where a Pilot stream ends: a virtual address (``host``, its text form) and a port."""

    type = "PILOT"

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port

    def __eq__(self, other):
        return isinstance(other, PilotAddress) and (self.host, self.port) == (other.host, other.port)

    def __hash__(self):
        return hash((self.host, self.port))

    def __repr__(self):
        return f"PilotAddress({self.host!r}, {self.port})"


@implementer(ITransport, IConsumer, IPushProducer)
class StreamTransport:
    """The transport of one protocol on one stream; :meth:`start` calls ``makeConnection``."""

    def __init__(self, stream, protocol, local_address: str):
        stream.half_open = True
        self.stream = stream
        self.protocol = protocol
        self._host = PilotAddress(local_address, stream.local_port)
        self._peer = PilotAddress(str(stream.remote_address), stream.remote_port)
        self.connected = False
        self.disconnecting = False
        self._paused = False
        self._reading = False
        #: Data read while the protocol had paused us, delivered on resume.
        self._held: Optional[bytes] = None
        self._unfinished_writes = 0
        self._producer = None
        self._streaming = False
        self._producer_paused = False
        self._lost = False
        self._write_shut = False
        self._read_eof = False
        #: Writes so far, so a pull producer that wrote nothing when asked is not asked again at once.
        self._writes = 0
        self._pulling = False

    def start(self) -> None:
        self.connected = True
        self.protocol.makeConnection(self)
        self.stream.closed.addCallback(self._stream_ended)
        self._read_more()

    # -- reading ----------------------------------------------------------------

    def _read_more(self) -> None:
        while not (self._paused or self._reading or self._lost or self._read_eof):
            self._reading = True
            reading = self.stream.read()
            reading.addCallbacks(self._read_done, self._read_failed)
            if self._reading:  # not answered at once: the callback continues the loop
                return

    def _read_done(self, data: bytes) -> None:
        self._reading = False
        if self._lost:
            return
        if not data:
            self._peer_finished()
            return
        if self._paused:
            self._held = data
            return
        self.protocol.dataReceived(data)
        if not self._reading:
            self._read_more()

    def _peer_finished(self) -> None:
        """The peer's FIN: a half-closeable protocol may go on writing; any other is closed after its writes."""
        self._read_eof = True
        if self._write_shut:
            self._end(Failure(ConnectionDone()))
        elif IHalfCloseableProtocol.providedBy(self.protocol):
            self.protocol.readConnectionLost()
        else:
            self.loseConnection()

    def _read_failed(self, failure: Failure) -> None:
        self._reading = False
        self._end(Failure(ConnectionLost(_describe(failure))))

    def _stream_ended(self, error) -> None:
        """The stream is over; data still buffered is read first, then the end reaches the protocol."""
        if error is not None and not self._reading and self._held is None:
            self._end(Failure(ConnectionLost(_describe(Failure(error)))))

    # -- IPushProducer: the protocol pauses our reading ------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._lost:
            return
        self._paused = False
        held, self._held = self._held, None
        if held is not None:
            self.protocol.dataReceived(held)
        if not self._reading:
            self._read_more()

    def stopProducing(self) -> None:
        self.loseConnection()

    # -- writing ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not data or self.disconnecting or self._write_shut or self._lost:
            return
        self._writes += 1
        writing = self.stream.write(data)
        if writing.called:
            writing.addErrback(self._write_failed)
            return
        self._unfinished_writes += 1
        if self._producer is not None and self._streaming and not self._producer_paused:
            self._producer_paused = True
            self._producer.pauseProducing()
        writing.addCallbacks(self._write_taken, self._write_failed)

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def _write_taken(self, _) -> None:
        self._unfinished_writes -= 1
        if self._unfinished_writes:
            return
        if self._producer is not None and self._streaming and self._producer_paused:
            self._producer_paused = False
            self._producer.resumeProducing()
        self._pull()
        self._finish_closing()

    def _pull(self) -> None:
        """Ask a pull producer for more while everything it wrote has been taken."""
        if self._pulling:
            return
        self._pulling = True
        try:
            while (self._producer is not None and not self._streaming and not self._unfinished_writes
                   and not self._lost):
                before = self._writes
                self._producer.resumeProducing()
                if self._writes == before:
                    break
        finally:
            self._pulling = False

    def _write_failed(self, failure: Failure) -> None:
        self._unfinished_writes = max(0, self._unfinished_writes - 1)
        self._end(Failure(ConnectionLost(_describe(failure))))

    # -- IConsumer ---------------------------------------------------------------------

    def registerProducer(self, producer, streaming: bool) -> None:
        if self._producer is not None:
            raise RuntimeError("a producer is already registered")
        self._producer = producer
        self._streaming = streaming
        self._producer_paused = False
        if self._unfinished_writes and streaming:
            self._producer_paused = True
            producer.pauseProducing()
        elif not streaming:
            self._pull()

    def unregisterProducer(self) -> None:
        self._producer = None
        self._finish_closing()

    # -- closing ---------------------------------------------------------------------

    def loseConnection(self) -> None:
        if self._lost or self.disconnecting:
            return
        self.disconnecting = True
        self._finish_closing()

    def abortConnection(self) -> None:
        self._end(Failure(ConnectionLost("connection aborted")))

    def loseWriteConnection(self) -> None:
        """Half-close: our FIN after what was written; the protocol still receives until the peer ends."""
        if self._lost or self.disconnecting or self._write_shut:
            return
        if self._read_eof:
            self.loseConnection()  # both directions are done
            return
        self._write_shut = True
        self.stream.shutdown_write()
        if IHalfCloseableProtocol.providedBy(self.protocol):
            self.protocol.writeConnectionLost()

    def _finish_closing(self) -> None:
        # A pull producer is done when it unregisters; a streaming one may stay registered (a proxy's peer).
        idle_producer = self._producer is None or self._streaming
        if self.disconnecting and not self._unfinished_writes and idle_producer and not self._lost:
            closing = self.stream.close()
            closing.addCallback(lambda _: self._end(Failure(ConnectionDone())))

    def _end(self, reason: Failure) -> None:
        if self._lost:
            return
        self._lost = True
        self.connected = False
        self.disconnecting = False
        self._held = None
        self.stream.close()
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        self.protocol.connectionLost(reason)

    # -- ITransport addresses ------------------------------------------------------------

    def getHost(self) -> PilotAddress:
        return self._host

    def getPeer(self) -> PilotAddress:
        return self._peer

    def setTcpNoDelay(self, enabled) -> None:
        """Accepted for protocols written for TCP; a Pilot stream sends as soon as it can."""

    def setTcpKeepAlive(self, enabled) -> None:
        """Accepted for protocols written for TCP; the daemon keeps streams alive itself."""


def _describe(failure: Failure) -> str:
    error = failure.value
    return error.message if isinstance(error, PilotError) else str(error)
