"""The tunnel: key exchange, sealing, queueing, recovery after restarts, paths, refusal of forgeries."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.crypto.identity import Identity
from pilotnet.crypto.tunnel import TunnelKeyPair, build_auth_key_offer
from pilotnet.daemon.source_limits import PER_SOURCE_BURST, PER_SOURCE_RATE
from pilotnet.daemon.tunnel import PUNCH_BUDGET, PUNCH_BURST, QUEUE_PER_PEER, Tunnel
from pilotnet.wire import beacon
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import PROTO_DATAGRAM, Packet
from pilotnet.wire.tunnel import MAGIC_AUTH_KEY, MAGIC_PLAINTEXT, MAGIC_SEALED, plaintext_frame
from tests.daemon.fakes import DatagramNetwork, StaticKeys

A_ADDR = ("127.0.0.1", 1001)
B_ADDR = ("127.0.0.1", 1002)
BEACON = ("127.0.0.1", 9001)
#: Where the registry says each node is (what the daemon's on_unknown_session resolves).
REGISTERED = {1: A_ADDR, 2: B_ADDR}


def datagram(src, dst, payload=b"hi"):
    return Packet(PROTO_DATAGRAM, Addr(0, src), Addr(0, dst), 49152, 1000, payload=payload).encode()


class Node:
    def __init__(self, network, clock, keys, node_id, address, *, encrypt=True):
        self.identity = Identity.generate()
        keys.keys[node_id] = self.identity.public_key
        self.received = []
        self.tunnel = Tunnel(identity=self.identity, key_pair=TunnelKeyPair.generate(), peer_keys=keys,
                             clock=clock, on_packet=lambda packet, peer: self.received.append(packet),
                             encrypt=encrypt, on_unknown_session=self.rekey_at_registered_endpoint)
        self.tunnel.node_id = node_id
        self.tunnel.beacon_address = BEACON
        network.attach(self.tunnel, address)

    def rekey_at_registered_endpoint(self, node):
        if node in REGISTERED:
            self.tunnel.add_peer(node, REGISTERED[node], ask_back=True)


class TunnelTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.network = DatagramNetwork()
        self.keys = StaticKeys()
        self.a = Node(self.network, self.clock, self.keys, 1, A_ADDR)
        self.b = Node(self.network, self.clock, self.keys, 2, B_ADDR)

    def restart_b(self):
        self.b = Node(self.network, self.clock, self.keys, 2, B_ADDR)

    def test_packets_wait_for_the_key_exchange_then_arrive_sealed(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        for index in range(3):
            self.a.tunnel.send(2, datagram(1, 2, b"%d" % index))
        self.assertTrue(all(data[:4] == MAGIC_AUTH_KEY for _, _, data in self.network.sent))
        self.network.deliver()
        self.assertEqual([p.payload for p in self.b.received], [b"0", b"1", b"2"])
        self.a.tunnel.send(2, datagram(1, 2, b"later"))
        self.assertEqual(self.network.sent[-1][2][:4], MAGIC_SEALED)
        self.network.deliver()
        self.assertEqual(self.b.received[-1].payload, b"later")
        peer = self.b.tunnel.peer(1)
        self.assertTrue(peer.authenticated)
        self.assertEqual(peer.endpoint, A_ADDR)

    def test_a_sealed_packet_is_vouched_for_by_its_tag_not_its_checksum(self):
        """The CRC inside a sealed frame is not checked (the AEAD tag covers every byte); a forged frame still fails."""
        self.a.tunnel.add_peer(2, B_ADDR)
        self.a.tunnel.send(2, datagram(1, 2, b"first"))
        self.network.deliver()
        wrong_checksum = bytearray(datagram(1, 2, b"second"))
        wrong_checksum[30] ^= 0xFF
        self.a.tunnel.send(2, bytes(wrong_checksum))
        self.network.deliver()
        self.assertEqual([p.payload for p in self.b.received], [b"first", b"second"])
        self.a.tunnel.send(2, datagram(1, 2, b"third"))
        forged = bytearray(self.network.sent[-1][2])
        forged[-20] ^= 0x01
        self.network.sent[-1] = (*self.network.sent[-1][:2], bytes(forged))
        self.network.deliver()
        self.assertEqual(len(self.b.received), 2)
        self.assertEqual(self.b.tunnel.counters.auth_failures, 1)

    def sealed_run(self, payloads):
        """Frames A sealed for B (the tunnel keyed), as a coalesced run would bring them."""
        self.a.tunnel.add_peer(2, B_ADDR)
        self.a.tunnel.send(2, datagram(1, 2, b"key"))
        self.network.deliver()
        del self.b.received[:]
        seal = self.a.tunnel.peer(2).session.seal
        return [seal(datagram(1, 2, payload)) for payload in payloads]

    def test_a_run_of_sealed_frames_arrives_in_order_and_counted(self):
        run = self.sealed_run([b"%d" % index for index in range(5)])
        before = self.b.tunnel.counters.pkts_recv
        self.b.tunnel.datagrams_received(run, A_ADDR)
        self.assertEqual([p.payload for p in self.b.received], [b"%d" % index for index in range(5)])
        self.assertEqual(self.b.tunnel.counters.pkts_recv - before, 5)
        self.assertEqual(self.b.tunnel.peer(1).frames_received, 6)

    def test_a_run_refuses_its_bad_frames_one_by_one(self):
        """A forged, a replayed and a spoofed frame inside a run are each refused; the others arrive."""
        run = self.sealed_run([b"0", b"1", b"2", b"3"])
        forged = bytearray(run[1])
        forged[-1] ^= 0x01
        spoofed = self.a.tunnel.peer(2).session.seal(datagram(7, 2, b"spoofed"))
        self.b.tunnel.datagrams_received([run[0], bytes(forged), run[0], spoofed, run[2], b"PILP", run[3]], A_ADDR)
        self.assertEqual([p.payload for p in self.b.received], [b"0", b"2", b"3"])
        counters = self.b.tunnel.counters
        self.assertEqual((counters.auth_failures, counters.replays, counters.spoofed_source), (1, 1, 1))

    def test_a_run_stops_opening_frames_for_a_peer_dropped_midway(self):
        """Trust in the peer ended while its run was being read: the rest of the run finds no session."""
        run = self.sealed_run([b"0", b"1", b"2", b"3"])
        tunnel = self.b.tunnel

        def received(packet, peer):
            self.b.received.append(packet)
            if packet.payload == b"1":
                tunnel.drop_peer(1)

        tunnel.on_packet = received
        tunnel.datagrams_received(run, A_ADDR)
        self.assertEqual([p.payload for p in self.b.received], [b"0", b"1"])
        self.assertEqual(tunnel.counters.no_session, 2)

    def test_a_peer_that_lost_our_session_gets_it_back_from_a_small_frame(self):
        """B dropped A's session (A's key offer was lost, or B let the tunnel go); A still seals.

        A small sealed frame is not answered at its source (that would reflect a 138-byte
        PILA), so B offers its key where A registered and asks A for A's own; without that
        request A, keyed already, would never offer again and B would drop A's frames for good.
        """
        self.a.tunnel.add_peer(2, B_ADDR)
        self.a.tunnel.send(2, datagram(1, 2, b"first"))
        self.network.deliver()
        self.b.tunnel.drop_peer(1)
        self.a.tunnel.send(2, datagram(1, 2, b"lost"))
        self.network.deliver()
        self.a.tunnel.send(2, datagram(1, 2, b"heard"))
        self.network.deliver()
        self.assertEqual([p.payload for p in self.b.received], [b"first", b"heard"])

    def test_a_burst_goes_out_in_one_segmented_send_and_arrives_in_order(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.a.tunnel.send(2, datagram(1, 2, b"first"))
        self.network.deliver()
        handle = self.a.tunnel.transport.getHandle()
        sent_before = self.a.tunnel.counters.pkts_sent
        burst = [datagram(1, 2, b"%04d" % index) for index in range(10)]
        self.a.tunnel.send_burst(2, burst)
        self.assertEqual(handle.segmented_sends, 1)
        self.assertTrue(all(data[:4] == MAGIC_SEALED for _, _, data in self.network.sent))
        self.network.deliver()
        self.assertEqual([p.payload for p in self.b.received[1:]], [b"%04d" % index for index in range(10)])
        self.assertEqual(self.a.tunnel.counters.pkts_sent - sent_before, 10)

    def test_a_burst_before_the_key_exchange_waits_like_single_packets(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.a.tunnel.send_burst(2, [datagram(1, 2, b"a"), datagram(1, 2, b"b")])
        self.network.deliver()
        self.assertEqual([p.payload for p in self.b.received], [b"a", b"b"])

    def test_nothing_goes_out_in_clear(self):
        self.a.tunnel.send(2, datagram(1, 2, b"secret"))
        self.a.tunnel.add_peer(2, B_ADDR)
        self.a.tunnel.send(2, datagram(1, 2, b"secret"))
        self.network.deliver()
        for _, _, data in self.network.sent:
            self.assertNotIn(b"secret", data)

    def test_queue_is_bounded(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        for index in range(QUEUE_PER_PEER + 10):
            self.a.tunnel.send(2, datagram(1, 2, b"%d" % index))
        self.assertEqual(self.a.tunnel.counters.queue_drops, 10)
        self.network.deliver()
        self.assertEqual(len(self.b.received), QUEUE_PER_PEER)
        self.assertEqual(self.b.received[0].payload, b"10")

    def test_a_forged_pila_is_refused(self):
        intruder = Identity.generate()
        offer = build_auth_key_offer(intruder, 1, TunnelKeyPair.generate())
        self.b.tunnel.datagramReceived(offer.encode(), ("127.0.0.1", 6666))
        self.assertIsNone(self.b.tunnel.peer(1))
        self.assertEqual(self.b.tunnel.counters.auth_failures, 1)
        self.assertFalse(self.network.sent)

    def test_unknown_node_pila_is_refused(self):
        stranger = Identity.generate()
        offer = build_auth_key_offer(stranger, 99, TunnelKeyPair.generate())
        self.b.tunnel.datagramReceived(offer.encode(), ("127.0.0.1", 6666))
        self.assertEqual(self.b.tunnel.counters.auth_failures, 1)

    def test_recovery_after_the_peer_restarts_with_new_keys(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        self.restart_b()
        self.a.tunnel.send(2, datagram(1, 2, b"after restart"))
        self.network.deliver()
        # b had no session: it asked for a key exchange, a re-keyed; the first packet is lost.
        self.assertEqual(self.b.tunnel.counters.no_session, 1)
        self.a.tunnel.send(2, datagram(1, 2, b"again"))
        self.network.deliver()
        self.assertEqual([p.payload for p in self.b.received], [b"again"])

    def test_recovery_after_we_restart(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        self.b.tunnel.send(1, datagram(2, 1, b"to a"))
        self.network.deliver()
        self.assertEqual(len(self.a.received), 1)
        self.restart_b()
        self.b.tunnel.add_peer(1, A_ADDR)  # what the daemon's dial does after resolving
        self.b.tunnel.send(1, datagram(2, 1, b"from new b"))
        self.network.deliver()
        self.assertEqual(self.a.received[-1].payload, b"from new b")

    def test_packet_claiming_another_source_is_dropped(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        self.a.tunnel.send(2, datagram(7, 2, b"spoofed"))
        self.network.deliver()
        self.assertEqual(self.b.received, [])
        self.assertEqual(self.b.tunnel.counters.spoofed_source, 1)

    def test_replayed_frame_is_dropped(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        self.a.tunnel.send(2, datagram(1, 2))
        frame = self.network.sent[-1][2]
        self.network.deliver()
        self.b.tunnel.datagramReceived(frame, A_ADDR)
        self.assertEqual(len(self.b.received), 1)
        self.assertEqual(self.b.tunnel.counters.replays, 1)
        self.assertEqual(self.b.tunnel.counters.auth_failures, 0)

    def test_plaintext_refused_when_encrypting(self):
        self.b.tunnel.datagramReceived(plaintext_frame(datagram(1, 2)), A_ADDR)
        self.assertEqual(self.b.received, [])
        self.assertEqual(self.b.tunnel.counters.plaintext_refused, 1)

    def test_plaintext_mode(self):
        a = Node(self.network, self.clock, self.keys, 3, ("127.0.0.1", 1003), encrypt=False)
        b = Node(self.network, self.clock, self.keys, 4, ("127.0.0.1", 1004), encrypt=False)
        a.tunnel.add_peer(4, ("127.0.0.1", 1004))
        a.tunnel.send(4, datagram(3, 4, b"clear"))
        self.assertEqual(self.network.sent[-1][2][:4], MAGIC_PLAINTEXT)
        self.network.deliver()
        self.assertEqual(b.received[0].payload, b"clear")

    def test_relay_path(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        self.a.tunnel.use_relay(2)
        self.a.tunnel.send(2, datagram(1, 2, b"via beacon"))
        source, destination, data = self.network.sent[-1]
        self.assertEqual(destination, BEACON)
        relay = beacon.decode(data)
        self.assertEqual((relay.sender, relay.destination), (1, 2))
        # The beacon hands it to b as a relay delivery.
        self.b.tunnel.datagramReceived(beacon.encode(beacon.RelayDeliver(1, relay.frame)), BEACON)
        self.assertEqual(self.b.received[-1].payload, b"via beacon")

    def test_relayed_frame_does_not_demote_a_working_direct_path(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        self.a.tunnel.use_relay(2)
        self.a.tunnel.send(2, datagram(1, 2))
        relay = beacon.decode(self.network.sent[-1][2])
        self.b.tunnel.datagramReceived(beacon.encode(beacon.RelayDeliver(1, relay.frame)), BEACON)
        self.assertEqual(self.b.tunnel.peer(1).path, "direct")
        self.clock.advance(10)
        self.a.tunnel.send(2, datagram(1, 2))
        relay = beacon.decode(self.network.sent[-1][2])
        self.b.tunnel.datagramReceived(beacon.encode(beacon.RelayDeliver(1, relay.frame)), BEACON)
        self.assertEqual(self.b.tunnel.peer(1).path, "relay")

    def test_relay_delivery_with_a_mismatched_sender_is_dropped(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        self.network.deliver()
        self.a.tunnel.send(2, datagram(1, 2))
        frame = self.network.sent[-1][2]
        self.b.tunnel.datagramReceived(beacon.encode(beacon.RelayDeliver(5, frame)), BEACON)
        self.assertEqual(self.b.tunnel.counters.spoofed_source, 1)

    def test_beacon_messages_only_from_the_beacon(self):
        command = beacon.encode(beacon.PunchCommand(beacon.Endpoint("198.51.100.7", 4000)))
        self.a.tunnel.datagramReceived(command, ("127.0.0.1", 5555))
        self.assertFalse(self.network.sent)
        self.a.tunnel.datagramReceived(command, BEACON)
        # Three PILPs and our PILA (see test_nat_traversal).
        self.assertEqual([d for _, d, _ in self.network.sent], [("198.51.100.7", 4000)] * 4)

    def test_garbage_is_counted_not_raised(self):
        for junk in (b"PILS", b"PILA" + bytes(10), b"PILK", b"\x02\x09", b"ZZZZZZ", b"PILT" + bytes(5)):
            self.a.tunnel.datagramReceived(junk, B_ADDR)
        self.assertGreater(self.a.tunnel.counters.malformed + self.a.tunnel.counters.no_session, 0)

    def test_key_offer_resend_is_rate_limited(self):
        self.a.tunnel.add_peer(2, B_ADDR)
        for _ in range(5):
            self.a.tunnel.send(2, datagram(1, 2))
        offers = [d for _, _, d in self.network.sent if d[:4] == MAGIC_AUTH_KEY]
        self.assertEqual(len(offers), 1)
        self.clock.advance(1.5)
        self.a.tunnel.send(2, datagram(1, 2))
        offers = [d for _, _, d in self.network.sent if d[:4] == MAGIC_AUTH_KEY]
        self.assertEqual(len(offers), 2)


ATTACKER = ("10.0.0.66", 6666)


def sealed_frame(node, size):
    """A PILS frame claiming ``node`` that no session can open, ``size`` bytes long."""
    return MAGIC_SEALED + node.to_bytes(4, "big") + bytes(size - 8)


class TwoNodesCase(SynchronousTestCase):
    """Nodes 1 and 2 on an in-memory network, the clock at 1000 s."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.network = DatagramNetwork()
        self.keys = StaticKeys()
        self.a = Node(self.network, self.clock, self.keys, 1, A_ADDR)
        self.b = Node(self.network, self.clock, self.keys, 2, B_ADDR)

    def sent_to(self, address):
        return [data for _, destination, data in self.network.sent if destination == address]


