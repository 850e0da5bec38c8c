"""The beacon's decisions, datagram by datagram, with a hand-moved clock."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.beacon.core import BeaconCore, PEER_CLAIM_EXPIRY
from pilotnet.wire import beacon as wire

A = ("198.51.100.1", 4000)
B = ("203.0.113.2", 5000)
V6 = ("2001:db8::7", 6000)
PEER = ("192.0.2.50", 9001)
NOW = 1000.0


def decode_all(sent):
    return [(wire.decode(payload), address) for payload, address in sent]


class DiscoverTests(SynchronousTestCase):
    def setUp(self):
        self.core = BeaconCore(1)

    def test_reply_with_observed_address_and_record(self):
        sent = decode_all(self.core.receive(wire.encode(wire.Discover(5)), A, NOW))
        self.assertEqual(sent, [(wire.DiscoverReply(wire.Endpoint(*A)), A)])
        self.assertEqual(self.core.nodes[5], (A, NOW))

    def test_ipv6(self):
        sent = decode_all(self.core.receive(wire.encode(wire.Discover(5)), V6, NOW))
        self.assertEqual(sent, [(wire.DiscoverReply(wire.Endpoint(*V6)), V6)])

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
            self.assertEqual(len(core.receive(wire.encode(wire.Discover(node)), A, NOW)), 1)
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
        self.assertEqual(decode_all(core.sync_datagrams()), [(wire.Sync(3, (5, 6)), PEER)])

    def test_large_tables_split_into_datagrams_that_fit(self):
        core = BeaconCore(3)
        core.set_peers({PEER})
        for node in range(1, 20_001):
            core.nodes[node] = (A, NOW)
        sent = core.sync_datagrams()
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
