"""Store writes off the reactor: replies wait for their commit, commits group, order holds."""

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from pilotnet.registry.directory import Directory
from pilotnet.registry.framing import FrameDecoder, encode_message
from pilotnet.registry.handlers import Registry
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.server import RegistryFactory, RegistryServer
from pilotnet.registry.store import ACKNOWLEDGED_PER_TURN, RegistryStore
from tests.registry.fixtures import PEER, identity


class _Writer:
    """A writer that runs each commit only when the test says so."""

    def __init__(self):
        self.jobs = []

    def __call__(self, work):
        done = Deferred()
        self.jobs.append((work, done))
        return done

    def finish(self):
        work, done = self.jobs.pop(0)
        try:
            result = work()
        except Exception:
            done.errback()
        else:
            done.callback(result)


def _stored(store):
    directory = Directory()
    store.load_into(directory)
    return directory


class WriterTests(TestCase):
    def setUp(self):
        self.writer = _Writer()
        self.path = os.path.join(self.mktemp(), "registry.db")
        self.store = RegistryStore(self.path, run=self.writer)
        self.addCleanup(self.store.close)

    def test_a_big_transaction_is_acknowledged_a_slice_per_reactor_turn(self):
        # A thousand registrations in one transaction must not hold the reactor for all
        # their replies at once: heartbeats are answered between the slices.
        clock = Clock()
        store = RegistryStore(os.path.join(self.mktemp(), "registry.db"), run=self.writer,
                              call_later=clock.callLater)
        self.addCleanup(store.close)
        fired = []
        store.commit([("key", "first", 0)]).addCallback(lambda _: fired.append(0))
        for number in range(1, ACKNOWLEDGED_PER_TURN * 2 + 1):
            store.commit([("key", str(number), number)]).addCallback(
                lambda _, number=number: fired.append(number))
        self.writer.finish()
        self.writer.finish()
        # The first transaction's one, then a slice of the second's.
        self.assertEqual(fired, list(range(ACKNOWLEDGED_PER_TURN + 1)))
        clock.advance(0)
        self.assertEqual(fired, list(range(ACKNOWLEDGED_PER_TURN * 2 + 1)))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_changes_arriving_during_a_commit_share_the_next_transaction(self):
        first = self.store.commit([("key", "a", 1)])
        second = self.store.commit([("key", "b", 2), ("key", "c", 3)])
        third = self.store.commit([("key", "c", None), ("key", "b", 4)])
        self.assertEqual(len(self.writer.jobs), 1)
        self.writer.finish()
        self.assertIsNone(self.successResultOf(first))
        self.assertNoResult(second)
        self.assertEqual(len(self.writer.jobs), 1)  # one transaction for both
        self.writer.finish()
        self.successResultOf(second)
        self.successResultOf(third)
        # The latest value of each entity won, the deletion included.
        self.assertEqual(_stored(self.store).key_index, {"a": 1, "b": 4})

    def test_a_failed_commit_fails_every_request_in_it(self):
        self.store.commit([("key", "a", 1)])
        broken = self.store.commit([("no such kind", "x", object())])
        self.writer.finish()
        self.writer.finish()
        self.failureResultOf(broken, TypeError)
        later = self.store.commit([("key", "b", 2)])
        self.writer.finish()
        self.successResultOf(later)

    def server(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        registry = Registry(Directory(), register_limiter=RateLimiter(burst=100, window=60.0))
        server = RegistryServer(registry, self.clock, self.store)
        self.committed = []
        server.commit_observers.append(self.committed.append)
        return server

    def test_reply_only_after_commit_reads_answered_from_memory(self):
        server = self.server()
        who = identity(1)
        registering = server.answer(json.dumps(
            {"type": "register", "public_key": who.public_key_b64}).encode(), PEER)
        self.assertNoResult(registering)
        self.assertEqual(self.committed, [])
        # A read does not wait for the commit in flight.
        lookup = self.successResultOf(server.answer(b'{"type":"lookup","node_id":1}', PEER))
        self.assertEqual(lookup["type"], "lookup_ok")
        self.writer.finish()
        self.assertEqual(self.successResultOf(registering)["node_id"], 1)
        self.assertEqual(_stored(self.store).nodes[1].public_key, who.public_key_b64)
        # Observers (and standbys) heard of the node only once it was committed.
        self.assertEqual([kind for changes in self.committed for kind, _, _ in changes
                          if kind == "node"], ["node"])

    def test_replies_leave_a_connection_in_request_order(self):
        factory = RegistryFactory(self.server())
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        register = {"type": "register", "public_key": identity(1).public_key_b64}
        protocol.dataReceived(encode_message(register) + b'\x00\x00\x00\x1d'
                              b'{"type":"lookup","node_id":1}')
        self.assertEqual(transport.value(), b"")  # the lookup waits behind the register
        self.writer.finish()
        replies = [json.loads(body) for body in FrameDecoder().feed(transport.value())]
        self.assertEqual([reply["type"] for reply in replies], ["register_ok", "lookup_ok"])

    def test_housekeeping_flushes_last_seen_through_the_writer(self):
        server = self.server()
        who = identity(1)
        server.answer(json.dumps({"type": "register", "public_key": who.public_key_b64}).encode(),
                      PEER)
        self.writer.finish()
        server.registry.directory.touch(server.registry.directory.nodes[1], 1_700_000_030)
        flushed = server.housekeeping()
        self.assertNoResult(flushed)
        self.writer.finish()
        self.successResultOf(flushed)
        self.assertEqual(_stored(self.store).nodes[1].last_seen, 1_700_000_030)


class WriterThreadTests(TestCase):
    def test_commits_in_the_writer_thread_then_shutdown(self):
        path = os.path.join(self.mktemp(), "registry.db")
        store = RegistryStore(path)
        store.use_thread(reactor)
        first = store.commit([("key", "a", 1)])
        store.commit([("key", "b", 2)])

        def check(_):
            reopened = RegistryStore(path)
            self.addCleanup(reopened.close)
            self.assertEqual(_stored(reopened).key_index, {"a": 1, "b": 2})

        return first.addCallback(lambda _: store.shutdown()).addCallback(check)