class FloodTests(TwoNodesCase):
    """Unauthenticated floods buy a bounded amount of work per source, and no amplification."""

    def test_no_session_replies_are_limited_per_source_not_per_claimed_node(self):
        for node in range(1000, 6000):  # 5000 claimed nodes, one source
            self.b.tunnel.datagramReceived(sealed_frame(node, 200), ATTACKER)
        self.assertEqual(len(self.sent_to(ATTACKER)), PER_SOURCE_BURST)
        self.network.sent.clear()
        self.clock.advance(1.0)
        for node in range(6000, 7000):
            self.b.tunnel.datagramReceived(sealed_frame(node, 200), ATTACKER)
        self.assertEqual(len(self.sent_to(ATTACKER)), PER_SOURCE_RATE)
        self.assertGreater(self.b.tunnel.counters.rate_limited, 5900)

    def test_a_frame_smaller_than_our_pila_is_never_answered_at_its_source(self):
        self.b.tunnel.datagramReceived(sealed_frame(1, 80), ATTACKER)
        self.assertEqual(self.sent_to(ATTACKER), [])
        # Node 1 is offered our key where the registry says it is instead.
        [offer] = self.sent_to(A_ADDR)
        self.assertEqual(offer[:4], MAGIC_AUTH_KEY)

    def test_no_reply_is_larger_than_the_frame_that_caused_it(self):
        for size in (40, 80, 137, 138, 500):
            self.clock.advance(10)
            frame = sealed_frame(7000 + size, size)
            self.b.tunnel.datagramReceived(frame, ATTACKER)
            for reply in self.sent_to(ATTACKER):
                self.assertLessEqual(len(reply), len(frame))
            self.network.sent.clear()

    def test_a_forged_pila_flood_costs_at_most_the_source_budget_and_pings_still_work(self):
        intruder = Identity.generate()
        lookups_before = self.keys.lookups
        for _ in range(1000):
            offer = build_auth_key_offer(intruder, 1, TunnelKeyPair.generate())
            self.b.tunnel.datagramReceived(offer.encode(), ATTACKER)
        self.assertLessEqual(self.keys.lookups - lookups_before, 2 * PER_SOURCE_BURST)
        self.assertEqual(self.b.tunnel.counters.auth_failures, PER_SOURCE_BURST)
        self.assertEqual(self.b.tunnel.counters.rate_limited, 1000 - PER_SOURCE_BURST)
        self.assertIsNone(self.b.tunnel.peer(1))
        # The real node 1 still keys and its packets arrive.
        self.network.sent.clear()
        self.a.tunnel.add_peer(2, B_ADDR)
        self.a.tunnel.send(2, datagram(1, 2, b"ping"))
        self.network.deliver()
        self.assertEqual([p.payload for p in self.b.received], [b"ping"])

    def test_relayed_floods_are_limited_per_relayed_sender(self):
        for node in range(1000, 1100):
            relayed = beacon.encode(beacon.RelayDeliver(node, sealed_frame(node, 200)))
            self.b.tunnel.datagramReceived(relayed, BEACON)
        # Each relayed sender has its own bucket: the beacon's address is not one source for all.
        self.assertEqual(len(self.sent_to(BEACON)), 100)
        self.network.sent.clear()
        for _ in range(100):
            relayed = beacon.encode(beacon.RelayDeliver(5, sealed_frame(5, 200)))
            self.b.tunnel.datagramReceived(relayed, BEACON)
        self.assertLessEqual(len(self.sent_to(BEACON)), 1)

    def test_a_relayed_frame_claiming_another_node_is_not_answered(self):
        relayed = beacon.encode(beacon.RelayDeliver(5, sealed_frame(6, 200)))
        self.b.tunnel.datagramReceived(relayed, BEACON)
        self.assertEqual(self.network.sent, [])
        self.assertEqual(self.b.tunnel.counters.spoofed_source, 1)

    def test_punch_commands_are_budgeted(self):
        command = beacon.encode(beacon.PunchCommand(beacon.Endpoint(*ATTACKER)))
        for _ in range(100):
            self.b.tunnel.datagramReceived(command, BEACON)
        self.assertEqual(len(self.sent_to(ATTACKER)), PUNCH_BUDGET * (PUNCH_BURST + 1))


