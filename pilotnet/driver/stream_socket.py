"""The SDK's end of a stream's data socket (see :mod:`pilotnet.daemon.stream_socket` for the daemon's).

For each :class:`~pilotnet.driver.streams.Stream` the SDK makes a
socketpair, keeps one end and passes the other to the daemon: with the
``Dial`` that opens the stream, which spares the first write a round trip
to the daemon, or with ``AttachSocket`` once an accepted stream is open.
Once that is answered the stream's bytes travel raw over the pair: writes
go straight to the socket while Twisted's buffer for it has room (we are
its producer, so we hear when it is full), received bytes go to the
stream's buffer, and reading stops while that buffer is over its limit,
which lets the kernel's buffers fill and the daemon hold the stream's
receive window.  Until the answer (or if the daemon refuses), the stream
stays on the AMP boxes of :mod:`pilotnet.control.commands`.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer, IUNIXTransport
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from pilotnet.control import commands
from pilotnet.errors import INTERNAL, PilotError

if TYPE_CHECKING:
    from pilotnet.driver.streams import Stream

#: Data sockets a client has passed (with ``Dial`` or ``AttachSocket``) and not had answered.  The
#: daemon drops a client with more than 16 passed descriptors no box has claimed yet, and a burst of
#: calls passes its descriptors ahead of its boxes (Twisted sends each with one byte of what is
#: queued): past this many, a dial goes without one and an ``AttachSocket`` waits its turn.
MAX_IN_FLIGHT = 8


@implementer(IHalfCloseableProtocol, IPushProducer)
class DataSocket(Protocol):
    """One stream's data socket: raw bytes to and from the daemon."""

    #: A connected Unix socket's transport (a declaration only): it is a consumer and a producer as
    #: well as an ITransport, which no one Twisted interface says.
    transport: Any

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        #: Twisted's buffer for our writes is full: the stream queues until :meth:`resumeProducing`.
        self.paused = False
        self._reading = True
        #: The daemon's end of data (or of the socket) has been seen.
        self.ended = False

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        self.stream._received(data, via_amp=False)

    def read_while(self, room: bool) -> None:
        """Read the socket only while the stream's buffer has room (backpressure toward the daemon)."""
        if room != self._reading and not self.ended:
            self._reading = room
            if room:
                self.transport.resumeProducing()
            else:
                self.transport.pauseProducing()

    def readConnectionLost(self) -> None:
        self._end_of_data()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self.paused = False
        self._end_of_data()

    def _end_of_data(self) -> None:
        if not self.ended:
            self.ended = True
            self.stream._socket_ended()

    # -- IPushProducer: our writes ----------------------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.stream._pump()

    def stopProducing(self) -> None:
        pass


def socket_pair(daemon: Any) -> tuple[socket.socket, socket.socket] | None:
    """Our end and the daemon's of a new data socket, or ``None`` if the stream must stay on AMP."""
    if not daemon._data_sockets or not IUNIXTransport.providedBy(daemon._protocol.transport):
        return None
    try:
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None  # out of descriptors: AMP still carries the stream


def use(daemon: Any, stream: Stream, ours: socket.socket) -> None:
    """The daemon took the other end: ``stream``'s bytes go on ``ours`` from now on (``ours`` is closed here)."""
    try:
        if stream._ended:
            return
        ours.setblocking(False)
        data_socket = DataSocket(stream)
        try:
            daemon.reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX,
                                                 Factory.forProtocol(lambda: data_socket))
        except OSError as error:
            stream._end(PilotError(f"cannot open the stream's data socket: {error.strerror}", code=INTERNAL))
            return
        stream._socket_attached(data_socket)
    finally:
        ours.close()  # the reactor holds its own duplicate (or, on failure, the daemon sees the end)


def answered(daemon: Any) -> None:
    """A call that passed a data socket was answered: the next waiting ``AttachSocket`` may go."""
    daemon._sockets_in_flight -= 1
    while daemon._attaches_waiting and daemon._sockets_in_flight < MAX_IN_FLIGHT:
        _send_attach(daemon, *daemon._attaches_waiting.popleft())


def attach(daemon: Any, stream: Stream) -> None:
    """Give ``stream`` a data socket if the control connection can pass one; else it stays on AMP."""
    pair = socket_pair(daemon)
    if pair is None:
        return
    stream._attaching = True
    if daemon._sockets_in_flight < MAX_IN_FLIGHT:
        _send_attach(daemon, stream, *pair)
    else:
        daemon._attaches_waiting.append((stream, *pair))


def _send_attach(daemon: Any, stream: Stream, ours: socket.socket, theirs: socket.socket) -> None:
    def attached(_: object) -> None:
        theirs.close()
        use(daemon, stream, ours)

    def refused(_: object) -> None:
        theirs.close()
        ours.close()
        stream._socket_refused()

    daemon._sockets_in_flight += 1
    attaching = daemon._call(commands.AttachSocket, conn_id=stream.conn_id, data_socket=theirs.fileno())
    def settled(result: object) -> object:
        answered(daemon)
        return result

    attaching.addBoth(settled)
    attaching.addCallbacks(attached, refused)
