"""The event stream broker on port 1002: publish/subscribe between agents.

The broker holds subscriptions (:class:`Subscriber` objects: a pattern and a
way to deliver) in a :class:`~pilotnet.wire.topics.SubscriptionIndex`, so a
published event reaches every matching subscriber in one walk over its topic,
never its own publisher, and each subscriber once.

Peers speak the reference's framing on port 1002 (:class:`EventStreamService`):
the first event on a connection is its subscription, every later one a
publish.  Local agents subscribe and publish through the control socket with
the same :class:`Subscriber` interface.

Events move in batches, as they arrive (a stream chunk, a ``PublishBatch``),
and as their wire frames: the broker hands each subscriber one list of frames
per batch and never decodes payloads or encodes events again, because at tens
of thousands of events a second every per-event call, Deferred and copy is
what the daemon's time goes to.

A slow subscriber never blocks the others: each has a bounded queue of bytes
not yet accepted by its stream; an event that would overflow it is dropped
for that subscriber only and counted (``dropped``), visible in the stats.  An
empty queue takes any event, so events larger than the limit (the framing
allows 16 MiB) still reach a subscriber that keeps up.
"""

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.errors import PilotError
from pilotnet.interfaces import NO_EVENTS, IStreamOwner
from pilotnet.wire.address import PORT_EVENT_STREAM
from pilotnet.wire.eventstream import EventDecoder, encode_event
from pilotnet.wire.topics import SubscriptionIndex

log = Logger()

# Bytes of events a subscriber may have waiting before new ones are dropped for it.
SUBSCRIBER_QUEUE_LIMIT = 4 * 1024 * 1024


class Subscriber:
    """One subscription: a pattern, a description for stats, and a delivery function.

    ``deliver(frames)`` takes a list of events in their wire framing (as
    :func:`~pilotnet.wire.eventstream.encode_event` makes them), in order, and
    returns a Deferred that fires when they have been taken, or None when they
    were taken at once; until then their bytes count against the queue limit.
    """

    __slots__ = ("pattern", "name", "deliver", "local", "pending", "delivered", "dropped")

    def __init__(self, pattern, name, deliver, *, local=False):
        self.pattern = pattern
        self.name = name
        self.deliver = deliver
        #: A client of this daemon (through the control socket) rather than a peer's stream.
        self.local = local
        self.pending = 0
        self.delivered = 0
        self.dropped = 0

    def describe(self):
        return {"pattern": self.pattern, "subscriber": self.name, "delivered": self.delivered,
                "dropped": self.dropped, "queued_bytes": self.pending}


class EventBroker:
    def __init__(self, queue_limit=SUBSCRIBER_QUEUE_LIMIT):
        self.queue_limit = queue_limit
        self.index = SubscriptionIndex()
        self.subscribers = set()
        self.published = 0
        self._local_by_pattern = {}
        #: Called with no arguments whenever the set of local patterns changes.
        self.on_local_patterns_changed = None

    def subscribe(self, subscriber):
        self.index.add(subscriber.pattern, subscriber)
        self.subscribers.add(subscriber)
        if subscriber.local:
            holders = self._local_by_pattern.setdefault(subscriber.pattern, set())
            holders.add(subscriber)
            if len(holders) == 1:
                self._patterns_changed()
        return subscriber

    def unsubscribe(self, subscriber):
        if subscriber in self.subscribers:
            self.subscribers.discard(subscriber)
            self.index.remove(subscriber.pattern, subscriber)
            holders = self._local_by_pattern.get(subscriber.pattern)
            if subscriber.local and holders is not None:
                holders.discard(subscriber)
                if not holders:
                    del self._local_by_pattern[subscriber.pattern]
                    self._patterns_changed()

    def local_patterns(self):
        """Patterns local clients subscribe to: what this daemon asks its peers for."""
        return set(self._local_by_pattern)

    def _patterns_changed(self):
        if self.on_local_patterns_changed is not None:
            self.on_local_patterns_changed()

    def publish(self, topic, payload, publisher=None):
        """Publish one event; returns how many subscribers took it (see :meth:`publish_frames`)."""
        return self.publish_frames([(topic, encode_event(topic, payload))], publisher)[0]

    def publish_frames(self, events, publisher=None):
        """Hand ``(topic, frame)`` events to every matching subscriber but the publisher's.

        Returns, per event, how many subscribers took it.  ``publisher`` is the
        publishing stream's subscriber, or the collection of a local client's
        subscribers (a client may hold several, and none of them gets its own
        events back).  Each subscriber gets this batch's events in one
        ``deliver`` call; a topic's subscribers are looked up once per batch.
        """
        if publisher is None or isinstance(publisher, Subscriber):
            publisher = () if publisher is None else (publisher,)
        self.published += len(events)
        limit = self.queue_limit
        targets_of = {}
        bursts = {}
        reached = []
        for topic, frame in events:
            targets = targets_of.get(topic)
            if targets is None:
                targets = targets_of[topic] = [s for s in self.index.match(topic) if s not in publisher]
            size = len(frame)
            taken = 0
            for subscriber in targets:
                if subscriber.pending + size > limit and subscriber.pending:
                    subscriber.dropped += 1
                    continue
                subscriber.pending += size
                taken += 1
                burst = bursts.get(subscriber)
                if burst is None:
                    bursts[subscriber] = [frame]
                else:
                    burst.append(frame)
            reached.append(taken)
        for subscriber, frames in bursts.items():
            self._deliver(subscriber, frames, sum(map(len, frames)))
        return reached

    def deliver_forwarded(self, pattern, frames):
        """Events a peer's broker forwarded for our subscription ``pattern`` (wire frames, in order).

        They go only to local clients subscribed with exactly that pattern:
        each pattern has its own subscription at the peer, so a client whose
        pattern also matched another subscription's event gets it once, and
        nothing forwarded is ever forwarded again (no loops between brokers).
        """
        total = sum(map(len, frames))
        for subscriber in self._local_by_pattern.get(pattern, ()):
            if subscriber.pending + total <= self.queue_limit:
                subscriber.pending += total
                self._deliver(subscriber, frames, total)
                continue
            room = self.queue_limit - subscriber.pending
            taken = []
            for frame in frames:
                if len(frame) <= room or not (taken or subscriber.pending):
                    room -= len(frame)
                    taken.append(frame)
            subscriber.dropped += len(frames) - len(taken)
            if taken:
                size = sum(map(len, taken))
                subscriber.pending += size
                self._deliver(subscriber, taken, size)

    def _deliver(self, subscriber, frames, size):
        """Hand a burst over; its bytes (already counted in ``pending``) are released once it is taken."""
        subscriber.delivered += len(frames)
        taken = subscriber.deliver(frames)
        if taken is None:
            subscriber.pending -= size
        else:
            taken.addBoth(self._taken, subscriber, size)

    @staticmethod
    def _taken(result, subscriber, size):
        subscriber.pending -= size
        return None

    def stats(self):
        return {"published": self.published,
                "subscribers": [s.describe() for s in self.subscribers]}


