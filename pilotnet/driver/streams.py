"""Streams, listeners and datagrams of the Twisted SDK (see :mod:`pilotnet.driver.client`).

Reading is *pull*: :meth:`Stream.read` gives the next bytes that arrived (or
``b""`` once the stream has ended), :meth:`Stream.read_exactly` waits for a
given amount, and ``async for chunk in stream`` iterates until the end.  Pull
was chosen over a push callback because it gives backpressure for free: the
client returns receive window to the daemon only while its buffer has room,
so a slow reader slows the sender instead of filling memory.

Writes go in chunks of :data:`~pilotnet.driver.commands.MAX_CHUNK` without
waiting for answers, within the stream's write credit (see
:mod:`pilotnet.driver.commands`); :meth:`Stream.write` fires once its data is
on its way to the daemon.

Once the stream has a data socket (:mod:`pilotnet.driver.stream_socket`),
the same calls move raw bytes over it instead: writes while the socket's
buffer has room, reads from it while the stream's buffer has room.
"""

from collections import deque
from typing import NamedTuple

from twisted.internet.defer import Deferred, fail, succeed

from pilotnet.control import commands
from pilotnet.control.data_socket import end_writing, write_now
from pilotnet.driver.waiting import OneShot, WaitQueue
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, PilotError
from pilotnet.wire.address import Addr

# Bytes a stream buffers before the client stops returning receive window to the daemon.
RECEIVE_BUFFER_LIMIT = 1024 * 1024
# Datagrams kept per bound port for a reader that is not reading; more are dropped.
DATAGRAM_BACKLOG = 1024


class Datagram(NamedTuple):
    src_address: Addr
    src_port: int
    dst_port: int
    data: bytes


