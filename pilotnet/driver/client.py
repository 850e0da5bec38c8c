"""The Twisted SDK: a connection to the local pilot daemon over its AMP control socket.

Everything returns a :class:`~twisted.internet.defer.Deferred`, so the API
reads naturally from ``async def`` code driven by ``Deferred.fromCoroutine``
(or ``ensureDeferred``)::

    async def main(reactor):
        daemon = await connect(reactor)
        stream = await daemon.dial("agent-b", 7)
        await stream.write(b"hello")
        print(await stream.read())
        await stream.close()

Reading is *pull*: :meth:`Stream.read` gives the next bytes that arrived (or
``b""`` once the stream has ended), :meth:`Stream.read_exactly` waits for a
given amount, and ``async for chunk in stream`` iterates until the end.  Pull
was chosen over a push callback because it gives backpressure for free: the
daemon's ``Received`` pushes are answered only while the client's buffer has
room, so a slow reader slows the sender instead of filling memory.

Writes are chunked to :data:`~pilotnet.driver.commands.MAX_CHUNK` and a few
chunks are kept in flight per stream; :meth:`Stream.write` fires when the
daemon has buffered all of its data.

Events (publish/subscribe) go through the daemon's own broker, which
federates with trusted peers' brokers, so nothing else needs deploying::

    events = daemon.open_event_stream()
    await events.publish("metrics.cpu", b"42")
    async for event in events.subscribe("metrics.*"):
        print(event.topic, event.data)

Failures are :class:`~pilotnet.errors.PilotError` values with stable codes:
``not_running`` when the daemon cannot be reached or goes away, and the
daemon's own codes (carried by :class:`~pilotnet.driver.commands.CommandFailed`)
for refused commands.
"""

import json
import os
from collections import deque
from pathlib import Path
from typing import NamedTuple

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.protocols import amp

from pilotnet.driver import commands
from pilotnet.driver.targets import parse_port, parse_target, unresolvable
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, NOT_RUNNING, PilotError
from pilotnet.wire.address import Addr
from pilotnet.wire.eventstream import encode_event, split_events

# Bytes a stream buffers before the client stops returning receive window to the daemon.
RECEIVE_BUFFER_LIMIT = 1024 * 1024
# Datagrams kept per bound port for a reader that is not reading; more are dropped.
DATAGRAM_BACKLOG = 1024
# Events a subscription buffers before the client stops answering the daemon's
# pushes; the daemon's broker then queues (and beyond its limit drops) for it.
EVENT_BUFFER_LIMIT = 256
# Bytes of framed events one PublishBatch carries at most (one AMP value); a
# larger event travels alone.
PUBLISH_BATCH_LIMIT = commands.MAX_CHUNK
# PublishBatch calls in flight at once: enough to keep the daemon busy while
# answers travel back, few enough that later events gather into full batches.
PUBLISH_WINDOW = 4
# Bytes of published events not yet answered by the daemon beyond which
# EventStream.drain() waits.
PUBLISH_HIGH_WATER = 8 * commands.MAX_CHUNK


def pilot_home(environ=None):
    """The node's home directory: ``$PILOT_HOME`` or ``~/.pilot``."""
    environ = os.environ if environ is None else environ
    home = environ.get("PILOT_HOME")
    return Path(home).expanduser() if home else Path.home() / ".pilot"


def default_socket_path(environ=None, home=None):
    """Where the daemon listens: ``$PILOT_SOCKET``, else ``socket`` in config.json, else ``<home>/pilot.sock``.

    The same precedence as the reference's ``pilotctl`` (environment over
    configuration over default), so the SDK finds the daemon pilotctl finds.
    """
    environ = os.environ if environ is None else environ
    if environ.get("PILOT_SOCKET"):
        return environ["PILOT_SOCKET"]
    home = pilot_home(environ) if home is None else Path(home)
    try:
        configured = json.loads((home / "config.json").read_text()).get("socket")
    except (OSError, ValueError, AttributeError):
        configured = None
    if isinstance(configured, str) and configured:
        return configured
    return str(home / "pilot.sock")