class _Connection:
    """One peer's stream to the broker: its decoder and, once it sent one, its subscription."""

    __slots__ = ("decoder", "subscriber", "remote")

    def __init__(self, remote=None):
        self.decoder = EventDecoder()
        self.subscriber = None
        self.remote = remote


@implementer(IStreamOwner)
class EventStreamService:
    emitter = NO_EVENTS

    def __init__(self, streams, broker, port=PORT_EVENT_STREAM):
        self.streams = streams
        self.broker = broker
        self._connections = {}
        # Events for each stream subscriber, written together after this
        # reactor iteration: one write (one segment under nodelay) per burst
        # rather than per batch.  Streams without a clock (tests' fakes) get
        # each burst written at once.
        self._clock = getattr(streams, "clock", None)
        self._outgoing = {}
        streams.bind(port, self)

    def stream_accepted(self, port, stream):
        # Events are small and wanted now: holding them back for Nagle's 40 ms
        # would be the whole of their latency.
        stream.conn.nodelay = True
        self._connections[stream.conn_id] = _Connection(stream.remote)

    def stream_data(self, conn_id, data):
        connection = self._connections.get(conn_id)
        if connection is None:
            return None
        try:
            events = connection.decoder.feed_frames(data)
        except PilotError as error:
            log.info("event stream connection {conn} refused: {reason}", conn=conn_id, reason=error.message)
            self._drop(conn_id)
            return None
        if events and connection.subscriber is None:
            pattern, _ = events.pop(0)
            connection.subscriber = self.broker.subscribe(Subscriber(
                pattern, f"stream {conn_id}", self._writer(conn_id)))
            self.emitter.emit("pubsub.subscribed", topic=pattern, remote=connection.remote)
        if events:
            self.broker.publish_frames(events, connection.subscriber)
            for topic, frame in events if self.emitter.active else ():
                self.emitter.emit("pubsub.published", topic=topic, size=len(frame), **{"from": connection.remote})
        return None

    def _writer(self, conn_id):
        def deliver(frames):
            if self._clock is None:
                return self._write(conn_id, b"".join(frames))
            burst = self._outgoing.get(conn_id)
            if burst is None:
                if not self._outgoing:
                    self._clock.callLater(0, self._write_pending)
                burst = self._outgoing[conn_id] = ([], defer.Deferred())
            burst[0].extend(frames)
            return burst[1]  # fires when the whole burst was taken, releasing its bytes in the broker
        return deliver

    def _write_pending(self):
        pending, self._outgoing = self._outgoing, {}
        for conn_id, (frames, taken) in pending.items():
            writing = self._write(conn_id, b"".join(frames))
            if writing is None:
                taken.callback(None)
            else:
                writing.addBoth(lambda _, taken=taken: taken.callback(None))

    def _write(self, conn_id, data):
        try:
            return self.streams.write(conn_id, data, self)
        except PilotError:
            self._drop(conn_id)
            return None

    def stream_closed(self, conn_id, code, message):
        self._drop(conn_id)

    def datagram(self, src, src_port, dst_port, data):
        pass

    def _drop(self, conn_id):
        connection = self._connections.pop(conn_id, None)
        if connection is not None and connection.subscriber is not None:
            self.broker.unsubscribe(connection.subscriber)
            self.emitter.emit("pubsub.unsubscribed", topic=connection.subscriber.pattern, remote=connection.remote)
        try:
            self.streams.close(conn_id)
        except PilotError:
            pass
