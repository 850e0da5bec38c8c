"""The event broker: documented topic matching, publisher exclusion, bounded queues, the port-1002 framing."""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.services.eventstream import EventBroker, EventStreamService, Subscriber
from pilotnet.wire.eventstream import EventDecoder, encode_event, split_events
from tests.services.test_dataexchange import FakeStream, FakeStreams


def collector(name, pattern, inbox):
    def deliver(frames):
        inbox.extend((name, topic, payload) for topic, payload in split_events(b"".join(frames)))
    return Subscriber(pattern, name, deliver)


class BrokerTests(SynchronousTestCase):
    def setUp(self):
        self.broker = EventBroker(queue_limit=100)
        self.inbox = []

    def test_patterns_as_documented(self):
        for name, pattern in (("all", "*"), ("metrics", "metrics.*"), ("cpu", "metrics.cpu"),
                              ("done", "pipeline.*.complete")):
            self.broker.subscribe(collector(name, pattern, self.inbox))
        self.broker.publish("metrics.cpu", b"1")
        self.broker.publish("metrics.cpu.load", b"2")
        self.broker.publish("metrics", b"3")
        self.broker.publish("pipeline.build.complete", b"4")
        got = sorted((name, payload) for name, _, payload in self.inbox)
        self.assertEqual(got, [("all", b"1"), ("all", b"2"), ("all", b"3"), ("all", b"4"),
                               ("cpu", b"1"), ("done", b"4"), ("metrics", b"1"), ("metrics", b"2")])

    def test_publisher_does_not_receive_its_own_event(self):
        me = self.broker.subscribe(collector("me", "*", self.inbox))
        self.broker.subscribe(collector("other", "*", self.inbox))
        self.assertEqual(self.broker.publish("t", b"x", publisher=me), 1)
        self.assertEqual([name for name, _, _ in self.inbox], ["other"])

    def test_slow_subscriber_overflows_alone(self):
        waiting = []

        def slow(frames):
            taken = defer.Deferred()
            waiting.append(taken)
            return taken

        slow_one = self.broker.subscribe(Subscriber("*", "slow", slow))
        self.broker.subscribe(collector("fast", "*", self.inbox))
        for _ in range(10):
            self.broker.publish("t", b"x" * 30)
        self.assertEqual(len(self.inbox), 10)
        self.assertEqual(slow_one.delivered, 2)
        self.assertEqual(slow_one.dropped, 8)
        for taken in waiting:
            taken.callback(None)
        self.assertEqual(slow_one.pending, 0)
        self.broker.publish("t", b"x")
        self.assertEqual(slow_one.delivered, 3)

    def test_a_batch_is_one_delivery_per_subscriber_with_per_event_counts(self):
        bursts = []
        me = self.broker.subscribe(collector("me", "metrics.*", self.inbox))
        self.broker.subscribe(Subscriber("metrics.*", "bursts", bursts.append))
        self.broker.subscribe(Subscriber("metrics.cpu", "cpu", bursts.append))
        events = [(topic, encode_event(topic, b"%d" % n))
                  for n, topic in enumerate(["metrics.cpu", "metrics.mem", "logs", "metrics.cpu"])]
        self.assertEqual(self.broker.publish_frames(events, publisher=[me]), [2, 1, 0, 2])
        self.assertEqual(sorted(bursts), sorted([[events[0][1], events[1][1], events[3][1]],
                                                 [events[0][1], events[3][1]]]))
        self.assertEqual(self.inbox, [])
        self.assertEqual(self.broker.published, 4)

    def test_an_empty_queue_takes_an_event_larger_than_its_limit(self):
        waiting = []

        def slow(frames):
            waiting.append(defer.Deferred())
            return waiting[-1]

        slow_one = self.broker.subscribe(Subscriber("t", "slow", slow, local=True))
        self.assertEqual(self.broker.publish("t", b"x" * 500), 1)
        self.assertEqual(self.broker.publish("t", b"x" * 500), 0)
        self.broker.deliver_forwarded("t", [encode_event("t", b"x" * 500)])
        self.assertEqual((slow_one.delivered, slow_one.dropped), (1, 2))
        waiting[0].callback(None)
        self.broker.deliver_forwarded("t", [encode_event("t", b"x" * 500), encode_event("t", b"x")])
        self.assertEqual((slow_one.delivered, slow_one.dropped), (2, 3))

    def test_forwarded_events_fill_the_queue_then_drop(self):
        waiting = []

        def slow(frames):
            waiting.append((frames, defer.Deferred()))
            return waiting[-1][1]

        slow_one = self.broker.subscribe(Subscriber("t", "slow", slow, local=True))
        frames = [encode_event("t", b"x" * 30) for _ in range(5)]  # 37 bytes each; the queue holds 100
        self.broker.deliver_forwarded("t", frames)
        self.assertEqual((slow_one.delivered, slow_one.dropped, slow_one.pending), (2, 3, 74))
        self.assertEqual(waiting[0][0], frames[:2])
        waiting[0][1].callback(None)
        self.assertEqual(slow_one.pending, 0)
        self.broker.deliver_forwarded("t", frames[:2])
        self.assertEqual(len(waiting), 2)
        self.assertEqual(waiting[1][0], frames[:2])
        self.broker.deliver_forwarded("other", frames)
        self.assertEqual(len(waiting), 2)

    def test_unsubscribe(self):
        subscriber = self.broker.subscribe(collector("gone", "*", self.inbox))
        self.broker.unsubscribe(subscriber)
        self.broker.unsubscribe(subscriber)
        self.assertEqual(self.broker.publish("t", b"x"), 0)


class ServiceTests(SynchronousTestCase):
    def setUp(self):
        self.streams = FakeStreams()
        self.broker = EventBroker()
        self.service = EventStreamService(self.streams, self.broker)
        for conn_id in (1, 2, 3):
            self.service.stream_accepted(1002, FakeStream(conn_id))

    def events_to(self, conn_id):
        return [(e.topic, e.payload) for e in EventDecoder().feed(bytes(self.streams.written.get(conn_id, b"")))]

    def test_first_event_subscribes_later_ones_publish(self):
        self.service.stream_data(1, encode_event("metrics.*"))
        self.service.stream_data(2, encode_event("alerts"))
        self.service.stream_data(3, encode_event("metrics.cpu") + encode_event("metrics.cpu", b"0.42"))
        self.assertEqual(self.events_to(1), [("metrics.cpu", b"0.42")])
        self.assertEqual(self.events_to(2), [])
        self.assertEqual(self.events_to(3), [])

    def test_events_split_across_segments(self):
        self.service.stream_data(1, encode_event("t"))
        wire = encode_event("t") + encode_event("t", b"payload")
        for byte in wire:
            self.service.stream_data(2, bytes([byte]))
        self.assertEqual(self.events_to(1), [("t", b"payload")])

    def test_malformed_stream_is_closed_and_unsubscribed(self):
        self.service.stream_data(1, encode_event("t"))
        self.service.stream_data(1, b"\xff\xff" + b"x" * 10)
        self.assertEqual(self.streams.closed, [1])
        self.assertEqual(self.broker.publish("t", b"x"), 0)

    def test_closing_unsubscribes(self):
        self.service.stream_data(1, encode_event("t"))
        self.service.stream_closed(1, "", "")
        self.assertEqual(self.broker.publish("t", b"x"), 0)
