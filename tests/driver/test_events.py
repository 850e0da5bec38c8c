"""Publish/subscribe through the SDK, against the daemon's real control protocol and event broker.

The node behind the control socket is a stand-in holding only what the
event commands use (the broker, and streams to release on disconnect), so
these tests cover the AMP commands, the responders and the SDK together.
"""

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThread
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pilotnet.control.schema import LongBytes
from pilotnet.daemon import control
from pilotnet.daemon.control import ControlFactory
from pilotnet.driver import blocking, client, commands, events as sdk_events
from pilotnet.errors import INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, TIMEOUT, PilotError
from pilotnet.services.eventstream import EventBroker
from pilotnet.wire.eventstream import MAX_PAYLOAD, encode_event, split_events
from tests.driver.support import WAIT, bounded


class _Streams:
    def release(self, owner):
        pass


class _Node:
    def __init__(self, queue_limit):
        self.events = EventBroker(queue_limit=queue_limit)
        self.streams = _Streams()


class ControlSocketMixin:
    """A real control server on a Unix socket in front of a stand-in node with a real broker."""

    queue_limit = 4 * 1024 * 1024

    async def _start(self):
        directory = tempfile.mkdtemp(prefix="pilot-events-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.socket_path = os.path.join(directory, "pilot.sock")
        self.node = _Node(self.queue_limit)
        self.factory = ControlFactory(self.node, reactor)
        self.port = await UNIXServerEndpoint(reactor, self.socket_path).listen(self.factory)
        self.addCleanup(self.port.stopListening)

    async def _client(self):
        daemon = await bounded(client.connect(reactor, self.socket_path))
        self.addCleanup(daemon.close)
        return daemon

    def local_patterns_change(self):
        """Fires (once) when the broker's set of local patterns next changes: a client's first
        subscription to a pattern, or the last one to it gone; the event to wait on instead of polling."""
        changed = Deferred()

        def fire():
            self.node.events.on_local_patterns_changed = None
            changed.callback(self.node.events.local_patterns())

        self.node.events.on_local_patterns_changed = fire
        return bounded(changed)


class EventStreamTests(ControlSocketMixin, TestCase):
    async def test_wildcard_delivery_and_no_echo_to_the_publisher(self):
        await self._start()
        alice, bob = await self._client(), await self._client()
        published = alice.open_event_stream()
        own = await published.subscribe("metrics.*").ready
        metrics = await bob.open_event_stream().subscribe("metrics.*").ready
        exact = await bob.open_event_stream().subscribe("metrics.cpu").ready
        self.assertEqual(await published.publish("metrics.cpu.load", b"0.5"), 1)
        self.assertEqual(await published.publish("metrics.cpu", "42"), 2)
        self.assertEqual(await published.publish("metrics", b"nobody"), 0)
        self.assertEqual(await bounded(metrics.get()), client.Event("metrics.cpu.load", b"0.5"))
        self.assertEqual(await bounded(metrics.get()), client.Event("metrics.cpu", b"42"))
        self.assertEqual(await bounded(exact.get()), client.Event("metrics.cpu", b"42"))
        self.assertEqual(len(own._events), 0)
        await exact.close()
        self.assertIsNone(await exact.get())
        self.assertEqual(await published.publish("metrics.cpu", b"1"), 1)

    async def test_async_iteration_ends_at_close(self):
        await self._start()
        alice, bob = await self._client(), await self._client()
        subscription = await bob.open_event_stream().subscribe("*").ready
        for n in range(3):
            await alice.open_event_stream().publish(f"t.{n}", b"x")
        seen = []
        async for event in subscription:
            seen.append(event.topic)
            if len(seen) == 3:
                await subscription.close()
        self.assertEqual(seen, ["t.0", "t.1", "t.2"])
        self.assertEqual(len(self.node.events.subscribers), 0)

    async def test_disconnect_removes_the_subscriptions_and_fails_readers(self):
        await self._start()
        bob = await bounded(client.connect(reactor, self.socket_path))
        subscription = await bob.open_event_stream().subscribe("a.*").ready
        waiting = subscription.get()
        self.assertEqual(self.node.events.local_patterns(), {"a.*"})
        forgotten = self.local_patterns_change()
        await bob.close()
        error = await self.assertFailure(bounded(waiting), PilotError)
        self.assertEqual(error.code, NOT_RUNNING)
        self.assertEqual(await forgotten, set())  # once the daemon notices the disconnect
        self.assertEqual(self.node.events.subscribers, set())

    async def test_stalled_subscriber_drops_only_its_own_events(self):
        """A subscriber that stops reading loses events itself; the publisher and others carry on."""
        self.patch(sdk_events, "EVENT_BUFFER_LIMIT", 4)
        self.queue_limit = 10 * 1100  # room in the broker for ten events beyond the client's four
        await self._start()
        publisher, stalled, healthy = await self._client(), await self._client(), await self._client()
        stuck = await stalled.open_event_stream().subscribe("load").ready
        reading = await healthy.open_event_stream().subscribe("load").ready
        events = publisher.open_event_stream()
        total = 200
        for n in range(total):
            await bounded(events.publish("load", bytes([n % 256]) * 1024))
            self.assertEqual((await bounded(reading.get())).data[0], n % 256)
        records = {r["subscriber"]: r for r in self.node.events.stats()["subscribers"]}
        self.assertGreater(records[f"local subscription {stuck.id}"]["dropped"], total // 2)
        self.assertEqual(records[f"local subscription {reading.id}"]["dropped"], 0)
        first = await bounded(stuck.get())
        self.assertEqual(first.data[0], 0)

    async def test_blocking_api_has_the_same_shape(self):
        """``for event in stream.subscribe(pattern)`` in a plain thread, as scripts use it."""
        def agent():
            with blocking.connect(self.socket_path, timeout=WAIT) as daemon:
                stream = daemon.open_event_stream()
                seen = []
                with stream.subscribe("metrics.*") as subscription:
                    publisher = blocking.connect(self.socket_path, timeout=WAIT)
                    publisher.open_event_stream().publish("metrics.cpu", b"42")
                    publisher.open_event_stream().publish("metrics.cpu.load", "0.5")
                    publisher.close()
                    for event in subscription:
                        seen.append((event.topic, event.data))
                        if len(seen) == 2:
                            break
                    with self.assertRaises(PilotError) as raised:
                        subscription.get(timeout=0.05)
                    self.assertEqual(raised.exception.code, TIMEOUT)
                return seen, daemon.event_stats()["published"]

        await self._start()
        seen, published = await bounded(deferToThread(agent))
        self.assertEqual(seen, [("metrics.cpu", b"42"), ("metrics.cpu.load", b"0.5")])
        self.assertEqual(published, 2)

    async def test_blocking_publish_without_waiting(self):
        """``publish(..., wait=False)`` returns without the daemon's answer; close() still sends everything."""
        def agent():
            with blocking.connect(self.socket_path, timeout=WAIT) as daemon:
                with daemon.open_event_stream().subscribe("fast") as subscription:
                    publisher = blocking.connect(self.socket_path, timeout=WAIT)
                    events = publisher.open_event_stream()
                    returned = {events.publish("fast", b"%d" % n, wait=False) for n in range(500)}
                    with self.assertRaises(PilotError) as raised:
                        events.publish("x" * 2000, b"", wait=False)
                    publisher.close()
                    received = [subscription.get(timeout=WAIT).data for _ in range(500)]
                return returned, received, raised.exception.code

        await self._start()
        returned, received, code = await bounded(deferToThread(agent))
        self.assertEqual(returned, {None})
        self.assertEqual(received, [b"%d" % n for n in range(500)])
        self.assertEqual(code, INVALID_ARGUMENT)

    async def test_closing_sends_the_events_published_before(self):
        await self._start()
        alice, bob = await self._client(), await self._client()
        subscription = await bob.open_event_stream().subscribe("last").ready
        events = alice.open_event_stream()
        publishing = [events.publish("last", b"x" * 1000) for _ in range(1000)]  # beyond the window
        await bounded(alice.close())
        self.assertEqual(await bounded(gatherResults(publishing)), [1] * 1000)
        self.assertEqual(len([await bounded(subscription.get()) for _ in range(1000)]), 1000)

    async def test_refusals_carry_codes(self):
        await self._start()
        daemon = await self._client()
        events = daemon.open_event_stream()
        error = await self.assertFailure(events.subscribe("").ready, PilotError)
        self.assertEqual(error.code, INVALID_ARGUMENT)
        error = await self.assertFailure(events.publish("x" * 2000, b""), PilotError)
        self.assertEqual(error.code, INVALID_ARGUMENT)
        error = await self.assertFailure(daemon._call(client.commands.Unsubscribe, subscription=99),
                                         PilotError)
        self.assertEqual(error.code, NOT_FOUND)

    async def test_burst_is_batched_in_order_with_per_event_results(self):
        """Publishes in one reactor iteration share a PublishBatch; each still gets its own count or error."""
        await self._start()
        alice, bob = await self._client(), await self._client()
        subscription = await bob.open_event_stream().subscribe("burst.*").ready
        events = alice.open_event_stream()
        publishing = [events.publish(f"burst.{n}", b"%d" % n) for n in range(300)]
        refused = events.publish("", b"no topic")  # passes the SDK, refused by the daemon alone
        publishing += [events.publish(f"burst.{n}", b"%d" % n) for n in range(300, 600)]
        error = await self.assertFailure(bounded(refused), PilotError)
        self.assertEqual(error.code, INVALID_ARGUMENT)
        self.assertEqual(await bounded(gatherResults(publishing)), [1] * 600)
        seen = [await bounded(subscription.get()) for _ in range(600)]
        self.assertEqual([event.topic for event in seen], [f"burst.{n}" for n in range(600)])
        self.assertEqual(seen[599].data, b"599")
        self.assertEqual(self.node.events.published, 600)

    async def test_burst_to_a_stalled_subscriber_drops_only_its_events(self):
        """Coalesced pushes keep backpressure: a stalled reader's batches stay queued, then overflow for it alone."""
        self.patch(sdk_events, "EVENT_BUFFER_LIMIT", 4)
        self.queue_limit = 20 * 1100
        await self._start()
        publisher, stalled, healthy = await self._client(), await self._client(), await self._client()
        stuck = await stalled.open_event_stream().subscribe("load").ready
        reading = await healthy.open_event_stream().subscribe("load").ready
        events = publisher.open_event_stream()
        total = 400
        for start in range(0, total, 10):  # bursts smaller than the broker queue, so "healthy" keeps up
            await bounded(gatherResults([events.publish("load", (b"%04d" % n) * 256)
                                         for n in range(start, start + 10)]))
            for n in range(start, start + 10):
                self.assertEqual((await bounded(reading.get())).data[:4], b"%04d" % n)
        records = {r["subscriber"]: r for r in self.node.events.stats()["subscribers"]}
        self.assertGreater(records[f"local subscription {stuck.id}"]["dropped"], total // 2)
        self.assertEqual(records[f"local subscription {reading.id}"]["dropped"], 0)
        self.assertEqual((await bounded(stuck.get())).data[:4], b"0000")


class LargeAndBatchedEventTests(ControlSocketMixin, TestCase):
    async def test_large_events_cross_the_control_socket_both_ways(self):
        """Events beyond one AMP value (65,535 bytes), up to the framing's 16 MiB, are published and pushed."""
        await self._start()
        alice, bob = await self._client(), await self._client()
        subscription = await bob.open_event_stream().subscribe("big.*").ready
        events = alice.open_event_stream()
        sizes = [1 << 20, 70000, 10, MAX_PAYLOAD]
        payloads = [bytes([n]) * size for n, size in enumerate(sizes)]
        reached = await bounded(gatherResults([events.publish(f"big.{n}", p) for n, p in enumerate(payloads)]))
        self.assertEqual(reached, [1, 1, 1, 1])
        for n, payload in enumerate(payloads):
            self.assertEqual(await bounded(subscription.get()), client.Event(f"big.{n}", payload))
        error = await self.assertFailure(events.publish("big.x", b"x" * (MAX_PAYLOAD + 1)), PilotError)
        self.assertEqual(error.code, INVALID_ARGUMENT)

    async def test_a_burst_goes_in_batches_under_the_value_limit(self):
        batches = []

        def recording(events, **options):
            batches.append(len(events))
            return split_events(events, **options)

        self.patch(control, "split_events", recording)
        await self._start()
        alice, bob = await self._client(), await self._client()
        subscription = await bob.open_event_stream().subscribe("burst").ready
        events = alice.open_event_stream()
        payloads = [b"%05d" % n * 20 for n in range(3000)]  # 100 bytes each, ~320 KB framed
        reached = await bounded(gatherResults([events.publish("burst", p) for p in payloads]))
        self.assertEqual(reached, [1] * 3000)
        self.assertGreater(len(batches), 3)
        self.assertTrue(all(size <= sdk_events.PUBLISH_BATCH_LIMIT for size in batches), batches)
        self.assertEqual(sum(batches), sum(len(encode_event("burst", p)) for p in payloads))
        self.assertEqual([(await bounded(subscription.get())).data for _ in payloads], payloads)


class StalledDaemon(amp.AMP):
    """A daemon that answers PublishBatch only when the test says so."""

    def __init__(self):
        super().__init__()
        self.batches = []
        self._arrival = None

    def next_batch(self):
        """Fires when the next batch arrives: what a test waits on instead of polling."""
        self._arrival = Deferred()
        return self._arrival

    @commands.PublishBatch.responder
    def publish_batch(self, events):
        answer = Deferred()
        self.batches.append((split_events(events), answer))
        arrival, self._arrival = self._arrival, None
        if arrival is not None:
            arrival.callback(None)
        return answer

    def answer_next(self):
        events, answer = self.batches.pop(0)
        answer.callback({"results": [len(topic) for topic, _ in events]})


class PublisherFlowControlTests(TestCase):
    """The SDK side of publishing: a bounded window of batches, and drain() as the publisher's backpressure."""

    async def _connect(self):
        directory = tempfile.mkdtemp(prefix="pilot-events-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "pilot.sock")
        self.daemons = []
        accepted = Deferred()

        def build():
            self.daemons.append(StalledDaemon())
            if not accepted.called:
                accepted.callback(None)
            return self.daemons[-1]

        port = await UNIXServerEndpoint(reactor, path).listen(Factory.forProtocol(build))
        self.addCleanup(port.stopListening)
        daemon = await bounded(client.connect(reactor, path))
        self.addCleanup(daemon.close)
        await bounded(accepted)
        return daemon

    async def test_window_and_drain(self):
        daemon = await self._connect()
        events = daemon.open_event_stream()
        payload = b"x" * 1000
        per_batch = sdk_events.PUBLISH_BATCH_LIMIT // len(encode_event("t", payload))
        total = per_batch * (sdk_events.PUBLISH_WINDOW + 12)
        publishing = [events.publish("t", payload) for _ in range(total)]
        draining = events.drain()
        stalled = self.daemons[0]
        while len(stalled.batches) < sdk_events.PUBLISH_WINDOW:
            await bounded(stalled.next_batch())
        self.assertEqual(len(stalled.batches), sdk_events.PUBLISH_WINDOW)  # the rest wait in the SDK
        self.assertFalse(draining.called)  # far more than PUBLISH_HIGH_WATER is unanswered
        while not publishing[-1].called:
            self.assertLessEqual(len(stalled.batches), sdk_events.PUBLISH_WINDOW)
            if stalled.batches:
                stalled.answer_next()
            else:  # the SDK sends its next batch once an answer reaches it, or is done
                await bounded(DeferredList([stalled.next_batch(), publishing[-1]], fireOnOneCallback=True))
            if draining.called:
                self.assertTrue(events.drain().called)
        self.assertTrue(draining.called)
        self.assertEqual(await bounded(gatherResults(publishing)), [1] * total)

    async def test_losing_the_daemon_fails_waiting_publishes(self):
        daemon = await self._connect()
        events = daemon.open_event_stream()
        publishing = [events.publish("t", b"x" * 1000) for _ in range(2000)]  # far beyond the window
        await bounded(self.daemons[0].next_batch())
        self.daemons[0].transport.loseConnection()
        for publish in (publishing[0], publishing[-1]):
            error = await self.assertFailure(bounded(publish), PilotError)
            self.assertEqual(error.code, NOT_RUNNING)
        await bounded(gatherResults(publishing, consumeErrors=True).addErrback(lambda _: None))
        await bounded(daemon.disconnected)
        error = await self.assertFailure(events.drain(), PilotError)
        self.assertEqual(error.code, NOT_RUNNING)


class LongBytesTests(SynchronousTestCase):
    def round_trip(self, data):
        argument, strings, objects = commands.SchemaArgument(LongBytes()), amp.AmpBox(), {}
        argument.toBox(b"events", strings, {"events": data}, None)
        self.assertTrue(all(len(value) <= amp.MAX_VALUE_LENGTH for value in strings.values()))
        strings.serialize()  # AMP accepts every key and value
        argument.fromBox(b"events", strings, objects, None)
        self.assertEqual(objects["events"], data)
        return strings

    def test_small_data_is_one_plain_value(self):
        for data in (b"", b"x", b"y" * amp.MAX_VALUE_LENGTH):
            self.assertEqual(dict(self.round_trip(data)), {b"events": data})

    def test_larger_data_continues_in_numbered_keys(self):
        data = bytes(range(256)) * 1000
        strings = self.round_trip(data)
        self.assertEqual(sorted(strings), [b"events", b"events.1", b"events.2", b"events.3"])