def not_running_error():
    """The error for a daemon that cannot be reached (the reference's wording)."""
    return PilotError(
        "daemon is not running", code=NOT_RUNNING, hint="start the daemon with: pilotctl daemon start"
    )


def connect(reactor=None, socket_path=None, timeout=5.0):
    """Connect to the daemon's control socket; a Deferred of a :class:`Daemon`.

    Fails with ``not_running`` when nothing listens at ``socket_path``
    (default: :func:`default_socket_path`).
    """
    if reactor is None:
        from twisted.internet import reactor
    from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol

    path = socket_path or default_socket_path()
    protocol = _ControlProtocol()
    connecting = connectProtocol(UNIXClientEndpoint(reactor, path, timeout=timeout), protocol)

    def refused(failure):
        failure.trap(ConnectError, OSError)
        raise not_running_error()

    return connecting.addCallbacks(lambda _: Daemon(protocol, reactor), refused)


def _translate(failure):
    """Turn transport-level failures of a call into the error values users see."""
    if failure.check(PilotError):
        return failure
    if failure.check(ConnectionClosed):
        raise PilotError(
            "lost the connection to the daemon", code=NOT_RUNNING,
            hint="check the daemon: pilotctl daemon status",
        )
    if failure.check(amp.TooLong):
        raise PilotError("value too large for one control message", code=INVALID_ARGUMENT)
    if failure.check(amp.UnhandledCommand):
        raise PilotError("the daemon does not support this command; is it up to date?")
    if failure.check(amp.UnknownRemoteError, amp.RemoteAmpError):
        raise PilotError(f"the daemon failed: {failure.value}")
    return failure


class _OneShot:
    """An event that happens once, with a fresh Deferred for every waiter."""

    def __init__(self):
        self._waiters = []
        self.happened = False
        self.value = None

    def wait(self):
        if self.happened:
            return succeed(self.value)
        waiter = Deferred()
        self._waiters.append(waiter)
        return waiter

    def fire(self, value=None):
        if self.happened:
            return
        self.happened, self.value = True, value
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(value)


class _Queue:
    """Items waiting for readers; ``fail`` ends it, so waiting readers get the error."""

    def __init__(self, limit=None):
        self._items = deque()
        self._getters = deque()
        self._limit = limit
        self.error = None

    def put(self, item):
        """Hand ``item`` to a waiting reader or keep it; False if the queue is full or ended."""
        if self.error is not None:
            return False
        if self._getters:
            self._getters.popleft().callback(item)
            return True
        if self._limit is not None and len(self._items) >= self._limit:
            return False
        self._items.append(item)
        return True

    def get(self):
        if self._items:
            return succeed(self._items.popleft())
        if self.error is not None:
            return fail(self.error)
        getter = Deferred(lambda d: self._getters.remove(d))
        self._getters.append(getter)
        return getter

    def fail(self, error):
        """End the queue; returns the items nobody took."""
        self.error = error
        getters, self._getters = self._getters, deque()
        for getter in getters:
            getter.errback(error)
        left, self._items = list(self._items), deque()
        return left


class Datagram(NamedTuple):
    src_address: Addr
    src_port: int
    dst_port: int
    data: bytes


