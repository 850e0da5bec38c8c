"""The daemon's networks: the view of members and allowed ports, and the trust gate that reads it.

On a fake clock with an in-memory registry; the integration tests
(tests/integration/test_network_members.py) do the same over real processes.
"""

from pathlib import Path

from hypothesis import given, settings, strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.crypto.identity import Identity
from pilotnet.daemon.networks import MAX_TRACKED_NETWORKS, MIN_REFRESH_GAP, JoinedNetwork, Networks, NetworkView
from pilotnet.daemon.trust import TrustState
from pilotnet.daemon.trust_manager import TrustManager
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, NOT_RUNNING, PilotError
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_SYN, PROTO_DATAGRAM, PROTO_STREAM, Packet
from tests.daemon.fakes import StaticKeys
from tests.daemon.test_webhook_events import RecordingEmitter

ME, MEMBER, STRANGER = 5, 6, 7
NET, OTHER_NET = 3, 4
NOW = 1_700_000_000


class NetworkRegistry:
    """The registry's network messages over in-memory networks: ``members`` and ``ports`` by network ID."""

    def __init__(self):
        self.members = {}
        self.ports = {}
        self.pairs = set()
        self.requests = []
        self.fail = None
        self.policies_supported = True

    def request(self, request):
        self.requests.append(request)
        kind = request["type"]
        if self.fail is not None and kind != "check_trust":
            return defer.fail(self.fail)
        if kind == "lookup":
            node = request["node_id"]
            return defer.succeed({"networks": [0] + sorted(n for n, m in self.members.items() if node in m)})
        if kind == "list_nodes":
            nodes = [{"node_id": node, "address": str(Addr(request["network_id"], node))}
                     for node in sorted(self.members[request["network_id"]])]
            return defer.succeed({"type": "list_nodes_ok", "nodes": nodes})
        if kind == "get_network_policy":
            if not self.policies_supported:
                return defer.fail(PilotError("unknown message type: get_network_policy"))
            return defer.succeed({"allowed_ports": sorted(self.ports.get(request["network_id"], ()))})
        if kind == "check_trust":
            peer = request["peer_id"]
            shared = any(ME in m and peer in m for m in self.members.values())
            return defer.succeed({"trusted": shared or peer in self.pairs})
        if kind == "list_networks":
            return defer.succeed({"networks": [{"id": n, "members": len(m)} for n, m in self.members.items()]})
        raise AssertionError(request)

    def signed(self, request):
        self.requests.append(request)
        kind = request["type"]
        if kind == "join_network":
            self.members.setdefault(request["network_id"], set()).add(request["node_id"])
            return defer.succeed({"type": "join_network_ok", "network_id": request["network_id"],
                                  "address": str(Addr(request["network_id"], request["node_id"]))})
        if kind == "leave_network":
            self.members[request["network_id"]].discard(request["node_id"])
        if kind == "respond_invite" and request["accept"]:
            self.members.setdefault(request["network_id"], set()).add(request["node_id"])
        return defer.succeed({"type": kind + "_ok"})

    def kinds(self):
        return [request["type"] for request in self.requests]


class Settings:
    public = False
    trust_auto_approve = False


class Courier:
    def send(self, node, message, timeout=None):
        return defer.succeed(None)


class NetworkCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.registry = NetworkRegistry()
        self.registry.members = {NET: {ME, MEMBER}}
        self.emitter = RecordingEmitter()
        self.changes = []
        self.networks = Networks(clock=self.clock, registry=self.registry, node_id=lambda: ME)
        self.networks.emitter = self.emitter

    def refresh(self):
        return self.successResultOf(self.networks.refresh())


