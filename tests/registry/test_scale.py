"""What keeps a registry with a big directory responsive and small: a reaper with a
budget per tick, collections kept short, start-up that shares strings, writes
handled a slice per reactor turn."""

import gc
import json
import os
import struct

from hypothesis import given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.ratelimit import RateLimiter
from pilotnet.registry import handlers, server as server_module
from pilotnet.registry.challenges import signature_valid
from pilotnet.registry.collection import GrowthFreezer, collector_paused
from pilotnet.registry.directory import UNSET, Directory, Node
from pilotnet.registry.framing import FrameDecoder
from pilotnet.registry.handlers import Registry
from pilotnet.registry.server import RegistryFactory, RegistryServer
from pilotnet.registry.store import RegistryStore
from pilotnet.registry.turns import WriteTurns
from tests.registry.fixtures import DrivenRegistry, identity

STALE_AFTER = 300.0


def _directory_with(count, last_seen=0.0):
    directory = Directory()
    for node_id in range(1, count + 1):
        directory.nodes[node_id] = Node(node_id, f"key-{node_id}", last_seen=last_seen)
    return directory


class SweepTests(SynchronousTestCase):
    """``Directory.stale_nodes`` with a budget looks at that many nodes per call."""

    def test_a_budget_spreads_the_sweep_over_calls(self):
        directory = _directory_with(10)
        found = [directory.stale_nodes(1000.0, STALE_AFTER, budget=4) for _ in range(3)]
        self.assertEqual(found, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]])
        # The next call begins a new sweep.
        self.assertEqual(directory.stale_nodes(1000.0, STALE_AFTER, budget=4), [1, 2, 3, 4])

    def test_nodes_gone_or_seen_during_a_sweep_are_not_reported(self):
        directory = _directory_with(6)
        self.assertEqual(directory.stale_nodes(1000.0, STALE_AFTER, budget=2), [1, 2])
        directory.remove_node(3)
        directory.touch(directory.nodes[4], 1000.0)
        self.assertEqual(directory.stale_nodes(1000.0, STALE_AFTER, budget=2), [])
        self.assertEqual(directory.stale_nodes(1000.0, STALE_AFTER, budget=2), [5, 6])

    def test_a_node_registered_during_a_sweep_waits_for_the_next(self):
        directory = _directory_with(4)
        directory.stale_nodes(1000.0, STALE_AFTER, budget=2)
        directory.save_node(Node(5, "key-5"))
        self.assertEqual(directory.stale_nodes(1000.0, STALE_AFTER, budget=2), [3, 4])
        self.assertEqual(directory.stale_nodes(1000.0, STALE_AFTER, budget=10),
                         [1, 2, 3, 4, 5])

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.tuples(st.booleans(), st.integers(1, 40)), max_size=30),
           st.integers(1, 7))
    def test_a_full_sweep_finds_what_one_scan_finds(self, churn, budget):
        """After any churn, calls summing to one sweep find exactly the stale nodes a
        full scan finds, when nothing changes during that sweep."""
        directory = _directory_with(20, last_seen=500.0)
        for fresh, node_id in churn:
            node = directory.nodes.get(node_id)
            if fresh and node is not None:
                directory.touch(node, 900.0)
            elif node is None:
                directory.save_node(Node(node_id, f"key-{node_id}", last_seen=500.0))
            else:
                directory.remove_node(node_id)
            directory.stale_nodes(1000.0, STALE_AFTER, budget)
        # Finish the sweep under way (a budget beyond the directory), then take one whole sweep.
        directory.stale_nodes(1000.0, STALE_AFTER, budget=100)
        swept = []
        for _ in range(-(-len(directory.nodes) // budget)):
            swept += directory.stale_nodes(1000.0, STALE_AFTER, budget)
        self.assertEqual(sorted(swept), sorted(directory.stale_nodes(1000.0, STALE_AFTER)))


class HousekeepingTests(SynchronousTestCase):
    """The server's housekeeping reaps a bounded number of nodes per tick."""

    def test_each_tick_looks_at_the_budget_only(self):
        self.patch(server_module, "REAP_BUDGET", 3)
        clock = Clock()
        registry = Registry(stale_after=STALE_AFTER,
                            register_limiter=RateLimiter(burst=100, window=60.0))
        server = RegistryServer(registry, clock)
        for number in range(1, 9):
            registry.handle({"type": "register", "public_key": identity(number).public_key_b64},
                            ("192.0.2.1", 4000), clock.seconds())
        clock.advance(STALE_AFTER + 1)
        left = []
        for _ in range(3):
            server.housekeeping()
            left.append(len(registry.directory.nodes))
        self.assertEqual(left, [5, 2, 0])


class SeenFlushTests(SynchronousTestCase):
    """The last-seen flush serialises a bounded number of nodes per reactor turn."""

    def test_one_chunk_now_the_rest_a_chunk_per_turn(self):
        self.patch(server_module, "SEEN_CHUNK", 2)
        clock = Clock()
        registry = Registry(register_limiter=RateLimiter(burst=100, window=60.0))
        written = []

        class Store:
            def commit(self, changes):
                return succeed(None)

            def commit_seen(self, changes):
                written.append(sorted(int(key) for _, key, _ in changes))
                return succeed(None)

        server = RegistryServer(registry, clock, Store())
        directory = registry.directory
        for number in range(1, 6):
            directory.save_node(Node(number, f"key-{number}"))
            directory.touch(directory.nodes[number], 10.0)
        flushed = server.housekeeping()
        self.assertEqual(len(written), 1)
        self.assertNoResult(flushed)
        clock.advance(0)
        self.assertEqual(sorted(sum(written, [])), [1, 2, 3, 4, 5])
        self.assertEqual([len(chunk) for chunk in written], [2, 2, 1])
        self.successResultOf(flushed)


class ProofTests(SynchronousTestCase):
    """A node's proofs live in its record, and survive a change applied from the store's feed."""

    def test_applied_change_keeps_what_the_node_proved(self):
        driven = DrivenRegistry()
        alice = identity(1)
        node_id = driven.register(alice, peer=("198.51.100.9", 4000))
        driven.ok({"type": "heartbeat", "node_id": node_id}, signer=alice)
        directory = driven.registry.directory
        stored = directory.entity("node", str(node_id))
        directory.apply("node", str(node_id), dict(stored, tags=["gpu"]))
        node = directory.nodes[node_id]
        self.assertEqual(node.tags, ("gpu",))
        self.assertEqual((node.proven_at, node.registered_from), (driven.now, "198.51.100.9"))
        self.assertNotIn("proven_at", stored)
        # So an unsigned registration of its key from elsewhere is still refused.
        error = driven.error({"type": "register", "public_key": alice.public_key_b64},
                             peer=("203.0.113.5", 4000))
        self.assertIn("register refused", error)


class HeartbeatProofTests(SynchronousTestCase):
    """A Go daemon's repeated heartbeat signature is verified once and remembered as 16 bytes on its record."""

    def setUp(self):
        self.driven = DrivenRegistry()
        self.alice = identity(1)
        self.node_id = self.driven.register(self.alice)
        self.node = self.driven.registry.directory.nodes[self.node_id]
        self.verified = []

        def counting(*args):
            self.verified.append(args)
            return signature_valid(*args)

        self.patch(handlers, "signature_valid", counting)

    def beat(self, who):
        return self.driven.signed_legacy(who, {"type": "heartbeat", "node_id": self.node_id})["type"]

    def test_a_repeat_is_not_verified_again_and_a_forgery_is(self):
        self.assertEqual([self.beat(self.alice), self.beat(self.alice)], ["heartbeat_ok", "heartbeat_ok"])
        self.assertEqual(len(self.verified), 1)
        self.assertEqual(len(self.node.heartbeat_proof), 16)
        self.assertEqual(self.beat(identity(2)), "error")
        self.assertEqual(len(self.verified), 2)

    def test_a_new_key_is_verified_again(self):
        self.beat(self.alice)
        self.driven.registry.directory.rekey(self.node, identity(2).public_key_b64)
        self.assertEqual(self.beat(self.alice), "error")


class LoadTests(SynchronousTestCase):
    """Loading the store: the key index shares the node's strings."""

    def test_key_index_shares_the_nodes_key_text_and_id(self):
        path = os.path.join(self.mktemp(), "registry.db")
        store = RegistryStore(path)
        self.addCleanup(store.close)
        driven = DrivenRegistry()
        node_id = driven.register(identity(1))
        store.write(driven.registry.directory.entities())
        directory = Directory()
        store.load_into(directory)
        node = directory.nodes[node_id]
        [(key, indexed)] = directory.key_index.items()
        self.assertIs(key, node.public_key)
        self.assertIs(indexed, node.id)


class SharingTests(SynchronousTestCase):
    """What a million node records share instead of holding each their own."""

    def setUp(self):
        self.driven = DrivenRegistry()
        self.nodes = self.driven.registry.directory.nodes

    def test_nodes_stamped_within_one_second_share_one_time(self):
        self.driven.now = 1_700_000_000.25
        first = self.nodes[self.driven.register(identity(1))]
        self.driven.now = 1_700_000_000.75
        second = self.nodes[self.driven.register(identity(2))]
        self.driven.now = 1_700_000_001.5
        third = self.nodes[self.driven.register(identity(3))]
        self.assertEqual(first.last_seen, 1_700_000_000.0)
        self.assertIs(first.last_seen, second.last_seen)
        self.assertIs(first.key_created, second.last_seen)
        self.assertIs(first.proven_at, second.proven_at)
        self.assertEqual(third.last_seen, 1_700_000_001.0)

    def test_a_heartbeat_stamps_the_shared_second(self):
        node = self.nodes[self.driven.register(identity(1))]
        other = self.nodes[self.driven.register(identity(2))]
        self.driven.now += 30.5
        reply = self.driven.signed_legacy(identity(1), {"type": "heartbeat", "node_id": node.id})
        self.assertEqual(reply["type"], "heartbeat_ok")
        self.driven.signed_legacy(identity(2), {"type": "heartbeat", "node_id": other.id})
        self.assertEqual(node.last_seen, 1_700_000_030.0)
        self.assertIs(node.last_seen, other.last_seen)
        self.assertIs(node.proven_at, other.last_seen)

    def test_nodes_of_one_version_share_its_text(self):
        first = self.nodes[self.driven.register(identity(1), version="".join(["pilotnet/", "1.0"]))]
        second = self.nodes[self.driven.register(identity(2), version="".join(["pilotnet/", "1.0"]))]
        self.assertIs(first.version, second.version)
        restored = Directory()
        for kind, key, value in self.driven.registry.directory.entities():
            restored.restore(kind, key, json.loads(json.dumps(value)))
        self.assertIs(restored.nodes[first.id].version, second.version)

    def test_seldom_set_fields_are_shared_until_one_is_set(self):
        plain = Node(1, "key-1")
        scored = Node(2, "key-2")
        scored.polo_score = 5
        self.assertIs(plain.seldom, UNSET)
        self.assertIsNot(scored.seldom, UNSET)
        self.assertEqual((scored.polo_score, plain.polo_score, UNSET.polo_score), (5, 0, 0))
        # Writing a default keeps the shared one; a value of another type is kept as given.
        plain.task_exec = False
        self.assertIs(plain.seldom, UNSET)
        plain.key_expires = 0
        self.assertIsNot(plain.seldom, UNSET)
        self.assertIs(type(plain.key_expires), int)
        self.assertEqual(Node(3, "key-3", owner="o", key_rotations=2),
                         Node(3, "key-3", owner="o", key_rotations=2))
        self.assertNotEqual(Node(3, "key-3", owner="o"), Node(3, "key-3"))


class CollectionTests(SynchronousTestCase):
    def test_freezes_once_per_step_of_growth(self):
        nodes = {"count": 10}
        calls = []
        freezer = GrowthFreezer(lambda: nodes["count"], step=100,
                                collect=lambda: calls.append("collect"),
                                freeze=lambda: calls.append("freeze"))
        self.assertFalse(freezer.check())
        nodes["count"] = 109
        self.assertFalse(freezer.check())
        nodes["count"] = 110
        self.assertTrue(freezer.check())
        self.assertEqual(calls, ["collect", "freeze"])
        # Churn below the largest size frozen so far does not freeze again.
        nodes["count"] = 50
        self.assertFalse(freezer.check())
        nodes["count"] = 200
        self.assertFalse(freezer.check())
        nodes["count"] = 210
        self.assertTrue(freezer.check())
        self.assertEqual(freezer.freezes, 2)

    def test_checks_on_the_clock(self):
        clock = Clock()
        nodes = {"count": 0}
        frozen = []
        freezer = GrowthFreezer(lambda: nodes["count"], step=10, collect=lambda: None,
                                freeze=lambda: frozen.append(nodes["count"]))
        service = freezer.service(clock, interval=1.0)
        service.startService()
        self.addCleanup(service.stopService)
        nodes["count"] = 25
        clock.advance(1.0)
        self.assertEqual(frozen, [25])

    def test_collector_paused_inside_only(self):
        self.assertTrue(gc.isenabled())
        with collector_paused():
            self.assertFalse(gc.isenabled())
        self.assertTrue(gc.isenabled())
        gc.disable()
        try:
            with collector_paused():
                pass
            self.assertFalse(gc.isenabled())
        finally:
            gc.enable()


class _Turns:
    """A reactor's turns, one at a time: a ``callLater(0)`` made during a turn runs in the next.

    (``task.Clock.advance(0)`` would run it in the same call.)
    """

    def __init__(self):
        self.calls = []

    def callLater(self, delay, function, *args):
        call = lambda: function(*args)  # noqa: E731 (stands in for the IDelayedCall)
        self.calls.append(call)
        return call

    def turn(self):
        calls, self.calls = self.calls, []
        for call in calls:
            call()


class _Timer:
    """A monotonic timer the test moves: what the handled writes took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class WriteTurnsTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = _Turns()
        self.timer = _Timer()
        self.turns = WriteTurns(self.reactor, budget=0.005, timer=self.timer)
        self.ran = []

    def write(self, number, cost=0.002):
        """A queued write that takes ``cost`` seconds of the timer."""
        def handle():
            self.ran.append(number)
            self.timer.now += cost
        self.turns.later(handle)

    def test_writes_at_once_until_the_budget_is_spent(self):
        self.assertTrue(self.turns.admit())
        self.timer.now += 0.003
        self.assertTrue(self.turns.admit())
        self.timer.now += 0.003
        self.assertFalse(self.turns.admit())

    def test_queued_writes_a_budget_per_turn_in_order(self):
        self.assertTrue(self.turns.admit())
        self.timer.now += 0.006
        for number in range(5):
            self.write(number)
        self.reactor.turn()
        # 2 ms each: the third takes the turn's writes past 5 ms, and ends the turn.
        self.assertEqual(self.ran, [0, 1, 2])
        # Nothing may overtake what waits.
        self.assertFalse(self.turns.admit())
        self.reactor.turn()
        self.assertEqual((self.ran, self.turns.waiting), ([0, 1, 2, 3, 4], 0))
        # The writes read after that turn share its budget (4 of 5 ms spent)...
        self.assertTrue(self.turns.admit())
        self.timer.now += 0.001
        self.assertFalse(self.turns.admit())
        # ...and the next turn starts a new one.
        self.reactor.turn()
        self.assertTrue(self.turns.admit())

    def test_one_write_per_turn_however_long_it_takes(self):
        self.assertTrue(self.turns.admit())
        self.timer.now += 0.006
        for number in range(3):
            self.write(number, cost=0.010)
        for expected in ([0], [0, 1], [0, 1, 2]):
            self.reactor.turn()
            self.assertEqual(self.ran, expected)


class HeldRequestTests(SynchronousTestCase):
    """Over a budget of writes per turn, reads and heartbeats on other connections are
    answered at once, each connection's replies keep its order, and a connection with
    too many requests waiting is not read until they are handled."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        registry = Registry(register_limiter=RateLimiter(burst=100, window=60.0))
        server = RegistryServer(registry, self.clock)
        self.reactor = _Turns()
        # No budget: one write a turn.
        server.turns = WriteTurns(self.reactor, budget=0.0, timer=self.clock.seconds)
        self.server = server
        self.factory = RegistryFactory(server)

    def connect(self, port):
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_reads_go_first_and_each_connection_keeps_its_order(self):
        writer, written = self.connect(40001)
        reader, read = self.connect(40002)
        writer.dataReceived(b"".join(_frame(request) for request in [
            {"type": "register", "public_key": identity(1).public_key_b64},
            {"type": "register", "public_key": identity(2).public_key_b64},
            {"type": "lookup", "node_id": 2}]))
        reader.dataReceived(_frame({"type": "lookup", "node_id": 1}))
        # The first registration fit this turn's slice; the second waits, and the
        # writer's lookup behind it; the other connection's lookup did not wait.
        self.assertEqual([r["type"] for r in _replies(written)], ["register_ok"])
        self.assertEqual([r["type"] for r in _replies(read)], ["lookup_ok"])
        # One queued request a turn (the lookup queued behind a write counts as one).
        self.reactor.turn()
        self.reactor.turn()
        self.assertEqual([(r["type"], r.get("node_id")) for r in _replies(written)],
                         [("register_ok", 1), ("register_ok", 2), ("lookup_ok", 2)])

    def test_heartbeats_are_answered_at_once_registrations_may_wait(self):
        self.assertTrue(self.server.answered_at_once({"type": "heartbeat"}))
        self.assertFalse(self.server.answered_at_once({"type": "register"}))

    def register(self, protocol, first, count):
        protocol.dataReceived(b"".join(
            _frame({"type": "register", "public_key": identity(number).public_key_b64})
            for number in range(first, first + count)))

    def test_a_connection_with_too_many_waiting_is_not_read_until_they_are_handled(self):
        writer, written = self.connect(40001)
        limit = server_module.MAX_HELD_PER_CONNECTION
        self.register(writer, 1, limit)
        # One handled at once, limit - 1 waiting: still read.
        self.assertEqual(written.producerState, "producing")
        self.register(writer, limit + 1, 1)
        self.assertEqual(written.producerState, "paused")
        for _ in range(limit - 1):
            self.reactor.turn()
        self.assertEqual(written.producerState, "paused")
        self.reactor.turn()
        self.assertEqual(written.producerState, "producing")
        self.assertEqual(len(_replies(written)), limit + 1)

    def test_no_connection_adds_to_a_full_queue_unpaused(self):
        self.patch(server_module, "MAX_HELD", 2)
        first, first_written = self.connect(40001)
        second, second_written = self.connect(40002)
        self.register(first, 1, 2)
        self.assertEqual(first_written.producerState, "producing")
        self.register(second, 3, 1)
        self.assertEqual((first_written.producerState, second_written.producerState),
                         ("producing", "paused"))
        self.reactor.turn()
        self.reactor.turn()
        self.assertEqual((self.server.turns.waiting, second_written.producerState),
                         (0, "producing"))

    def test_the_rate_throttle_does_not_resume_a_connection_held_back(self):
        writer, written = self.connect(40001)
        writer._soft = server_module.TokenBucket(1, 1)
        self.register(writer, 1, server_module.MAX_HELD_PER_CONNECTION + 1)
        self.assertEqual(written.producerState, "paused")
        self.clock.advance(server_module.THROTTLE_DELAY)
        self.assertEqual(written.producerState, "paused")
        for _ in range(server_module.MAX_HELD_PER_CONNECTION):
            self.reactor.turn()
        self.assertEqual(written.producerState, "producing")


def _frame(request):
    body = json.dumps(request).encode()
    return struct.pack(">I", len(body)) + body


def _replies(transport):
    return [json.loads(body) for body in FrameDecoder().feed(transport.value())]