class Stream:
    """A reliable byte stream to a remote port, from :meth:`Daemon.dial` or :meth:`Listener.accept`."""

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
        self._end_error = None
        self._chunks = deque()
        #: Written bytes the daemon has not credited back yet (see commands.WRITE_CREDIT).
        self._uncredited = 0
        self._write_error = None
        self._flushed = []
        self._closing = None
        self._closed = _OneShot()

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
            elif self._ended:
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
        """Give the daemon back receive window, a batch at a time, while there is room."""
        if self._unreturned >= commands.CREDIT_BATCH and not self._ended and self._has_room():
            size, self._unreturned = self._unreturned, 0
            self._daemon._push(commands.Consumed, conn_id=self.conn_id, size=size)

    def _received(self, data):
        """A Received push: buffer it; its window goes back to the daemon once there is room."""
        if self._ended:
            return {}
        self._buffer += data
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
        done = Deferred()
        last = range(0, len(data), commands.MAX_CHUNK)[-1]
        for offset in range(0, len(data), commands.MAX_CHUNK):
            self._chunks.append((data[offset:offset + commands.MAX_CHUNK], done if offset == last else None))
        self._pump()
        return done

    def _pump(self):
        push = self._daemon._push
        while self._chunks and self._uncredited < commands.WRITE_CREDIT:
            chunk, done = self._chunks.popleft()
            self._uncredited += len(chunk)
            push(commands.Write, conn_id=self.conn_id, data=chunk)
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

    def _check_flushed(self):
        if not self._chunks:
            waiters, self._flushed = self._flushed, []
            for waiter in waiters:
                waiter.callback(None)

    def _wait_flushed(self):
        if not self._chunks:
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
        if self._closing is None:
            if self._ended:
                self._closing = succeed(None)
            else:
                self._closing = self._wait_flushed()
                self._closing.addCallback(lambda _: self._daemon._call(commands.Close, conn_id=self.conn_id))
                self._closing.addBoth(lambda _: self._end(None))
        closing = Deferred()
        self._closing.addBoth(lambda result: closing.callback(None) or result)
        return closing

    def _end(self, error):
        """The stream is over, by either side or by losing the daemon; wake everyone."""
        if self._ended:
            return
        self._ended = True
        self._end_error = error
        if error is not None and self._write_error is None:
            self._write_error = error
        self._daemon._forget_stream(self)
        self._fail_writes(self._write_error or PilotError(f"stream {self.conn_id} is closed",
                                                          code=CONNECTION_FAILED))
        self._serve_readers()
        self._closed.fire(error)


class Listener:
    """A bound port: streams dialled to it (:meth:`accept`) and datagrams sent to it (:meth:`receive_datagram`).

    One object for both because binding a port at the daemon claims both, and
    a port can be bound by one client only.
    """

    def __init__(self, daemon, port):
        self._daemon = daemon
        self.port = port
        self._streams = _Queue()
        self._datagrams = _Queue(limit=DATAGRAM_BACKLOG)
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


class Event(NamedTuple):
    """One published event: its ``topic`` and its ``data`` (bytes)."""

    topic: str
    data: bytes


