"""Broadcasts as per-member copies, on a fake clock with a recording registry and sender."""

from hypothesis import given, strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.broadcast import (
    BROADCAST_BURST, BROADCAST_WINDOW, MAX_CACHED_NETWORKS, MEMBERS_TTL, MIN_REFETCH_GAP, TOTAL_BURST, Broadcaster,
)
from pilotnet.daemon.networks import members_of
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, PilotError
from pilotnet.ratelimit import RateLimiter
from pilotnet.wire.address import Addr

ME = 5
NETWORK = 3
SOURCE_PORT = 49200


class FakeRegistry:
    """Answers ``list_nodes`` from ``networks`` (network -> members); ``offline`` members are marked so."""

    def __init__(self):
        self.networks = {NETWORK: [ME, 6, 7]}
        self.offline = set()
        self.asked = []
        self.held = None  # a Deferred to answer with instead (a slow registry)

    def request(self, request):
        assert request["type"] == "list_nodes", request
        self.asked.append(request["network_id"])
        if self.held is not None:
            return self.held
        members = self.networks.get(request["network_id"])
        if members is None:
            return defer.fail(PilotError(f"network {request['network_id']}: network not found", code=NOT_FOUND))
        return defer.succeed({"type": "list_nodes_ok", "nodes": [
            {"node_id": node, **({"offline": True} if node in self.offline else {})} for node in members]})


class Sent:
    """Records each copy; members in ``unreachable`` fail like a node without an endpoint."""

    def __init__(self):
        self.copies = []
        self.unreachable = set()

    def __call__(self, remote, src_port, dst_port, data):
        if remote.node in self.unreachable:
            return defer.fail(PilotError("cannot resolve", code=NOT_FOUND))
        self.copies.append((remote, src_port, dst_port, data))
        return defer.succeed(None)


class BroadcasterTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.registry = FakeRegistry()
        self.sent = Sent()
        self.node_id = ME
        self.broadcaster = Broadcaster(clock=self.clock, registry=self.registry, node_id=lambda: self.node_id,
                                       source_port=lambda: SOURCE_PORT, send_copy=self.sent, max_members=4)
        self.client = object()

    def send(self, network=NETWORK, port=1000, data=b"hello", client=None):
        return self.successResultOf(self.broadcaster.send(network, port, data, client or self.client))

    def refused(self, network=NETWORK, data=b"hello", client=None):
        return self.failureResultOf(self.broadcaster.send(network, 1000, data, client or self.client),
                                    PilotError).value

    def test_one_copy_to_every_other_member_from_one_source_port(self):
        self.assertEqual(self.send(), (2, 0))
        self.assertEqual(self.sent.copies, [(Addr(NETWORK, 6), SOURCE_PORT, 1000, b"hello"),
                                            (Addr(NETWORK, 7), SOURCE_PORT, 1000, b"hello")])
        self.assertEqual(self.broadcaster.stats()["copies"], 2)
        self.assertEqual(self.broadcaster.stats()["broadcasts"], 1)

    def test_the_backbone_is_refused_without_asking_the_registry(self):
        error = self.refused(network=0)
        self.assertEqual(error.code, INVALID_ARGUMENT)
        self.assertIn("backbone", error.message)
        self.assertEqual(self.registry.asked, [])
        self.assertEqual(self.sent.copies, [])

    def test_a_non_member_is_refused(self):
        self.registry.networks[NETWORK] = [6, 7]
        error = self.refused()
        self.assertEqual(error.code, INVALID_ARGUMENT)
        self.assertEqual(error.message, f"node {ME} is not a member of network {NETWORK}")
        self.assertIn("pilotctl network join 3", error.hint)
        self.assertEqual(self.sent.copies, [])
        self.assertEqual(self.broadcaster.stats()["refused"], 1)

    def test_an_unknown_network_is_not_found(self):
        error = self.refused(network=9)
        self.assertEqual((error.code, error.message), (NOT_FOUND, "network 9 not found"))
        self.assertIn("pilotctl network list", error.hint)

    def test_a_go_registrys_network_not_found_without_a_code(self):
        self.registry.networks.pop(NETWORK)
        self.registry.request = lambda request: defer.fail(PilotError("network not found"))
        self.assertEqual(self.refused().code, NOT_FOUND)

    def test_before_registration_not_running(self):
        self.node_id = None
        self.assertEqual(self.refused().code, NOT_RUNNING)

    def test_an_empty_payload_is_refused(self):
        self.assertEqual(self.refused(data=b"").code, INVALID_ARGUMENT)

    def test_the_member_list_is_reused_until_its_ttl_passes(self):
        for _ in range(3):
            self.send()
        self.assertEqual(self.registry.asked, [NETWORK])
        self.registry.networks[NETWORK] = [ME, 6, 7, 8]
        self.clock.advance(MEMBERS_TTL - 0.1)
        self.assertEqual(self.send(), (2, 0))
        self.clock.advance(0.2)
        self.assertEqual(self.send(), (3, 0))
        self.assertEqual(self.registry.asked, [NETWORK, NETWORK])
        self.assertEqual(self.broadcaster.stats()["member_lists_fetched"], 2)

    def test_concurrent_broadcasts_share_one_list_nodes(self):
        self.registry.held = defer.Deferred()
        first = self.broadcaster.send(NETWORK, 1000, b"a", self.client)
        second = self.broadcaster.send(NETWORK, 1000, b"b", self.client)
        self.assertEqual(self.registry.asked, [NETWORK])
        self.registry.held.callback({"nodes": [{"node_id": ME}, {"node_id": 6}]})
        self.assertEqual(self.successResultOf(first), (1, 0))
        self.assertEqual(self.successResultOf(second), (1, 0))

    def test_a_failed_list_fails_every_waiter_and_is_not_cached(self):
        self.registry.held = defer.Deferred()
        first = self.broadcaster.send(NETWORK, 1000, b"a", self.client)
        second = self.broadcaster.send(NETWORK, 1000, b"b", self.client)
        self.registry.held.errback(PilotError("registry down", code=CONNECTION_FAILED))
        for sending in (first, second):
            self.assertEqual(self.failureResultOf(sending, PilotError).value.code, CONNECTION_FAILED)
        self.registry.held = None
        self.assertEqual(self.send(), (2, 0))

    def test_a_cached_list_without_us_is_checked_again_at_once(self):
        """Just joined: the list cached before the join must not refuse us for its TTL."""
        self.registry.networks[NETWORK] = [6, 7]
        self.refused()
        self.registry.networks[NETWORK] = [ME, 6, 7]
        self.clock.advance(MIN_REFETCH_GAP)
        self.assertEqual(self.send(), (2, 0))
        self.assertEqual(self.registry.asked, [NETWORK, NETWORK])

    def test_a_non_member_asking_again_and_again_costs_one_list_nodes_per_gap(self):
        self.registry.networks[NETWORK] = [6, 7]
        for _ in range(5):
            self.refused(client=object())
        self.assertEqual(self.registry.asked, [NETWORK])
        self.clock.advance(MIN_REFETCH_GAP)
        self.refused(client=object())
        self.assertEqual(self.registry.asked, [NETWORK, NETWORK])

    def test_offline_members_get_no_copy(self):
        self.registry.offline = {7}
        self.assertEqual(self.send(), (1, 0))
        self.assertEqual([copy[0].node for copy in self.sent.copies], [6])

    def test_unreachable_members_are_counted_and_the_rest_still_sent(self):
        self.sent.unreachable = {6}
        self.assertEqual(self.send(), (1, 1))
        self.assertEqual(self.broadcaster.stats()["unreachable"], 1)

    def test_alone_in_the_network_sends_nothing(self):
        self.registry.networks[NETWORK] = [ME]
        self.assertEqual(self.send(), (0, 0))

    def test_a_network_larger_than_the_cap_is_refused_not_reached_in_part(self):
        self.registry.networks[NETWORK] = [ME, 6, 7, 8, 9, 10]
        error = self.refused()
        self.assertEqual(error.code, INVALID_ARGUMENT)
        self.assertIn("5 other members online", error.message)
        self.assertIn("at most 4", error.message)
        self.assertEqual(self.sent.copies, [])
        self.registry.networks[NETWORK] = [ME, 6, 7, 8, 9]
        self.clock.advance(MEMBERS_TTL)
        self.assertEqual(self.send(), (4, 0))

    def test_each_client_is_rate_limited_on_its_own(self):
        for _ in range(BROADCAST_BURST):
            self.send()
        error = self.refused()
        self.assertEqual(error.code, CONNECTION_FAILED)
        self.assertIn("too many broadcasts", error.message)
        self.assertEqual(self.broadcaster.stats()["rate_limited"], 1)
        other = object()
        self.assertEqual(self.send(client=other), (2, 0))
        self.clock.advance(BROADCAST_WINDOW / BROADCAST_BURST)
        self.assertEqual(self.send(), (2, 0))

    def test_all_clients_together_are_rate_limited(self):
        """Each pilotctl run is a new client: a loop of them meets the daemon-wide limit."""
        clients = [object() for _ in range(TOTAL_BURST + 1)]
        for client in clients[:-1]:
            self.send(client=client)
        self.assertIn("from all clients", self.refused(client=clients[-1]).message)
        self.assertEqual(self.broadcaster.stats()["rate_limited"], 1)

    def test_the_cache_keeps_a_bounded_number_of_networks(self):
        self.broadcaster.total_limiter = RateLimiter(10 * MAX_CACHED_NETWORKS, BROADCAST_WINDOW)
        for network in range(1, MAX_CACHED_NETWORKS + 10):
            self.registry.networks[network] = [ME, 6]
            self.send(network=network, client=object())
        self.assertEqual(len(self.broadcaster.cache._cached), MAX_CACHED_NETWORKS)


class MembersOfTests(SynchronousTestCase):
    def test_malformed_entries_are_skipped(self):
        reply = {"nodes": [{"node_id": 6}, {"node_id": "7"}, {"node_id": True}, {"node_id": 0},
                           {"node_id": 0xFFFFFFFF}, "x", None, {"node_id": 8, "offline": True}]}
        members = members_of(reply)
        self.assertEqual(members.members, frozenset({6, 8}))
        self.assertEqual(members.online, frozenset({6}))

    def test_a_reply_without_a_node_list_is_an_error(self):
        for reply in ({}, {"nodes": "x"}, {"nodes": {"node_id": 6}}):
            self.assertRaises(PilotError, members_of, reply)

    @given(st.dictionaries(st.text(max_size=8), st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20)))
    def test_any_reply_gives_members_or_a_pilot_error(self, reply):
        try:
            members = members_of(reply)
        except PilotError:
            return
        self.assertLessEqual(members.online, members.members)
        self.assertTrue(all(0 < node < 0xFFFFFFFF for node in members.members))