class Stream:
    """A reliable byte stream to a remote port, from :meth:`Daemon.dial` or :meth:`Listener.accept`."""

    #: Keep writing after the peer's end (a half-close): reads then give ``b""`` while writes go on
    #: until :meth:`close`.  Off by default: a peer's end closes the stream both ways, as in the reference.
    half_open = False

    def __init__(self, daemon, conn_id, local_port, remote_address, remote_port):
        self._daemon = daemon
        self.conn_id = conn_id
        self.local_port = local_port
        self.remote_address = remote_address
        self.remote_port = remote_port
        self._buffer = bytearray()
        self._readers = deque()
        #: Received bytes not yet returned to the daemon with Consumed.
        self._unreturned = 0
        self._ended = False
        #: The peer ended its direction of a :attr:`half_open` stream (ours may still write).
        self._peer_done = False
        self._end_error = None
        self._chunks = deque()
        #: Written bytes the daemon has not credited back yet (see commands.WRITE_CREDIT).
        self._uncredited = 0
        self._write_error = None
        self._flushed = []
        self._closing = None
        #: Our side finished writing (:meth:`shutdown_write`) while the peer may still send.
        self._write_shut = False
        self._closed = OneShot()
        #: The stream's :class:`~pilotnet.driver.stream_socket.DataSocket`, once the daemon has taken it.
        self._socket = None
        #: Writes wait while the daemon takes the data socket, so none overtakes another.
        self._attaching = False
        #: How the daemon said the stream ended, held until the data socket's data has all been read.
        self._held_end = None

    def __repr__(self):
        return f"<Stream {self.conn_id} :{self.local_port} -> {self.remote_address}:{self.remote_port}>"

    # -- reading --------------------------------------------------------------

    def read(self, max_bytes=None):
        """The next bytes available (at most ``max_bytes``); ``b""`` at the end of the stream.

        Errbacks with the :class:`PilotError` that ended the stream, once the
        data received before it has been read.
        """
        return self._enqueue_reader(max_bytes, exact=False)

    def read_exactly(self, size):
        """Exactly ``size`` bytes; fails with ``connection_failed`` if the stream ends first."""
        return self._enqueue_reader(size, exact=True)

    def __aiter__(self):
        return self

    async def __anext__(self):
        data = await self.read()
        if not data:
            raise StopAsyncIteration
        return data

    def _enqueue_reader(self, size, exact):
        if size is not None and size <= 0:
            return succeed(b"")
        entry = [None, size, exact]
        entry[0] = Deferred(lambda d: self._readers.remove(entry))
        self._readers.append(entry)
        self._serve_readers()
        return entry[0]

    def _serve_readers(self):
        while self._readers:
            reader, size, exact = self._readers[0]
            if exact and len(self._buffer) >= size or not exact and self._buffer:
                take = len(self._buffer) if size is None else size
                data = bytes(self._buffer[:take])
                del self._buffer[:take]
            elif self._end_error is not None:
                data = self._end_error
            elif self._ended or self._peer_done:
                data = b""
                if exact:
                    data = PilotError(
                        f"stream ended after {len(self._buffer)} of {size} bytes", code=CONNECTION_FAILED
                    )
            else:
                break
            self._readers.popleft()
            if isinstance(data, Exception):
                reader.errback(data)
            else:
                reader.callback(data)
        self._return_consumed()

    def _has_room(self):
        """Whether to take more data now.

        Beyond the buffer limit the answer is no (backpressure), with two
        exceptions that would otherwise deadlock: a ``read_exactly`` larger
        than the limit needs the buffer to grow to its size; and while a write
        is in progress, a program that writes everything before it reads,
        against a peer that answers as it reads (an echo), would wait on its
        write while the peer waits on it to read.
        """
        limit = RECEIVE_BUFFER_LIMIT
        if self._readers and self._readers[0][2]:
            limit = max(limit, self._readers[0][1])
        return self._ended or len(self._buffer) < limit or bool(self._chunks)

    def _return_consumed(self):
        """Give the daemon back receive window, a batch at a time, while there is room.

        With a data socket: read it while there is room (and return what AMP
        brought before it at once).
        """
        if self._socket is not None:
            room = self._ended or self._has_room()
            self._socket.read_while(room)
            threshold = 1
        else:
            threshold = commands.CREDIT_BATCH
        if self._unreturned >= threshold and not self._ended and self._has_room():
            size, self._unreturned = self._unreturned, 0
            self._daemon._push(commands.Consumed, conn_id=self.conn_id, size=size)

    def _received(self, data, via_amp=True):
        """A Received push (or bytes from the data socket): buffer it; window goes back once there is room."""
        if self._ended:
            return {}
        self._buffer += data
        if via_amp:
            self._unreturned += len(data)
        self._serve_readers()
        return {}

    # -- writing --------------------------------------------------------------

    def write(self, data):
        """Send ``data``; fires once all of it is on its way to the daemon, within the write credit.

        Like a socket's send buffer: a program that writes faster than the
        stream carries waits here.  Data written before the stream fails is
        lost with it (the failure reaches :attr:`closed` and later calls).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return fail(PilotError(
                f"stream data must be bytes, not {type(data).__name__}", code=INVALID_ARGUMENT
            ))
        if self._write_error is not None:
            return fail(self._write_error)
        if self._closing is not None or self._ended:
            return fail(PilotError(f"stream {self.conn_id} is closed", code=CONNECTION_FAILED))
        data = bytes(data)
        if not data:
            return succeed(None)
        if not self._chunks and len(data) <= commands.MAX_CHUNK and self._can_send():
            # The common small write: nothing queued ahead of it and room to spare.
            self._send(data)
            return succeed(None)
        done = Deferred()
        last = range(0, len(data), commands.MAX_CHUNK)[-1]
        for offset in range(0, len(data), commands.MAX_CHUNK):
            self._chunks.append((data[offset:offset + commands.MAX_CHUNK], done if offset == last else None))
        self._pump()
        return done

    def _can_send(self):
        if self._socket is not None:
            return not self._socket.paused
        return not self._attaching and self._uncredited < commands.WRITE_CREDIT

    def _send(self, chunk):
        if self._socket is not None:
            write_now(self._socket.transport, chunk)
        else:
            self._uncredited += len(chunk)
            self._daemon._push(commands.Write, conn_id=self.conn_id, data=chunk)

    def _pump(self):
        while self._chunks and self._can_send():
            chunk, done = self._chunks.popleft()
            self._send(chunk)
            if done is not None:
                done.callback(None)
        self._check_flushed()

    def _credited(self, size):
        """A Written push: the daemon took ``size`` bytes, so that much more may go."""
        self._uncredited = max(0, self._uncredited - size)
        self._pump()
        return {}

    def _fail_writes(self, error):
        queued, self._chunks = self._chunks, deque()
        for _, done in queued:
            if done is not None:
                done.errback(error)
        self._check_flushed()

    def _settled(self):
        """Nothing written waits, and the data socket is attached or refused: our end may go now.

        Our end waits for the attachment too: the daemon answers ``Close`` for a stream with a
        data socket only once it read the socket's end, which must then come.
        """
        return not self._chunks and (not self._attaching or self._ended)

    def _check_flushed(self):
        if self._settled():
            waiters, self._flushed = self._flushed, []
            for waiter in waiters:
                waiter.callback(None)

    def _wait_flushed(self):
        if self._settled():
            return succeed(None)
        waiter = Deferred()
        self._flushed.append(waiter)
        return waiter

    # -- closing --------------------------------------------------------------

    @property
    def closed(self):
        """A Deferred firing when the stream is over: ``None`` if it ended cleanly, else the PilotError."""
        return self._closed.wait()

    def close(self):
        """Close after the data already written has been buffered; never fails."""
        if self._write_shut:
            self._write_shut = False
            self._closing.addBoth(lambda _: self._end(None))
        elif self._closing is None:
            if self._ended:
                self._closing = succeed(None)
            else:
                self._closing = self._wait_flushed()
                self._closing.addCallback(self._send_end)
                self._closing.addBoth(lambda _: self._end(None))
        closing = Deferred()
        self._closing.addBoth(lambda result: closing.callback(None) or result)
        return closing

    def shutdown_write(self):
        """Half-close: our FIN follows the data already written; reading goes on until the peer ends.

        Later writes fail; :meth:`close` still ends the stream at once.  Never fails.
        """
        if self._closing is None and not self._ended:
            self._closing = self._wait_flushed()
            self._closing.addCallback(self._send_end)
            self._closing.addErrback(lambda _: None)
            self._write_shut = True

    def _send_end(self, _):
        """Our end of data: ``Close``, after the data socket's half-close if there is one.

        With a data socket the half-close is what ends the stream (after what
        was written on it); ``Close`` is answered once the daemon has read it,
        so a program that exits once closed loses nothing it wrote.
        """
        if self._socket is not None:
            end_writing(self._socket.transport, both_ways=False)
        return self._daemon._call(commands.Close, conn_id=self.conn_id)

    def _peer_ended(self, code, message):
        """The daemon says the stream ended: cleanly (``code`` empty) or with an error.

        With a data socket, bytes sent before the end may still be on their
        way there: the end waits for the socket's end of data.
        """
        if self._socket is not None and not self._socket.ended:
            self._held_end = (code, message)
            return
        if not code and self.half_open and not self._write_shut and not self._ended:
            self._peer_done = True
            self._serve_readers()
        else:
            self._end(PilotError(message or code, code=code) if code else None)

    def _end(self, error):
        """The stream is over, by either side or by losing the daemon; wake everyone."""
        if self._ended:
            return
        self._ended = True
        self._end_error = error
        if error is not None and self._write_error is None:
            self._write_error = error
        self._daemon._forget_stream(self)
        if self._socket is not None:
            end_writing(self._socket.transport, both_ways=True)
        self._fail_writes(self._write_error or PilotError(f"stream {self.conn_id} is closed",
                                                          code=CONNECTION_FAILED))
        self._serve_readers()
        self._closed.fire(error)


    # -- the data socket (pilotnet.driver.stream_socket) -------------------------------

    def _socket_attached(self, data_socket):
        """The daemon took the data socket: queued writes and held-back window go to it now."""
        self._attaching = False
        self._socket = data_socket
        self._pump()
        self._return_consumed()

    def _socket_refused(self):
        """The daemon kept the stream on AMP: writes queued meanwhile go that way."""
        self._attaching = False
        self._pump()

    def _socket_ended(self):
        """The daemon's end of data on the socket: the end it told of (if it did yet) applies now."""
        held, self._held_end = self._held_end, None
        if held is not None:
            self._peer_ended(*held)