class Subscription:
    """The events matching one pattern, in arrival order; from :meth:`EventStream.subscribe`.

    ``await subscription.get()`` gives the next :class:`Event`, and ``async
    for event in subscription`` iterates until :meth:`close` (or fails with
    ``not_running`` if the daemon goes away).  ``ready`` fires once the
    daemon holds the subscription: events published after that reach it.

    A consumer that stops reading stops answering the daemon's pushes after
    :data:`EVENT_BUFFER_LIMIT` events; from then on the daemon's broker
    queues, then drops, events for this subscription only.
    """

    def __init__(self, daemon, pattern):
        self._daemon = daemon
        self.pattern = pattern
        self.id = None
        self._events = deque()
        self._getters = deque()
        self._held = deque()
        self._end = None
        self._closing = None
        self.ready = daemon._call(commands.Subscribe, pattern=pattern).addCallback(self._subscribed)
        self.ready.addErrback(self._failed)

    def __repr__(self):
        return f"<Subscription {self.id} {self.pattern!r}>"

    def _subscribed(self, answer):
        self.id = answer["subscription"]
        if self._closing is not None or self._end is not None:
            self._daemon._call(commands.Unsubscribe, subscription=self.id).addErrback(lambda _: None)
        else:
            self._daemon._subscriptions[self.id] = self
        return self

    def _failed(self, failure):
        failure.trap(PilotError)
        self._stop(failure.value)
        return failure

    def get(self):
        """A Deferred of the next :class:`Event`; ``None`` after :meth:`close`.

        Fails with the PilotError that ended the subscription (the daemon went
        away, or refused the pattern).
        """
        if self._events:
            return succeed(self._take())
        if self._end is not None:
            return fail(self._end) if isinstance(self._end, Exception) else succeed(None)
        getter = Deferred(lambda d: self._getters.remove(d))
        self._getters.append(getter)
        return getter

    def __aiter__(self):
        return self

    async def __anext__(self):
        # A buffered event is taken without a Deferred: at high rates that is most of them.
        event = self._take() if self._events else await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def _take(self):
        event = self._events.popleft()
        if self._held and len(self._events) < EVENT_BUFFER_LIMIT:
            held, self._held = self._held, deque()
            for answer in held:
                answer.callback({})
        return event

    def _received(self, events):
        """Pushed ``(topic, payload)`` pairs, in order: answered at once, or (backpressure) once there is room.

        All are buffered before a waiting reader is woken, so a reader
        iterating the subscription takes the rest without a Deferred each.
        """
        if self._end is not None:
            return {}
        buffered = self._events
        buffered.extend(map(Event._make, events))
        getters = self._getters
        while getters and buffered:
            getters.popleft().callback(self._take())
        if len(buffered) < EVENT_BUFFER_LIMIT:
            return {}
        held = Deferred()
        self._held.append(held)
        return held

    def close(self):
        """Unsubscribe; waiting and later ``get`` calls give ``None``; never fails."""
        if self._closing is None:
            subscribed = self.id is not None and self._end is None
            self._stop(True)
            if not subscribed:
                self._closing = succeed(None)  # nothing held at the daemon, or undone once it answers
            else:
                self._closing = self._daemon._call(commands.Unsubscribe, subscription=self.id)
                self._closing.addErrback(lambda _: None)
        closing = Deferred()
        self._closing.addBoth(lambda result: closing.callback(None) or result)
        return closing

    def _stop(self, end):
        """End the subscription: ``True`` for a clean end, else the PilotError."""
        if self._end is not None:
            return
        self._end = end
        self._daemon._subscriptions.pop(self.id, None)
        held, self._held = self._held, deque()
        for answer in held:
            answer.callback({})
        getters, self._getters = self._getters, deque()
        for getter in getters:
            if isinstance(end, Exception):
                getter.errback(end)
            else:
                getter.callback(None)