class ViewTests(NetworkCase):
    def test_refresh_reads_our_networks_their_members_and_allowed_ports(self):
        self.registry.members[OTHER_NET] = {STRANGER}  # not ours
        self.registry.ports[NET] = {1000}
        view = self.refresh()
        self.assertEqual(view.networks, {NET: JoinedNetwork(NET, frozenset({ME, MEMBER}), frozenset({1000}))})
        self.assertEqual([n.network_id for n in view.shared_with(MEMBER)], [NET])
        self.assertEqual(view.shared_with(STRANGER), ())
        self.assertEqual(self.networks.describe(), [{"network_id": NET, "address": "3:0003.0000.0005",
                                                     "members": 2, "allowed_ports": [1000]}])

    def test_empty_allowed_ports_allow_every_port(self):
        network = JoinedNetwork(NET, frozenset({MEMBER}))
        self.assertTrue(network.allows(1) and network.allows(65535))
        self.assertFalse(JoinedNetwork(NET, frozenset(), frozenset({80})).allows(81))

    def test_a_registry_without_policies_allows_every_port(self):
        self.registry.policies_supported = False
        self.assertEqual(self.refresh().networks[NET].allowed_ports, frozenset())

    def test_a_failed_refresh_keeps_the_last_view(self):
        before = self.refresh()
        self.registry.fail = PilotError("cannot reach registry", code=CONNECTION_FAILED)
        self.registry.members[NET].discard(MEMBER)
        self.assertEqual(self.refresh(), before)
        self.assertEqual(self.networks.refresh_failures, 1)
        self.flushLoggedErrors()

    def test_hostile_replies_are_bounded_and_filtered(self):
        def request(request):
            if request["type"] == "lookup":
                return defer.succeed({"networks": [0, NET, True, -1, 70000, "x"]})
            if request["type"] == "list_nodes":
                return defer.succeed({"nodes": [{"node_id": MEMBER}, {"node_id": "6"}, {"node_id": 2**40}, 7]})
            return defer.succeed({"allowed_ports": [80, 0, 70000, True, "22"]})
        self.registry.request = request
        view = self.refresh()
        self.assertEqual(view.networks, {NET: JoinedNetwork(NET, frozenset({MEMBER}), frozenset({80}))})

    def test_at_most_the_tracked_networks_are_described(self):
        self.registry.members = {network: {ME} for network in range(1, MAX_TRACKED_NETWORKS + 10)}
        view = self.refresh()
        self.assertEqual(sorted(view.networks), list(range(1, MAX_TRACKED_NETWORKS + 1)))
        self.assertEqual(self.registry.kinds().count("list_nodes"), MAX_TRACKED_NETWORKS)

    def test_changes_of_our_membership_are_events(self):
        self.refresh()
        self.registry.members[NET].discard(ME)  # kicked
        self.refresh()
        self.assertEqual(self.emitter.named("network.sync_joined"),
                         [{"network_id": NET, "address": "3:0003.0000.0005"}])
        self.assertEqual(self.emitter.named("network.sync_left"), [{"network_id": NET}])

    def test_concurrent_refreshes_share_one_and_run_once_more(self):
        waiting = defer.Deferred()
        real = self.registry.request
        self.registry.request = lambda request: waiting.addCallback(lambda _: real(request)) \
            if request["type"] == "lookup" and not waiting.called else real(request)
        first, second, third = self.networks.refresh(), self.networks.refresh(), self.networks.refresh()
        self.assertEqual(self.registry.kinds().count("lookup"), 0)
        waiting.callback(None)
        for refreshing in (first, second, third):
            self.successResultOf(refreshing)
        self.assertEqual(self.networks.refreshes, 2)

    def test_refresh_soon_waits_for_the_gap(self):
        self.refresh()
        self.networks.refresh_soon()
        self.assertEqual(self.networks.refreshes, 1)
        self.clock.advance(MIN_REFRESH_GAP)
        self.networks.refresh_soon()
        self.assertEqual(self.networks.refreshes, 2)

    def test_nothing_is_asked_before_registration(self):
        networks = Networks(clock=self.clock, registry=self.registry, node_id=lambda: None)
        self.successResultOf(networks.refresh())
        self.assertEqual(self.registry.requests, [])
        self.assertEqual(self.assertRaises(PilotError, networks.invites).code, NOT_RUNNING)


class CommandTests(NetworkCase):
    def test_join_is_signed_and_refreshes_the_view(self):
        reply = self.successResultOf(self.networks.join(OTHER_NET, "s3cret"))
        self.assertEqual(reply["address"], "4:0004.0000.0005")
        [join] = [r for r in self.registry.requests if r["type"] == "join_network"]
        self.assertEqual(join, {"type": "join_network", "node_id": ME, "network_id": OTHER_NET, "token": "s3cret"})
        self.assertIn(OTHER_NET, self.networks.view.networks)

    def test_leave_refreshes_the_view(self):
        self.refresh()
        self.successResultOf(self.networks.leave(NET))
        self.assertEqual(self.networks.view.networks, {})

    def test_network_ids_out_of_range_are_refused(self):
        for bad in (0, 65536, -1):
            failure = self.failureResultOf(self.networks.join(bad), PilotError)
            self.assertEqual(failure.value.code, INVALID_ARGUMENT)

    def test_invites(self):
        self.successResultOf(self.networks.invite(NET, STRANGER))
        self.successResultOf(self.networks.invites())
        self.successResultOf(self.networks.respond(OTHER_NET, True))
        self.assertEqual([r for r in self.registry.requests if r["type"] in
                          ("invite_to_network", "poll_invites", "respond_invite")], [
            {"type": "invite_to_network", "network_id": NET, "inviter_id": ME, "target_node_id": STRANGER},
            {"type": "poll_invites", "node_id": ME},
            {"type": "respond_invite", "node_id": ME, "network_id": OTHER_NET, "accept": True},
        ])
        self.assertIn(OTHER_NET, self.networks.view.networks)  # an accepted invite is a membership

    def test_auto_join_joins_what_we_are_not_in(self):
        self.refresh()
        self.registry.members[OTHER_NET] = set()
        self.successResultOf(self.networks.auto_join([NET, OTHER_NET]))
        self.assertEqual(self.registry.kinds().count("join_network"), 1)
        self.assertEqual(self.emitter.named("network.auto_joined"),
                         [{"network_id": OTHER_NET, "address": "4:0004.0000.0005"}])


