"""A stream's data socket: its bytes raw over a Unix socket the client passed in, instead of AMP boxes.

A control client sends ``AttachSocket`` with one end of a socketpair it made
(see :mod:`pilotnet.control.schema`).  The daemon adopts that end into the
reactor as a :class:`StreamSocket`, and from then on:

- what the client writes on it is written to the stream; while the stream's
  send buffer is above its high-water mark (``Streams.write`` answers late)
  the socket is not read, so the kernel's buffer fills and the client's
  writes wait: the same bound as the AMP path's write credit, without
  messages;
- what the stream receives is written to it; while the client does not read
  and Twisted's buffer for the socket is full (it pauses us as its
  producer), the pushes stay unanswered, so their bytes keep the stream's
  receive window consumed and the peer's sender slows down;
- the client's half-close (end of data) is the stream's FIN, after all that
  it wrote; losing the socket does the same; the client then sends ``Close``
  on the control socket, answered once the daemon has read that end (a client
  that exits as soon as it is answered loses nothing: the control socket's
  end, which aborts the data socket, could otherwise be seen first);
- the daemon half-closes the socket after the last byte the peer sent, and
  closes it once both directions are over or the stream failed; how it ended
  goes to the client as ``StreamClosed`` on the control socket.

Round trips on an open stream then cost no box encoding, no credit messages
and no AMP dispatch at either end.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.control.data_socket import end_writing, write_now
from pilotnet.errors import INTERNAL, INVALID_ARGUMENT, PilotError

log = Logger()


@implementer(IHalfCloseableProtocol, IPushProducer)
class StreamSocket(Protocol):
    """The daemon's end of one stream's data socket.

    It is also the producer of what is written to its own transport, so it
    hears when the client stops reading (``pauseProducing``).
    """

    #: A connected Unix socket's transport (a declaration only): it is a consumer and a producer as
    #: well as an ITransport, which no one Twisted interface says.
    transport: Any

    def __init__(self, conn_id: int, write: Callable[[bytes], defer.Deferred], close: Callable[[], None],
                 forget: Callable[[StreamSocket], None]) -> None:
        self.conn_id = conn_id
        self._write = write
        self._close = close
        self._forget = forget
        #: Deferreds of deliveries made while the client was not reading, fired when it reads again.
        self._waiting: list[defer.Deferred] = []
        self._paused = False
        self._client_done = False
        self._peer_done = False
        self._lost = False
        #: Deferreds of :meth:`client_ended` callers.
        self._ending: list[defer.Deferred] = []

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)

    # -- client -> stream ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        try:
            taken = self._write(data)
        except PilotError:
            self.transport.abortConnection()  # the stream is gone; the client hears why from StreamClosed
            return
        if not taken.called:
            self.transport.pauseProducing()
            taken.addCallbacks(self._resume_reading, lambda _: None)

    def _resume_reading(self, _: Any) -> None:
        if not self._lost:
            self.transport.resumeProducing()

    def readConnectionLost(self) -> None:
        """The client's end of data: the stream's FIN, after what it wrote."""
        self._client_done = True
        self._finish_writing()
        if self._peer_done:
            end_writing(self.transport, both_ways=True)

    def client_ended(self) -> defer.Deferred:
        """Fires once all that the client wrote is the stream's (its end of data, or the socket's loss)."""
        if self._client_done:
            return defer.succeed(None)
        ending: defer.Deferred = defer.Deferred()
        self._ending.append(ending)
        return ending

    def _finish_writing(self) -> None:
        try:
            self._close()
        except PilotError:
            pass  # already closed
        ending, self._ending = self._ending, []
        for deferred in ending:
            deferred.callback(None)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self._lost = True
        if not self._client_done:
            self._client_done = True
            self._finish_writing()
        self._fire_waiting()
        self._forget(self)

    # -- stream -> client ----------------------------------------------------------------

    def deliver(self, data: bytes) -> defer.Deferred | None:
        """Write received bytes; a Deferred when the client is not reading, fired once it does."""
        if self._lost:
            return None
        write_now(self.transport, data)
        if not self._paused:
            return None
        waiting: defer.Deferred = defer.Deferred()
        self._waiting.append(waiting)
        return waiting

    def peer_ended(self, failed: bool) -> None:
        """The peer's data is over (after what was delivered); a failed stream is over both ways."""
        if self._lost:
            return
        self._peer_done = True
        end_writing(self.transport, both_ways=failed or self._client_done)

    def abort(self) -> None:
        if not self._lost:
            self.transport.abortConnection()

    # -- IPushProducer: the client's reading ----------------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._fire_waiting()

    def stopProducing(self) -> None:
        self._fire_waiting()

    def _fire_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for deferred in waiting:
            deferred.callback(None)


def adopt(reactor: Any, descriptor: int, protocol: StreamSocket) -> None:
    """Adopt ``descriptor`` (which this call owns and closes) as ``protocol``'s transport.

    Only a connected Unix stream socket is taken: a client that passes a
    file, a listening socket or a datagram socket gets ``invalid_argument``.
    """
    try:
        probe = socket.socket(fileno=descriptor)
    except OSError:
        os.close(descriptor)
        raise PilotError("the data socket is not a socket", code=INVALID_ARGUMENT) from None
    try:
        if probe.family != socket.AF_UNIX or probe.type != socket.SOCK_STREAM:
            raise PilotError("the data socket must be a Unix stream socket", code=INVALID_ARGUMENT)
        try:
            probe.getpeername()
        except OSError:
            raise PilotError("the data socket is not connected", code=INVALID_ARGUMENT) from None
        probe.setblocking(False)
        try:
            reactor.adoptStreamConnection(probe.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: protocol))
        except OSError as error:  # out of descriptors, most likely: the client keeps the AMP path
            raise PilotError(f"cannot adopt the data socket: {error.strerror}", code=INTERNAL,
                             hint="raise the daemon's open-file limit (ulimit -n)") from None
    finally:
        probe.close()  # the reactor holds its own duplicate