class EventStream:
    """Publish and subscribe through the local daemon's event broker (:meth:`Daemon.open_event_stream`).

    Topics are dot-separated words; subscription patterns use the documented
    wildcards (``metrics.*`` matches ``metrics.cpu`` and ``metrics.cpu.load``,
    ``pipeline.*.done`` exactly one word in the middle, ``*`` everything).
    Events reach subscribers on this daemon and, through it, subscribers on
    trusted peers' daemons; never this client's own subscriptions.
    """

    def __init__(self, daemon):
        self._daemon = daemon
        self._subscriptions = []

    def publish(self, topic, data):
        """Publish ``data`` (bytes or text, up to 16 MiB) on ``topic``.

        Returns at once with a Deferred that fires with the number of local
        subscribers and peer links the event reached, or fails with the
        daemon's error for this event alone.  Awaiting it costs a round trip
        to the daemon; a publisher that does not need the count can leave it
        (an error still gets logged as an unhandled Deferred failure) and call
        :meth:`drain` for flow control instead.

        Events travel to the daemon in order, many to a ``PublishBatch``
        (what was published in one reactor iteration, up to
        :data:`PUBLISH_BATCH_LIMIT` bytes), at most :data:`PUBLISH_WINDOW`
        batches in flight; the rest wait in this process.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray)):
            return fail(PilotError(f"event data must be bytes or text, not {type(data).__name__}",
                                   code=INVALID_ARGUMENT))
        return self._daemon._publisher.publish(topic, bytes(data))

    def drain(self):
        """Flow control for publishers: a Deferred firing once there is room for more events.

        It fires at once unless more than :data:`PUBLISH_HIGH_WATER` bytes of
        this connection's events wait for the daemon's answer, and otherwise
        when they have fallen below it.  ``publish(); await drain()`` in a
        loop publishes as fast as the daemon takes events, with bounded memory.
        """
        return self._daemon._publisher.drain()

    def subscribe(self, pattern):
        """A :class:`Subscription` to ``pattern``: an async iterator of :class:`Event`."""
        subscription = Subscription(self._daemon, pattern)
        self._subscriptions.append(subscription)
        return subscription

    def close(self):
        """Close every subscription made through this stream."""
        subscriptions, self._subscriptions = self._subscriptions, []
        return gatherResults([subscription.close() for subscription in subscriptions]).addCallback(lambda _: None)


class _Publisher:
    """Sends one connection's publishes as ``PublishBatch`` calls, in publish order, with flow control.

    An AMP round trip per event limited the event stream to a few thousand
    events/s.  Events wait in batches (:class:`_Batch`) of up to
    :data:`PUBLISH_BATCH_LIMIT` bytes; a batch goes when it is full or at the
    end of the reactor iteration, while fewer than :data:`PUBLISH_WINDOW` are
    unanswered, so a busy publisher's events gather into full batches while
    earlier ones are in flight.  Each event keeps its own Deferred, fired from
    the per-event results.  A daemon without ``PublishBatch`` gets every event
    as a plain ``Publish``.
    """

    def __init__(self, daemon):
        self._daemon = daemon
        self._waiting = deque()
        self._in_flight = 0
        self._unanswered = 0
        self._drains = []
        self._flushes = []
        self._scheduled = False
        self._pumping = None
        self._batches = True

    def publish(self, topic, payload):
        if self._daemon._lost_error is not None:
            return fail(self._daemon._lost_error)
        try:
            frame = encode_event(topic, payload)
        except PilotError as error:
            return fail(PilotError(error.message, code=INVALID_ARGUMENT, hint=error.hint))
        done = Deferred()
        waiting = self._waiting
        if not waiting or waiting[-1].size + len(frame) > PUBLISH_BATCH_LIMIT:
            waiting.append(_Batch())
        waiting[-1].add(frame, done)
        self._unanswered += len(frame)
        if len(waiting) > 1:
            self._pump(partial=False)
        if not self._scheduled:
            self._scheduled = True
            self._daemon.reactor.callLater(0, self._flush)
        return done

    def drain(self):
        if self._daemon._lost_error is not None:
            return fail(self._daemon._lost_error)
        if self._unanswered <= PUBLISH_HIGH_WATER:
            return succeed(None)
        waiter = Deferred()
        self._drains.append(waiter)
        return waiter

    def flushed(self):
        """A Deferred firing once every event published so far has been answered (or the connection lost)."""
        if not self._unanswered or self._daemon._lost_error is not None:
            return succeed(None)
        waiter = Deferred()
        self._flushes.append(waiter)
        return waiter

    def _flush(self):
        self._scheduled = False
        self._pump(partial=True)

    def _pump(self, partial):
        """Send waiting batches while the window allows; the last one only if ``partial`` (it may still grow).

        Not re-entered: once the connection is lost every call fails at once,
        and each failure pumps again, which would otherwise recurse once per
        waiting batch.
        """
        if self._pumping is not None:
            self._pumping = self._pumping or partial
            return
        self._pumping = partial
        waiting = self._waiting
        try:
            while waiting and self._in_flight < PUBLISH_WINDOW and (self._pumping or len(waiting) > 1):
                self._send(waiting.popleft())
        finally:
            self._pumping = None

    def _send(self, batch):
        self._in_flight += 1
        if self._batches:
            sending = self._daemon._protocol.callRemote(commands.PublishBatch, events=b"".join(batch.frames))
            sending.addCallbacks(self._answered, self._refused, callbackArgs=(batch,), errbackArgs=(batch,))
        else:
            self._send_each(batch)

    def _send_each(self, batch):
        events = split_events(b"".join(batch.frames))
        sending = gatherResults([
            self._daemon._result(commands.Publish, "delivered", topic=topic, payload=payload).chainDeferred(done)
            for (topic, payload), done in zip(events, batch.dones)])
        sending.addBoth(lambda _: self._finished(batch))

    def _answered(self, answer, batch):
        results = answer["results"]
        for done, result in zip(batch.dones, results):
            if type(result) is int:
                done.callback(result)
            else:
                done.errback(commands.CommandFailed(str(result.get("message")), code=str(result.get("code")),
                                                    hint=result.get("hint")))
        for done in batch.dones[len(results):]:
            done.errback(PilotError("the daemon answered fewer events than were published"))
        self._finished(batch)

    def _refused(self, failure, batch):
        if failure.check(amp.UnhandledCommand):
            self._batches = False  # an older daemon: publish these, and all later ones, one by one
            self._send_each(batch)
            return
        try:
            error = _translate(failure)
        except PilotError as translated:
            error = translated
        for done in batch.dones:
            done.errback(error)
        self._finished(batch)

    def _finished(self, batch):
        self._in_flight -= 1
        self._unanswered -= batch.size
        self._pump(partial=True)
        for waiters, room in ((self._drains, PUBLISH_HIGH_WATER), (self._flushes, 0)):
            if waiters and self._unanswered <= room:
                fired, waiters[:] = list(waiters), []
                for waiter in fired:
                    waiter.callback(None)


class _Batch:
    """Events waiting to go to the daemon in one ``PublishBatch``, with their Deferreds."""

    __slots__ = ("frames", "dones", "size")

    def __init__(self):
        self.frames = []
        self.dones = []
        self.size = 0

    def add(self, frame, done):
        self.frames.append(frame)
        self.dones.append(done)
        self.size += len(frame)


class Daemon:
    """A connection to the local daemon: queries, registry operations, streams, ports, datagrams."""

    def __init__(self, protocol, reactor):
        self._protocol = protocol
        self.reactor = reactor
        self._streams = {}
        self._listeners = {}
        self._subscriptions = {}
        self._publisher = _Publisher(self)
        self._lost_error = None
        self._disconnected = _OneShot()
        protocol.daemon = self

    # -- plumbing ---------------------------------------------------------------

    def _call(self, command, **arguments):
        if self._lost_error is not None:
            return fail(self._lost_error)
        return self._protocol.callRemote(command, **arguments).addErrback(_translate)

    def _push(self, command, **arguments):
        """An unanswered command (stream data and credit); dropped once the daemon is gone."""
        self._protocol.callRemote(command, **arguments)

    def _result(self, command, key, **arguments):
        return self._call(command, **arguments).addCallback(lambda answer: answer[key])

    def _forget_stream(self, stream):
        if self._streams.get(stream.conn_id) is stream:
            del self._streams[stream.conn_id]

    def _connection_lost(self):
        self._lost_error = PilotError(
            "lost the connection to the daemon", code=NOT_RUNNING,
            hint="check the daemon: pilotctl daemon status",
        )
        for stream in list(self._streams.values()):
            stream._end(self._lost_error)
        for listener in list(self._listeners.values()):
            listener._stop(self._lost_error)
        for subscription in list(self._subscriptions.values()):
            subscription._stop(self._lost_error)
        self._disconnected.fire(None)

    @property
    def disconnected(self):
        """A Deferred firing (with ``None``) when the control connection is gone."""
        return self._disconnected.wait()

    def close(self):
        """Disconnect; the daemon closes this client's streams and unbinds its ports.

        Events published before are sent and answered first, so a publisher
        that did not wait for them loses none by closing.
        """
        if self._lost_error is None:
            self._publisher.flushed().addCallback(self._disconnect)
        return self.disconnected

    def _disconnect(self, _):
        if self._lost_error is None:
            self._protocol.transport.loseConnection()

    # -- the node -----------------------------------------------------------

    def info(self):
        """The node's Info JSON (identity, counters, ``peer_list``, ``conn_list``)."""
        return self._result(commands.Info, "info")

    def peers(self):
        return self._result(commands.Peers, "peers")

    def connections(self):
        return self._result(commands.Connections, "connections")

    # -- registry operations -------------------------------------------------------

    def resolve_hostname(self, hostname):
        """The registry's answer for ``hostname`` (``node_id``, ``address``, ``public``, ...)."""
        return self._result(commands.ResolveHostname, "result", hostname=hostname)

    def lookup(self, node_id):
        return self._result(commands.Lookup, "result", node_id=node_id)

    def set_hostname(self, hostname):
        """Set the node's hostname; ``""`` clears it."""
        return self._result(commands.SetHostname, "result", hostname=hostname)

    def set_visibility(self, public):
        return self._result(commands.SetVisibility, "result", public=bool(public))

    def set_tags(self, tags):
        return self._result(commands.SetTags, "result", tags=list(tags))

    def set_task_exec(self, enabled):
        return self._result(commands.SetTaskExec, "result", enabled=bool(enabled))

    def deregister(self):
        return self._result(commands.Deregister, "result")

    def resolve(self, target):
        """The :class:`Addr` of an address, a node ID or a hostname (see :mod:`pilotnet.driver.targets`)."""
        try:
            address = parse_target(target)
        except PilotError as error:
            return fail(error)
        if address is not None:
            return succeed(address)

        def resolved(answer):
            try:
                return Addr.parse(answer["address"])
            except (KeyError, TypeError, PilotError):
                raise unresolvable(target) from None

        def refused(failure):
            if failure.check(PilotError) and failure.value.code == NOT_RUNNING:
                return failure
            raise unresolvable(target)

        return self.resolve_hostname(target).addCallbacks(resolved, refused)

    # -- trust ------------------------------------------------------------------------

    def handshake(self, target, justification=""):
        """Ask ``target`` (address, node ID or hostname) for mutual trust: ``{"status": "sent", "node_id"}``."""
        if isinstance(target, int) and not isinstance(target, bool):
            target = str(target)
        return self.resolve(target).addCallback(
            lambda address: self._result(commands.Handshake, "result", node_id=address.node,
                                         justification=justification))

    def approve(self, node_id):
        """Approve a pending request: ``{"status": "approved", "node_id"}``."""
        return self._result(commands.Approve, "result", node_id=int(node_id))

    def reject(self, node_id, reason=""):
        return self._result(commands.Reject, "result", node_id=int(node_id), reason=reason)

    def revoke(self, node_id):
        """End trust at once; fails with ``not_found`` when ``node_id`` was not trusted."""
        return self._result(commands.Revoke, "result", node_id=int(node_id))

    def pending(self):
        """Requests waiting for approval: a list of ``{node_id, public_key, justification, received_at}``."""
        return self._result(commands.Pending, "result").addCallback(lambda result: result["pending"])

    def trusted(self):
        """Trusted peers: a list of ``{node_id, public_key, approved_at, mutual, network}``."""
        return self._result(commands.Trusted, "result").addCallback(lambda result: result["trusted"])

    # -- streams, ports, datagrams ---------------------------------------------------

    def dial(self, target, port, timeout=None):
        """Open a :class:`Stream` to ``port`` on ``target`` (address, node ID or hostname)."""
        try:
            port = parse_port(port)
        except PilotError as error:
            return fail(error)
        arguments = {} if timeout is None else {"timeout": float(timeout)}

        def dial(address):
            return self._call(commands.Dial, address=str(address), port=port, **arguments)

        def opened(answer):
            stream = Stream(
                self, answer["conn_id"], answer["local_port"],
                Addr.parse(answer["remote_address"]), answer["remote_port"],
            )
            self._streams[stream.conn_id] = stream
            return stream

        return self.resolve(target).addCallback(dial).addCallback(opened)

    def listen(self, port):
        """Bind ``port``: a :class:`Listener` for the streams and datagrams sent to it."""
        try:
            port = parse_port(port)
        except PilotError as error:
            return fail(error)

        def bound(answer):
            listener = Listener(self, answer["port"])
            self._listeners[listener.port] = listener
            return listener

        return self._call(commands.Bind, port=port).addCallback(bound)

    def send_datagram(self, target, port, data):
        """Send one datagram (unreliable, at most one chunk) to ``port`` on ``target``."""
        try:
            port = parse_port(port)
        except PilotError as error:
            return fail(error)
        if not isinstance(data, (bytes, bytearray)):
            return fail(PilotError(f"datagram data must be bytes, not {type(data).__name__}", code=INVALID_ARGUMENT))
        if len(data) > commands.MAX_CHUNK:
            return fail(PilotError(
                f"datagram too large: {len(data)} bytes (at most {commands.MAX_CHUNK})", code=INVALID_ARGUMENT
            ))

        def send(address):
            return self._call(commands.SendDatagram, address=str(address), port=port, data=bytes(data))

        return self.resolve(target).addCallback(send).addCallback(lambda _: None)

    def open_event_stream(self):
        """An :class:`EventStream`: publish and subscribe through this daemon's broker."""
        return EventStream(self)

    def event_stats(self):
        """The broker's counters: events published, and per subscription delivered/dropped/queued."""
        return self._result(commands.EventStats, "stats")

    def close_connection(self, conn_id):
        """Close any of the daemon's connections by id (``pilotctl disconnect``)."""
        stream = self._streams.get(conn_id)
        if stream is not None:
            return stream.close()
        return self._call(commands.Close, conn_id=conn_id).addCallback(lambda _: None)

    # -- pushes from the daemon -----------------------------------------------------

    def _accepted(self, port, conn_id, remote_address, remote_port):
        listener = self._listeners.get(port)
        if listener is None:
            raise commands.CommandFailed(f"port {port} is not bound by this client", code=CONNECTION_FAILED)
        stream = Stream(self, conn_id, port, Addr.parse(remote_address), remote_port)
        self._streams[conn_id] = stream
        listener._accepted(stream)
        return {}

    def _received(self, conn_id, data):
        stream = self._streams.get(conn_id)
        if stream is None:
            return {}
        return stream._received(data)

    def _written(self, conn_id, size):
        stream = self._streams.get(conn_id)
        if stream is None:
            return {}
        return stream._credited(size)

    def _stream_closed(self, conn_id, code, message):
        stream = self._streams.get(conn_id)
        if stream is not None:
            stream._end(PilotError(message or code, code=code) if code else None)
        return {}

    def _datagram_received(self, src_address, src_port, dst_port, data):
        listener = self._listeners.get(dst_port)
        if listener is not None:
            listener._datagram(Datagram(Addr.parse(src_address), src_port, dst_port, data))
        return {}

    def _event_received(self, subscription, topic, payload):
        target = self._subscriptions.get(subscription)
        if target is None:
            return {}
        return target._received(((topic, payload),))

    def _events_received(self, subscription, events):
        """Hand a pushed batch to its subscription in order; answered once it has room for them."""
        target = self._subscriptions.get(subscription)
        if target is None:
            return {}
        return target._received(split_events(events))