class GateTests(NetworkCase):
    """Members are trusted through the network, on its allowed ports, and only while both are members."""

    def setUp(self):
        super().setUp()
        self.path = Path(self.mktemp())
        self.aborted, self.dropped = [], []
        self.trust = TrustManager(
            clock=self.clock, state=TrustState.load(self.path), identity=Identity.generate(),
            registry=self.registry, courier=Courier(), peer_keys=StaticKeys({}), settings=Settings(),
            abort_streams=self.aborted.append, drop_tunnel=self.dropped.append, networks=self.networks)
        self.trust.emitter = self.emitter
        self.networks.on_change = self.trust.network_changed
        self.successResultOf(self.trust.registered(ME))
        self.refresh()

    def packet(self, node, port, protocol=PROTO_STREAM):
        return Packet(protocol, Addr(0, node), Addr(0, ME), 49152, port, flags=FLAG_SYN)

    def test_members_are_admitted_without_a_handshake(self):
        self.assertTrue(self.trust.admit(self.packet(MEMBER, 7)))
        self.assertTrue(self.trust.admit(self.packet(MEMBER, 1000, PROTO_DATAGRAM)))
        self.assertNotIn("check_trust", self.registry.kinds())

    def test_allowed_ports_refuse_other_ports_count_and_report(self):
        self.registry.ports[NET] = {1000}
        self.refresh()
        self.assertTrue(self.trust.admit(self.packet(MEMBER, 1000)))
        self.assertFalse(self.trust.admit(self.packet(MEMBER, 2000)))
        self.assertFalse(self.trust.admit(self.packet(MEMBER, 7, PROTO_DATAGRAM)))
        described = self.trust.describe()
        self.assertEqual((described["port_refused_syns"], described["port_refused_datagrams"]), (1, 1))
        self.assertEqual(self.emitter.named("syn.port_rejected"),
                         [{"src_node_id": MEMBER, "dst_port": 2000, "network": NET}])
        self.assertEqual(self.emitter.named("datagram.port_rejected"),
                         [{"src_node_id": MEMBER, "dst_port": 7, "network": NET}])

    def test_a_port_any_shared_network_allows_is_in(self):
        self.registry.members[OTHER_NET] = {ME, MEMBER}
        self.registry.ports = {NET: {1000}, OTHER_NET: {2000}}
        self.refresh()
        self.assertTrue(self.trust.admit(self.packet(MEMBER, 2000)))
        self.assertFalse(self.trust.admit(self.packet(MEMBER, 3000)))

    def test_directly_trusted_peers_are_not_limited_by_ports(self):
        self.registry.ports[NET] = {1000}
        self.refresh()
        self.trust.state.trust(MEMBER, "", NOW, mutual=True)
        self.assertTrue(self.trust.admit(self.packet(MEMBER, 2000)))

    def test_strangers_are_refused(self):
        self.assertFalse(self.trust.admit(self.packet(STRANGER, 7)))
        self.assertFalse(self.trust.admit(self.packet(STRANGER, 7)))  # the registry said no
        self.assertEqual(self.trust.describe()["refused_syns"], 2)

    def test_a_kicked_member_loses_trust_and_its_streams(self):
        self.assertTrue(self.trust.admit(self.packet(MEMBER, 7)))
        self.registry.members[NET].discard(MEMBER)
        self.refresh()
        self.assertEqual(self.aborted, [MEMBER])
        self.assertFalse(self.trust.admit(self.packet(MEMBER, 7)))  # check_trust asked now
        self.assertFalse(self.trust.admit(self.packet(MEMBER, 7)))  # and it says no

    def test_leaving_ends_the_trust_every_member_had(self):
        self.registry.members[NET].add(STRANGER)
        self.refresh()
        self.successResultOf(self.networks.leave(NET))
        self.assertEqual(sorted(self.aborted), [MEMBER, STRANGER])
        self.assertFalse(self.trust.admit(self.packet(MEMBER, 7)))

    def test_a_same_network_approval_ends_with_the_membership(self):
        self.trust.state.trust(MEMBER, "", NOW, mutual=False, network=NET)
        self.registry.members[NET].discard(MEMBER)
        self.refresh()
        self.assertFalse(self.trust.state.is_trusted(MEMBER))
        self.assertEqual(self.dropped, [MEMBER])
        self.assertIn({"type": "revoke_trust", "node_id": ME, "peer_id": MEMBER},
                      [{k: r[k] for k in ("type", "node_id", "peer_id")} for r in self.registry.requests
                       if r["type"] == "revoke_trust"])
        self.assertEqual(self.emitter.named("trust.revoked"),
                         [{"peer_node_id": MEMBER, "reason": "network_left", "network": NET}])

    def test_a_same_network_approval_moves_to_another_shared_network(self):
        self.registry.members[OTHER_NET] = {ME, MEMBER}
        self.refresh()
        self.trust.state.trust(MEMBER, "", NOW, mutual=False, network=NET)
        self.registry.members[NET].discard(MEMBER)
        self.refresh()
        self.assertEqual(self.trust.state.trusted[MEMBER].network, OTHER_NET)
        self.assertEqual((self.aborted, self.dropped), ([], []))

    def test_direct_trust_survives_the_network(self):
        self.trust.state.trust(MEMBER, "", NOW, mutual=True)
        self.registry.members[NET].discard(MEMBER)
        self.refresh()
        self.assertTrue(self.trust.state.is_trusted(MEMBER))
        self.assertEqual(self.aborted, [])

    def test_a_registry_trusted_verdict_waits_for_the_view(self):
        """A member the view has not seen yet still meets its network's allowed ports."""
        self.registry.members[NET].add(STRANGER)  # joined after our last refresh
        self.registry.ports[NET] = {1000}
        self.clock.advance(MIN_REFRESH_GAP)
        self.assertFalse(self.trust.admit(self.packet(STRANGER, 2000)))  # check_trust says yes; view refreshed
        self.assertFalse(self.trust.admit(self.packet(STRANGER, 2000)))  # now a member: its port is refused
        self.assertTrue(self.trust.admit(self.packet(STRANGER, 1000)))
        self.assertEqual(self.trust.describe()["port_refused_syns"], 1)

    def test_public_nodes_admit_everyone(self):
        self.trust.settings = type("Public", (), {"public": True, "trust_auto_approve": False})()
        self.registry.ports[NET] = {1000}
        self.refresh()
        self.assertTrue(self.trust.admit(self.packet(MEMBER, 2000)))