class Listener:
    """A bound port: streams dialled to it (:meth:`accept`) and datagrams sent to it (:meth:`receive_datagram`).

    One object for both because binding a port at the daemon claims both, and
    a port can be bound by one client only.
    """

    def __init__(self, daemon, port):
        self._daemon = daemon
        self.port = port
        self._streams = WaitQueue()
        self._datagrams = WaitQueue(limit=DATAGRAM_BACKLOG)
        self._closing = None
        self.dropped_datagrams = 0

    def __repr__(self):
        return f"<Listener :{self.port}>"

    def accept(self):
        """The next stream a peer opened to this port."""
        return self._streams.get()

    def receive_datagram(self):
        """The next :class:`Datagram` sent to this port."""
        return self._datagrams.get()

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.accept()

    def close(self):
        """Unbind the port; pending and later accepts fail; never fails itself."""
        if self._closing is None:
            self._stop(PilotError(f"listener on port {self.port} is closed", code=CONNECTION_FAILED))
            self._closing = self._daemon._call(commands.Unbind, port=self.port)
            self._closing.addErrback(lambda _: None)
        closing = Deferred()
        self._closing.addBoth(lambda result: closing.callback(None) or result)
        return closing

    def _stop(self, error):
        self._daemon._listeners.pop(self.port, None)
        for stream in self._streams.fail(error):
            stream.close()
        self._datagrams.fail(error)

    def _accepted(self, stream):
        self._streams.put(stream)

    def _datagram(self, datagram):
        if not self._datagrams.put(datagram):
            self.dropped_datagrams += 1