class _ControlProtocol(commands.UnansweredFastPath, amp.AMP):
    """The client end of the control socket: routes the daemon's pushes to the :class:`Daemon`."""

    daemon = None
    fast_commands = commands.fast_path((commands.Received, "received"), (commands.Written, "written"))

    @commands.Accepted.responder
    def accepted(self, port, conn_id, remote_address, remote_port):
        return self.daemon._accepted(port, conn_id, remote_address, remote_port)

    @commands.Received.responder
    def received(self, conn_id, data):
        return self.daemon._received(conn_id, data)

    @commands.Written.responder
    def written(self, conn_id, size):
        return self.daemon._written(conn_id, size)

    @commands.StreamClosed.responder
    def stream_closed(self, conn_id, code, message):
        return self.daemon._stream_closed(conn_id, code, message)

    @commands.DatagramReceived.responder
    def datagram_received(self, src_address, src_port, dst_port, data):
        return self.daemon._datagram_received(src_address, src_port, dst_port, data)

    @commands.EventReceived.responder
    def event_received(self, subscription, topic, payload):
        return self.daemon._event_received(subscription, topic, payload)

    @commands.EventsReceived.responder
    def events_received(self, subscription, events):
        return self.daemon._events_received(subscription, events)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self.daemon is not None:
            self.daemon._connection_lost()


__all__ = [
    "Daemon", "Datagram", "Event", "EventStream", "Listener", "Stream", "Subscription",
    "connect", "default_socket_path", "not_running_error", "pilot_home",
]
