"""The beacon's decisions, datagram by datagram, with a hand-moved clock."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.beacon.core import (
    PEER_CLAIM_EXPIRY, PUNCH_TARGET_BURST, REQUEST_BURST, REQUEST_RATE, BeaconCore,
)
from pilotnet.beacon.peering import TRAILER_SIZE, PeerAuth
from pilotnet.wire import beacon as wire

A = ("198.51.100.1", 4000)
B = ("203.0.113.2", 5000)
V6 = ("2001:db8::7", 6000)
PEER = ("192.0.2.50", 9001)
NOW = 1000.0
COOKIE_A, COOKIE_B = bytes(range(1, 17)), bytes(range(17, 33))


def decode_all(sent):
    return [(wire.decode(payload), address) for payload, address in sent]


class DiscoverTests(SynchronousTestCase):
    def setUp(self):
        self.core = BeaconCore(1)

    def test_reply_with_observed_address_and_record(self):
        sent = decode_all(self.core.receive(wire.padded_discover(5), A, NOW))
        self.assertEqual(sent, [(wire.DiscoverReply(wire.Endpoint(*A)), A)])
        self.assertEqual(self.core.nodes[5], (A, NOW))

    def test_ipv6(self):
        sent = decode_all(self.core.receive(wire.padded_discover(5), V6, NOW))
        self.assertEqual(sent, [(wire.DiscoverReply(wire.Endpoint(*V6)), V6)])

    def test_a_reference_discover_is_recorded_but_its_larger_reply_not_sent(self):
        """5 bytes in must not buy 8 (IPv4) or 20 (IPv6) bytes out at a forged source."""
        for node, source in ((5, A), (0, A), (6, V6)):
            self.assertEqual(self.core.receive(wire.encode(wire.Discover(node)), source, NOW), [])
        self.assertEqual(self.core.nodes[5], (A, NOW))
        self.assertEqual(self.core.nodes[6], (V6, NOW))
        self.assertEqual(self.core.dropped["discover_unanswered_short"], 3)

    def test_the_operator_can_answer_reference_discovers_as_the_reference_does(self):
        core = BeaconCore(1, answer_short_discovers=True)
        sent = decode_all(core.receive(wire.encode(wire.Discover(0)), A, NOW))
        self.assertEqual(sent, [(wire.DiscoverReply(wire.Endpoint(*A)), A)])

    def test_node_zero_not_recorded(self):
        self.core.receive(wire.encode(wire.Discover(0)), A, NOW)
        self.assertEqual(self.core.nodes, {})

    def test_expiry_after_ten_minutes(self):
        self.core.receive(wire.encode(wire.Discover(5)), A, NOW)
        self.assertEqual(self.core.expire(NOW + 599), 0)
        self.assertEqual(self.core.expire(NOW + 601), 1)
        self.assertEqual(self.core.nodes, {})

    def test_node_table_cap(self):
        core = BeaconCore(1, max_nodes=2)
        for node in (1, 2, 3):
            self.assertEqual(len(core.receive(wire.padded_discover(node), A, NOW)), 1)
        self.assertEqual(sorted(core.nodes), [1, 2])
        self.assertEqual(core.dropped["node_table_full"], 1)
        core.receive(wire.encode(wire.Discover(1)), B, NOW)  # refreshing a known node is fine
        self.assertEqual(core.nodes[1][0], B)


class PunchTests(SynchronousTestCase):
    def test_commands_to_both_sides(self):
        core = BeaconCore(1)
        core.receive(wire.encode(wire.Discover(6)), B, NOW)
        sent = decode_all(core.receive(wire.encode(wire.PunchRequest(5, 6)), A, NOW))
        self.assertEqual(sent, [(wire.PunchCommand(wire.Endpoint(*B)), A),
                                (wire.PunchCommand(wire.Endpoint(*A)), B)])
        self.assertEqual(core.nodes[5][0], A)

    def test_commands_carry_each_sides_cookie_when_the_request_paid_for_it(self):
        core = BeaconCore(1)
        [(reply, _)] = decode_all(core.receive(wire.padded_discover(6, COOKIE_B), B, NOW))
        self.assertEqual(reply, wire.DiscoverReply(wire.Endpoint(*B), COOKIE_B))  # echoed: B knows us
        core.receive(wire.padded_discover(5, COOKIE_A), A, NOW)
        sent = decode_all(core.receive(wire.padded(wire.PunchRequest(5, 6)), A, NOW))
        self.assertEqual(sent, [(wire.PunchCommand(wire.Endpoint(*B), COOKIE_A), A),
                                (wire.PunchCommand(wire.Endpoint(*A), COOKIE_B), B)])
        # The reference's 9-byte request: plain commands, no larger than it.
        for payload, _ in core.receive(wire.encode(wire.PunchRequest(5, 6)), A, NOW):
            self.assertEqual(wire.decode(payload).cookie, b"")

    def test_no_command_larger_than_the_request_goes_back_to_its_source(self):
        core = BeaconCore(1)
        core.receive(wire.padded_discover(6), V6, NOW)
        sent = decode_all(core.receive(wire.encode(wire.PunchRequest(5, 6)), A, NOW))
        self.assertEqual(sent, [(wire.PunchCommand(wire.Endpoint(*A)), V6)])  # the IPv6 one (20 B) kept back
        self.assertEqual(core.dropped["punch_reply_oversized"], 1)
        sent = decode_all(core.receive(wire.padded(wire.PunchRequest(5, 6)), A, NOW))
        self.assertEqual([address for _, address in sent], [A, V6])

    def test_a_cookie_goes_only_to_the_address_its_discover_came_from(self):
        core = BeaconCore(1)
        core.receive(wire.padded_discover(6, COOKIE_B), B, NOW)
        core.receive(wire.padded_discover(5, COOKIE_A), A, NOW)
        moved = (A[0], A[1] + 1)  # a request for node 5 from elsewhere (forged, or the NAT moved)
        sent = decode_all(core.receive(wire.padded(wire.PunchRequest(5, 6)), moved, NOW))
        self.assertEqual(sent[0], (wire.PunchCommand(wire.Endpoint(*B)), moved))
        core.receive(wire.encode(wire.Discover(6)), B, NOW)  # an unpadded Discover drops B's cookie
        self.assertNotIn(6, core.cookies)
        core.expire(NOW + 601)
        self.assertEqual(core.cookies, {})

    def test_unknown_target(self):
        core = BeaconCore(1)
        self.assertEqual(core.receive(wire.encode(wire.PunchRequest(5, 6)), A, NOW), [])


class RelayTests(SynchronousTestCase):
    def setUp(self):
        self.core = BeaconCore(1, max_relay_frame=100)
        self.core.receive(wire.encode(wire.Discover(5)), A, NOW)
        self.core.receive(wire.encode(wire.Discover(6)), B, NOW)

    def test_delivered_to_the_destination(self):
        sent = decode_all(self.core.receive(wire.relay_envelope(5, 6, b"PILTdata"), A, NOW))
        self.assertEqual(sent, [(wire.RelayDeliver(5, b"PILTdata"), B)])
        self.assertEqual(self.core.relayed, 1)

    def test_spoofed_sender_dropped(self):
        self.assertEqual(self.core.receive(wire.relay_envelope(5, 6, b"PILTdata"), B, NOW), [])
        self.assertEqual(self.core.receive(wire.relay_envelope(9, 6, b"PILTdata"), B, NOW), [])
        self.assertEqual(self.core.dropped["relay_spoofed_sender"], 2)

    def test_oversized_and_unknown_destination_dropped(self):
        self.assertEqual(self.core.receive(wire.relay_envelope(5, 6, b"x" * 101), A, NOW), [])
        self.assertEqual(self.core.receive(wire.relay_envelope(5, 7, b"PILT"), A, NOW), [])
        self.assertEqual(self.core.dropped["relay_oversized"], 1)
        self.assertEqual(self.core.dropped["relay_unknown_destination"], 1)

    def test_forwarded_to_the_peer_beacon_that_owns_the_destination(self):
        self.core.set_peers({PEER})
        self.core.receive(wire.encode(wire.Sync(2, (7, 8))), PEER, NOW)
        envelope = wire.relay_envelope(5, 7, b"PILTdata")
        self.assertEqual(self.core.receive(envelope, A, NOW), [(envelope, PEER)])
        # From the peer: delivered locally, never bounced back.
        sent = decode_all(self.core.receive(wire.relay_envelope(7, 6, b"PILT"), PEER, NOW))
        self.assertEqual(sent, [(wire.RelayDeliver(7, b"PILT"), B)])
        self.assertEqual(self.core.receive(wire.relay_envelope(6, 8, b"PILT"), PEER, NOW), [])

    def test_peer_claims_expire_and_strangers_cannot_sync(self):
        self.core.receive(wire.encode(wire.Sync(2, (7,))), PEER, NOW)
        self.assertEqual(self.core.dropped["sync_from_stranger"], 1)
        self.core.set_peers({PEER})
        self.core.receive(wire.encode(wire.Sync(2, (7,))), PEER, NOW)
        self.core.expire(NOW + PEER_CLAIM_EXPIRY + 1)
        self.assertEqual(self.core.peer_claims, {})


class SyncTests(SynchronousTestCase):
    def test_sync_lists_local_nodes_to_each_peer(self):
        core = BeaconCore(3)
        core.receive(wire.encode(wire.Discover(6)), B, NOW)
        core.receive(wire.encode(wire.Discover(5)), A, NOW)
        core.set_peers({PEER})
        self.assertEqual(decode_all(core.sync_datagrams(NOW)), [(wire.Sync(3, (5, 6)), PEER)])

    def test_large_tables_split_into_datagrams_that_fit(self):
        core = BeaconCore(3)
        core.set_peers({PEER})
        for node in range(1, 20_001):
            core.nodes[node] = (A, NOW)
        sent = core.sync_datagrams(NOW)
        self.assertEqual(len(sent), 2)
        self.assertTrue(all(len(payload) < 65_507 for payload, _ in sent))


class MalformedTests(SynchronousTestCase):
    def test_beacon_to_daemon_types_and_garbage_dropped(self):
        core = BeaconCore(1)
        for datagram in (b"", b"\x01\x00", b"\x09abc",
                         wire.encode(wire.DiscoverReply(wire.Endpoint(*A)))):
            self.assertEqual(core.receive(datagram, A, NOW), [])
        self.assertEqual(core.dropped["malformed"], 3)
        self.assertEqual(core.dropped["unexpected"], 1)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=40))
    def test_random_datagrams_never_raise(self, datagram):
        core = BeaconCore(1)
        core.set_peers({PEER})
        core.receive(datagram, A, NOW)
        core.receive(datagram, PEER, NOW)

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, 3), st.binary(max_size=120))
    def test_random_sync_trailers_never_raise_nor_authenticate(self, count, tail):
        core = BeaconCore(1, peer_auth=PeerAuth(b"0123456789abcdef"))
        datagram = wire.encode(wire.Sync(4, tuple(range(count)))) + tail
        self.assertEqual(core.receive(datagram, PEER, NOW), [])
        self.assertEqual(core.peers, set())


SECRET = b"0123456789abcdef0123456789abcdef"
VICTIM = ("192.0.2.66", 7777)


def big_table(core, count=20_000):
    for node in range(1, count + 1):
        core.nodes[node] = (A, NOW)


class PeerAuthenticationTests(SynchronousTestCase):
    """The registry's beacon list is anybody's: it must not aim our syncs at a victim."""

    def test_without_a_secret_listed_beacons_get_nothing(self):
        core = BeaconCore(3)
        big_table(core)
        core.set_peers((), {VICTIM})
        self.assertEqual(core.sync_datagrams(NOW), [])

    def test_the_operators_peers_are_synced_without_a_secret(self):
        core = BeaconCore(3)
        core.nodes[5] = (A, NOW)
        core.set_peers({PEER}, {VICTIM})
        self.assertEqual(decode_all(core.sync_datagrams(NOW)), [(wire.Sync(3, (5,)), PEER)])

    def test_an_unproven_listed_beacon_gets_only_a_small_hello(self):
        core = BeaconCore(3, peer_auth=PeerAuth(SECRET))
        big_table(core)
        core.set_peers((), {VICTIM})
        [(hello, address)] = core.sync_datagrams(NOW)
        self.assertEqual(address, VICTIM)
        self.assertEqual(len(hello), wire.sync_size(0) + TRAILER_SIZE)
        self.assertEqual(wire.decode(hello), wire.Sync(3, ()))

    def test_a_peer_that_proves_the_secret_gets_full_syncs_and_its_claims_count(self):
        ours, theirs = BeaconCore(3, peer_auth=PeerAuth(SECRET)), BeaconCore(4, peer_auth=PeerAuth(SECRET))
        ours.nodes[5] = (A, NOW)
        theirs.nodes[6] = (B, NOW)
        ours.set_peers((), {PEER})
        theirs.set_peers((), {A})
        [(hello, _)] = theirs.sync_datagrams(NOW)  # they do not know us either: a hello
        self.assertEqual(ours.receive(hello, PEER, NOW), [])
        self.assertEqual(ours.peers, {PEER})
        theirs.proven_peers[A] = NOW
        [(sync, _)] = theirs.sync_datagrams(NOW)
        self.assertEqual(ours.receive(sync, PEER, NOW), [])
        self.assertEqual(ours.peer_claims, {6: (PEER, NOW)})
        sent = ours.sync_datagrams(NOW + 1)
        self.assertEqual([(wire.decode(payload), address) for payload, address in sent],
                         [(wire.Sync(3, (5,)), PEER)])
        self.assertIsNone(theirs.peer_auth.check(sent[0][0], wire.sync_size(1), 3, NOW + 1))

    def test_unauthenticated_forged_stale_and_replayed_syncs_are_refused(self):
        core = BeaconCore(3, peer_auth=PeerAuth(SECRET))
        sender = PeerAuth(SECRET)
        plain = wire.encode(wire.Sync(4, (7,)))
        core.receive(plain, PEER, NOW)
        core.receive(PeerAuth(b"another secret, not ours").seal(plain, NOW), PEER, NOW)
        core.receive(sender.seal(plain, NOW - 60), PEER, NOW)
        genuine = sender.seal(plain, NOW)
        core.receive(genuine, PEER, NOW)
        core.receive(genuine, VICTIM, NOW + 1)  # a capture, replayed from another address
        self.assertEqual(core.dropped["sync_unauthenticated"], 1)
        self.assertEqual(core.dropped["sync_bad_tag"], 1)
        self.assertEqual(core.dropped["sync_stale"], 1)
        self.assertEqual(core.dropped["sync_replayed"], 1)
        self.assertEqual(set(core.proven_peers), {PEER})

    def test_relays_from_a_listed_but_unproven_beacon_need_a_discovered_sender(self):
        core = BeaconCore(3, peer_auth=PeerAuth(SECRET))
        core.receive(wire.encode(wire.Discover(6)), B, NOW)
        core.set_peers((), {PEER})
        self.assertEqual(core.receive(wire.relay_envelope(99, 6, b"PILT"), PEER, NOW), [])
        self.assertEqual(core.dropped["relay_spoofed_sender"], 1)
        core.receive(PeerAuth(SECRET).seal(wire.encode(wire.Sync(4, ())), NOW), PEER, NOW)
        sent = decode_all(core.receive(wire.relay_envelope(99, 6, b"PILT"), PEER, NOW))
        self.assertEqual(sent, [(wire.RelayDeliver(99, b"PILT"), B)])

    def test_proofs_expire(self):
        core = BeaconCore(3, peer_auth=PeerAuth(SECRET))
        core.receive(PeerAuth(SECRET).seal(wire.encode(wire.Sync(4, ())), NOW), PEER, NOW)
        self.assertEqual(core.peers, {PEER})
        core.expire(NOW + PEER_CLAIM_EXPIRY + 1)
        self.assertEqual(core.peers, set())


class SourceLimitTests(SynchronousTestCase):
    def test_one_source_ip_cannot_fill_the_node_table(self):
        core = BeaconCore(3, max_nodes_per_ip=10, request_burst=10_000)
        for node in range(1, 1001):
            core.receive(wire.encode(wire.Discover(node)), (A[0], 4000 + node), NOW)
        self.assertEqual(len(core.nodes), 10)
        self.assertEqual(core.dropped["node_limit_per_ip"], 990)
        core.receive(wire.encode(wire.Discover(5000)), B, NOW)  # others still get in
        self.assertIn(5000, core.nodes)

    def test_a_node_that_moves_is_counted_at_its_new_ip_only(self):
        core = BeaconCore(3, max_nodes_per_ip=1)
        core.receive(wire.encode(wire.Discover(5)), A, NOW)
        core.receive(wire.encode(wire.Discover(5)), B, NOW)
        core.receive(wire.encode(wire.Discover(6)), A, NOW)
        self.assertEqual(core.nodes, {5: (B, NOW), 6: (A, NOW)})
        core.expire(NOW + 601)
        core.receive(wire.encode(wire.Discover(7)), B, NOW + 601)
        self.assertIn(7, core.nodes)

    def test_requests_per_source_ip_are_rate_limited(self):
        core = BeaconCore(3)
        replies = sum(len(core.receive(wire.padded_discover(0), A, NOW)) for _ in range(1000))
        self.assertEqual(replies, REQUEST_BURST)
        replies = sum(len(core.receive(wire.padded_discover(0), A, NOW + 1)) for _ in range(1000))
        self.assertEqual(replies, REQUEST_RATE)

    def test_punch_commands_towards_one_target_are_rate_limited(self):
        core = BeaconCore(3, request_burst=10_000)
        core.receive(wire.encode(wire.Discover(6)), VICTIM, NOW)
        to_victim = 0
        for requester in range(100, 1100):
            sent = core.receive(wire.encode(wire.PunchRequest(requester, 6)), (A[0], requester), NOW)
            to_victim += sum(1 for _, address in sent if address == VICTIM)
        self.assertEqual(to_victim, PUNCH_TARGET_BURST)

    def test_no_answer_to_a_node_is_larger_than_its_request(self):
        core = BeaconCore(3)
        self.assertEqual(core.receive(wire.encode(wire.Discover(0)), A, NOW), [])
        for source in (A, V6):
            [(reply, _)] = core.receive(wire.padded_discover(0), source, NOW)
            self.assertLessEqual(len(reply), wire.PADDED_REQUEST_SIZE)
        core.receive(wire.encode(wire.Discover(6)), B, NOW)
        for payload, _ in core.receive(wire.encode(wire.PunchRequest(5, 6)), A, NOW):
            self.assertLess(len(payload), len(wire.encode(wire.PunchRequest(5, 6))))