class ViewOnlyTests(SynchronousTestCase):
    def test_members_of_every_network(self):
        view = NetworkView({NET: JoinedNetwork(NET, frozenset({1, 2})),
                            OTHER_NET: JoinedNetwork(OTHER_NET, frozenset({3}))})
        self.assertEqual(view.members(), frozenset({1, 2, 3}))
        self.assertEqual(NetworkView().members(), frozenset())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=8), children, max_size=8),
    max_leaves=40)


class HostileReplyTests(SynchronousTestCase):
    """Whatever the registry answers, a refresh yields a bounded view of valid IDs and ports, or keeps the old one."""

    @settings(max_examples=200, deadline=None)
    @given(lookup=st.dictionaries(st.sampled_from(["networks", "x"]), JSON_VALUES, max_size=2),
           listing=st.dictionaries(st.sampled_from(["nodes", "x"]), JSON_VALUES, max_size=2),
           policy=st.dictionaries(st.sampled_from(["allowed_ports", "x"]), JSON_VALUES, max_size=2))
    def test_any_reply(self, lookup, listing, policy):
        replies = {"lookup": lookup, "list_nodes": listing, "get_network_policy": policy}

        class Registry:
            def request(self, request):
                return defer.succeed(replies[request["type"]])

        networks = Networks(clock=Clock(), registry=Registry(), node_id=lambda: ME)
        view = self.successResultOf(networks.refresh())
        self.assertEqual(self.flushLoggedErrors(), [])  # refused as PilotErrors, never a crash
        for network_id, network in view.networks.items():
            self.assertTrue(0 < network_id <= 0xFFFF)
            self.assertTrue(all(isinstance(n, int) and 0 < n <= 0xFFFFFFFF for n in network.members))
            self.assertTrue(all(isinstance(p, int) and 0 < p <= 0xFFFF for p in network.allowed_ports))
