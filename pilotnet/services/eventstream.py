"""The event stream broker on port 1002: publish/subscribe between agents.

The broker holds subscriptions (:class:`Subscriber` objects: a pattern and a
way to deliver) in a :class:`~pilotnet.wire.topics.SubscriptionIndex`, so a
published event reaches every matching subscriber in one walk over its topic,
never its own publisher, and each subscriber once.

Peers speak the reference's framing on port 1002 (:class:`EventStreamService`):
the first event on a connection is its subscription, every later one a
publish.  Local agents subscribe and publish through the control socket with
the same :class:`Subscriber` interface.

A slow subscriber never blocks the others: each has a bounded queue of bytes
not yet accepted by its stream; an event that would overflow it is dropped
for that subscriber only and counted (``dropped``), visible in the stats.
"""

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.daemon.streams import IStreamOwner
from pilotnet.errors import PilotError
from pilotnet.wire.address import PORT_EVENT_STREAM
from pilotnet.wire.eventstream import EventDecoder, encode_event
from pilotnet.wire.topics import SubscriptionIndex

log = Logger()

# Bytes of events a subscriber may have waiting before new ones are dropped for it.
SUBSCRIBER_QUEUE_LIMIT = 4 * 1024 * 1024


class Subscriber:
    """One subscription: a pattern, a description for stats, and a delivery function.

    ``deliver(topic, payload, encoded)`` returns a Deferred that fires when the
    event has been taken (or None when it was taken at once); ``encoded`` is
    the event's wire form, shared by every stream subscriber.
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
        """Hand the event to every matching subscriber but the publisher's; returns how many took it.

        ``publisher`` is the publishing stream's subscriber, or the collection
        of a local client's subscribers (a client may hold several, and none
        of them gets its own events back).
        """
        self.published += 1
        if publisher is None or isinstance(publisher, Subscriber):
            publisher = () if publisher is None else (publisher,)
        return self._hand_out(self.index.match(topic), topic, payload, publisher)

    def deliver_forwarded(self, pattern, topic, payload):
        """An event a peer's broker forwarded for our subscription ``pattern``.

        It goes only to local clients subscribed with exactly that pattern:
        each pattern has its own subscription at the peer, so a client whose
        pattern also matched another subscription's event gets it once, and
        nothing forwarded is ever forwarded again (no loops between brokers).
        """
        return self._hand_out(self._local_by_pattern.get(pattern, ()), topic, payload, ())

    def _hand_out(self, subscribers, topic, payload, excluded):
        encoded = None
        reached = 0
        for subscriber in subscribers:
            if subscriber in excluded:
                continue
            if encoded is None:
                encoded = encode_event(topic, payload)
            size = len(encoded)
            if subscriber.pending + size > self.queue_limit:
                subscriber.dropped += 1
                continue
            subscriber.pending += size
            subscriber.delivered += 1
            reached += 1
            taken = subscriber.deliver(topic, payload, encoded)
            if taken is None:
                subscriber.pending -= size
            else:
                taken.addBoth(self._taken, subscriber, size)
        return reached

    @staticmethod
    def _taken(result, subscriber, size):
        subscriber.pending -= size
        return None

    def stats(self):
        return {"published": self.published,
                "subscribers": [s.describe() for s in self.subscribers]}


class _Connection:
    """One peer's stream to the broker: its decoder and, once it sent one, its subscription."""

    __slots__ = ("decoder", "subscriber")

    def __init__(self):
        self.decoder = EventDecoder()
        self.subscriber = None


@implementer(IStreamOwner)
class EventStreamService:
    def __init__(self, streams, broker, port=PORT_EVENT_STREAM):
        self.streams = streams
        self.broker = broker
        self._connections = {}
        # Events for each stream subscriber, written together after this
        # reactor iteration: one write (one segment under nodelay) per burst
        # rather than per event.  Streams without a clock (tests' fakes) get
        # each event written at once.
        self._clock = getattr(streams, "clock", None)
        self._outgoing = {}
        streams.bind(port, self)

    def stream_accepted(self, port, stream):
        # Events are small and wanted now: holding them back for Nagle's 40 ms
        # would be the whole of their latency.
        stream.conn.nodelay = True
        self._connections[stream.conn_id] = _Connection()

    def stream_data(self, conn_id, data):
        connection = self._connections.get(conn_id)
        if connection is None:
            return None
        try:
            events = connection.decoder.feed(data)
        except PilotError as error:
            log.info("event stream connection {conn} refused: {reason}", conn=conn_id, reason=error.message)
            self._drop(conn_id)
            return None
        for event in events:
            if connection.subscriber is None:
                connection.subscriber = self.broker.subscribe(Subscriber(
                    event.topic, f"stream {conn_id}", self._writer(conn_id)))
            else:
                self.broker.publish(event.topic, event.payload, connection.subscriber)
        return None

    def _writer(self, conn_id):
        def deliver(topic, payload, encoded):
            if self._clock is None:
                return self._write(conn_id, encoded)
            batch = self._outgoing.get(conn_id)
            if batch is None:
                if not self._outgoing:
                    self._clock.callLater(0, self._write_pending)
                batch = self._outgoing[conn_id] = ([], defer.Deferred())
            batch[0].append(encoded)
            return batch[1]  # fires when the whole burst was taken, releasing its bytes in the broker
        return deliver

    def _write_pending(self):
        pending, self._outgoing = self._outgoing, {}
        for conn_id, (parts, taken) in pending.items():
            writing = self._write(conn_id, b"".join(parts))
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
        try:
            self.streams.close(conn_id)
        except PilotError:
            pass
