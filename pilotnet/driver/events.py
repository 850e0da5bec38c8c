"""Publish/subscribe through the local daemon's event broker (see :mod:`pilotnet.driver.client`).

The daemon's broker federates with trusted peers' brokers, so nothing else
needs deploying.  :meth:`EventStream.publish` returns at once and batches;
:meth:`EventStream.drain` is the flow control.
"""

from collections import deque
from typing import NamedTuple

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.protocols import amp

from pilotnet.control import commands
from pilotnet.driver.failures import translate_failure
from pilotnet.errors import INVALID_ARGUMENT, PilotError
from pilotnet.wire.eventstream import encode_event, split_events

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


class Publisher:
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
            error = translate_failure(failure)
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
