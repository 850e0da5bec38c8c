"""Key lookups and the registry link's request budget: a flood of frames cannot flood the registry."""

import base64
import socket

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pilotnet.daemon.registry_link import (
    INBOUND_LOOKUP_RATE, KEY_REFETCH_AFTER, KEY_TTL, MISSING_KEY_TTL, REQUEST_RATE, RegistryKeys, RegistryLink,
    Resolver,
)
from pilotnet.errors import CONNECTION_FAILED, NOT_FOUND, PilotError
from pilotnet.registry.client import RegistryError
from pilotnet.registry.handlers import Registry
from pilotnet.registry.server import RegistryFactory, RegistryServer

KEY = bytes(range(32))


class FakeRegistry:
    """Answers ``lookup`` for the nodes in ``keys``; counts requests; can hold answers back."""

    def __init__(self, keys):
        self.keys = keys
        self.requests = 0
        self.held = []
        self.hold = False

    def request(self, message):
        self.requests += 1
        node = message["node_id"]
        if node in self.keys:
            answer = defer.succeed({"public_key": base64.b64encode(self.keys[node]).decode()})
        else:
            answer = defer.fail(RegistryError("node not found", code=NOT_FOUND))
        if self.hold:
            waiting = defer.Deferred()
            self.held.append((waiting, answer))
            return waiting
        return answer

    def release(self):
        for waiting, answer in self.held:
            answer.chainDeferred(waiting)
        self.held = []


class RegistryKeysTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.registry = FakeRegistry({1: KEY})
        self.keys = RegistryKeys(self.registry, self.clock)

    def test_found_keys_are_cached_for_their_lifetime(self):
        for _ in range(100):
            self.assertEqual(self.successResultOf(self.keys.public_key(1)), KEY)
        self.assertEqual(self.registry.requests, 1)
        self.clock.advance(KEY_TTL)
        self.successResultOf(self.keys.public_key(1))
        self.assertEqual(self.registry.requests, 2)

    def test_unknown_nodes_are_cached_too(self):
        for _ in range(100):
            self.failureResultOf(self.keys.public_key(99), PilotError)
        self.assertEqual(self.registry.requests, 1)
        self.clock.advance(MISSING_KEY_TTL)
        self.failureResultOf(self.keys.public_key(99), PilotError)
        self.assertEqual(self.registry.requests, 2)

    def test_concurrent_askers_share_one_lookup(self):
        self.registry.hold = True
        asked = [self.keys.public_key(1) for _ in range(10)]
        self.assertEqual(self.registry.requests, 1)
        self.registry.release()
        self.assertEqual([self.successResultOf(d) for d in asked], [KEY] * 10)

    def test_a_disagreeing_frame_does_not_buy_a_refetch_of_a_fresh_key(self):
        self.successResultOf(self.keys.public_key(1))
        self.keys.forget(1)
        self.successResultOf(self.keys.public_key(1))
        self.assertEqual(self.registry.requests, 1)
        self.clock.advance(KEY_REFETCH_AFTER)
        self.keys.forget(1)
        self.successResultOf(self.keys.public_key(1))
        self.assertEqual(self.registry.requests, 2)

    def test_lookups_of_many_nodes_stay_within_the_budget(self):
        refused = 0
        for node in range(1000, 6000):
            failure = self.failureResultOf(self.keys.public_key(node), PilotError)
            refused += failure.value.code == CONNECTION_FAILED
        self.assertEqual(self.registry.requests, INBOUND_LOOKUP_RATE)
        self.assertEqual(refused, 5000 - INBOUND_LOOKUP_RATE)


class HeldResolves:
    """A registry whose signed ``resolve`` requests wait until the test answers them."""

    node_id = 1

    def __init__(self):
        self.asked = []

    def signed(self, message):
        answer = defer.Deferred()
        self.asked.append(answer)
        return answer


class ResolverTests(SynchronousTestCase):
    def setUp(self):
        self.registry = HeldResolves()
        self.resolver = Resolver(self.registry, Clock())

    def test_a_burst_of_dials_to_one_peer_resolves_it_once(self):
        # Each dial of a burst to a new peer used to resolve it: more requests than the link's budget
        # (REQUEST_RATE), refused, and none left for the key lookup that keys the tunnel they wait for.
        asked = [self.resolver.endpoint(2) for _ in range(int(REQUEST_RATE) * 2)]
        self.assertEqual(len(self.registry.asked), 1)
        self.registry.asked[0].callback({"real_addr": "127.0.0.1:4000"})
        self.assertEqual({self.successResultOf(d) for d in asked}, {("127.0.0.1", 4000)})
        self.successResultOf(self.resolver.endpoint(2))  # then from the cache
        self.assertEqual(len(self.registry.asked), 1)

    def test_a_shared_failure_reaches_every_asker_and_is_not_kept(self):
        asked = [self.resolver.endpoint(2) for _ in range(3)]
        self.registry.asked[0].errback(RegistryError("node not found", code=NOT_FOUND))
        for answer in asked:
            self.failureResultOf(answer, RegistryError)
        self.resolver.endpoint(2)
        self.assertEqual(len(self.registry.asked), 2)


class RegistryLinkBudgetTests(SynchronousTestCase):
    def test_the_link_never_asks_faster_than_its_budget(self):
        clock = Clock()
        link = RegistryLink(clock, "127.0.0.1:1", identity=None)
        connecting = []
        link._client.whenConnected = lambda **_: connecting.append(1) or defer.Deferred()
        outcomes = [link.request({"type": "lookup", "node_id": n}) for n in range(200)]
        self.assertEqual(len(connecting), REQUEST_RATE)
        refused = [self.failureResultOf(d, PilotError) for d in outcomes[int(REQUEST_RATE):]]
        self.assertTrue(all(f.value.code == CONNECTION_FAILED for f in refused))
        clock.advance(1.0)
        link.request({"type": "lookup", "node_id": 1})
        self.assertEqual(len(connecting), REQUEST_RATE + 1)


class FailoverTests(TestCase):
    """With several registries (sharing one database), an unreachable one is left for the next."""

    async def test_a_failed_request_moves_the_link_to_the_next_registry(self):
        server = RegistryServer(Registry(), reactor)
        port = reactor.listenTCP(0, RegistryFactory(server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]
        link = RegistryLink(reactor, f"127.0.0.1:{dead}, 127.0.0.1:{port.getHost().port}",
                            identity=None)
        link.startService()
        self.addCleanup(link.stopService)
        with self.assertRaises(PilotError) as first:
            await link.request({"type": "lookup", "node_id": 7})
        self.assertEqual(first.exception.code, CONNECTION_FAILED)
        self.assertEqual(link.address, f"127.0.0.1:{port.getHost().port}")
        # The live registry answers (the node is unknown there: its own answer, not a failure).
        with self.assertRaises(RegistryError) as second:
            await link.request({"type": "lookup", "node_id": 7})
        self.assertEqual(second.exception.code, NOT_FOUND)