class PunchBindingTests(TwoNodesCase):
    """Once our beacon echoed our cookie, a punch command must carry it to make us send a PILA."""

    def bind(self):
        reply = beacon.DiscoverReply(beacon.Endpoint("127.0.0.1", 1002), self.b.tunnel.beacon_cookie)
        self.b.tunnel.datagramReceived(beacon.encode(reply), BEACON)
        self.assertTrue(self.b.tunnel.beacon_binds_punches)

    def command(self, cookie=b""):
        return beacon.encode(beacon.PunchCommand(beacon.Endpoint(*ATTACKER), cookie))

    def test_before_the_beacon_echoed_a_cookie_commands_are_obeyed_as_the_reference_does(self):
        self.b.tunnel.datagramReceived(self.command(), BEACON)
        self.assertEqual(len(self.sent_to(ATTACKER)), PUNCH_BURST + 1)

    def test_a_command_without_our_cookie_gets_no_more_bytes_than_it_has_and_no_pila(self):
        self.bind()
        for _ in range(3):
            self.b.tunnel.datagramReceived(self.command(), BEACON)
        sent = self.sent_to(ATTACKER)
        self.assertEqual(sent, [b"PILP"] * 6)
        self.assertLessEqual(sum(map(len, sent)), 3 * len(self.command()))

    def test_a_command_with_another_cookie_gets_nothing(self):
        self.bind()
        self.b.tunnel.datagramReceived(self.command(bytes(range(1, 17))), BEACON)
        self.assertEqual(self.sent_to(ATTACKER), [])
        self.assertEqual(self.b.tunnel.counters.forged_beacon, 1)

    def test_a_command_with_our_cookie_gets_the_full_punch(self):
        self.bind()
        self.b.tunnel.datagramReceived(self.command(self.b.tunnel.beacon_cookie), BEACON)
        sent = self.sent_to(ATTACKER)
        self.assertEqual((sent[:PUNCH_BURST], sent[-1][:4]), ([b"PILP"] * PUNCH_BURST, MAGIC_AUTH_KEY))

    def test_a_discover_reply_without_our_cookie_is_ignored_once_bound(self):
        heard = []
        self.b.tunnel.on_beacon = heard.append
        self.bind()
        forged = beacon.DiscoverReply(beacon.Endpoint("203.0.113.9", 1))
        self.b.tunnel.datagramReceived(beacon.encode(forged), BEACON)
        self.assertEqual(len(heard), 1)
        self.assertEqual(self.b.tunnel.counters.forged_beacon, 1)
