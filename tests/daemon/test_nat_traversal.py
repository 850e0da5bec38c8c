"""NAT traversal in the daemon: punches that carry our PILA, relay-to-direct, LAN addresses.

These are the unit-level halves of what tests/netlab proves with real NATs.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.beacon_link import BeaconLink
from pilotnet.daemon.registry_link import choose_endpoint
from pilotnet.daemon.tunnel import Peer
from pilotnet.wire import beacon
from pilotnet.wire.tunnel import MAGIC_AUTH_KEY, MAGIC_PUNCH
from tests.daemon.fakes import DatagramNetwork, StaticKeys
from tests.daemon.test_tunnel import BEACON, Node, datagram

A_ADDR = ("198.51.100.1", 1001)
# Where b is reachable once it has sent toward a (its symmetric NAT's port for a).
B_ADDR = ("198.51.100.2", 2002)
# What the registry holds for b: its NAT's port toward the beacon, useless to anyone else.
B_REGISTERED = ("198.51.100.2", 3003)


def punch_command(toward):
    return beacon.encode(beacon.PunchCommand(beacon.Endpoint(*toward)))


class PunchTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.network = DatagramNetwork()
        keys = StaticKeys()
        self.a = Node(self.network, self.clock, keys, 1, A_ADDR)
        self.b = Node(self.network, self.clock, keys, 2, B_ADDR)

    def test_a_punch_is_followed_by_our_key_offer(self):
        self.a.tunnel.datagramReceived(punch_command(B_ADDR), BEACON)
        sent = [(destination, data[:4]) for _, destination, data in self.network.sent]
        self.assertEqual(sent, [(B_ADDR, MAGIC_PUNCH)] * 3 + [(B_ADDR, MAGIC_AUTH_KEY)])

    def test_the_punched_key_offer_opens_a_path_nobody_could_predict(self):
        """Full cone <-> symmetric: a only knows b's useless registered port; b's punch finds a."""
        self.a.tunnel.add_peer(2, B_REGISTERED)
        self.a.tunnel.send(2, datagram(1, 2, b"queued"))
        self.network.deliver()  # a's offer goes to B_REGISTERED: nobody there
        self.assertEqual(self.b.received, [])
        self.b.tunnel.datagramReceived(punch_command(A_ADDR), BEACON)
        self.network.deliver()
        self.assertEqual([p.payload for p in self.b.received], [b"queued"])
        self.assertEqual((self.a.tunnel.peer(2).endpoint, self.a.tunnel.peer(2).path), (B_ADDR, "direct"))

    def test_a_relayed_peer_moves_to_the_direct_path_on_both_sides(self):
        for node, peer in ((self.a, 2), (self.b, 1)):
            node.tunnel.add_peer(peer, None)
            node.tunnel.use_relay(peer)
        self.relay_until_quiet()
        self.assertEqual((self.a.tunnel.peer(2).path, self.b.tunnel.peer(1).path), ("relay", "relay"))
        self.clock.advance(60)
        self.b.tunnel.datagramReceived(punch_command(A_ADDR), BEACON)
        self.network.deliver()
        self.assertEqual((self.a.tunnel.peer(2).path, self.b.tunnel.peer(1).path), ("direct", "direct"))
        self.a.tunnel.send(2, datagram(1, 2, b"direct"))
        [(_, destination, _)] = self.network.sent
        self.assertEqual(destination, B_ADDR)

    def relay_until_quiet(self):
        """Play the beacon: hand relay envelopes to their destination until nothing is left."""
        nodes = {1: (self.a, A_ADDR), 2: (self.b, B_ADDR)}
        while self.network.sent:
            batch, self.network.sent = self.network.sent, []
            for _, destination, data in batch:
                self.assertEqual(destination, BEACON)
                relay = beacon.decode(data)
                node, _ = nodes[relay.destination]
                node.tunnel.datagramReceived(beacon.encode(beacon.RelayDeliver(relay.sender, relay.frame)), BEACON)


class _Host:
    def __init__(self, host, port):
        self.host = host
        self.port = port


class _Transport:
    def __init__(self, host, port):
        self.bound = _Host(host, port)

    def getHost(self):
        return self.bound


COOKIE = bytes(range(1, 17))


class _Tunnel:
    """Just what BeaconLink uses of the tunnel."""

    def __init__(self, host="10.200.1.11", port=47000):
        self.transport = _Transport(host, port)
        self.node_id = 7
        self.beacon_address = ("198.51.100.10", 9001)
        self.beacon_cookie = COOKIE
        self.on_beacon = None
        self.sent = []
        self._peers = []

    def local_port(self):
        return self.transport.getHost().port

    def peers(self):
        return self._peers

    def send_to_address(self, data, address):
        self.sent.append(beacon.decode(data))


class BeaconLinkTests(SynchronousTestCase):
    def link(self, observed, **tunnel):
        link = BeaconLink(_Tunnel(**tunnel), Clock())
        link.observed = beacon.Endpoint(*observed) if observed else None
        return link

    def test_keepalive_asks_for_punches_toward_relayed_peers_only(self):
        link = self.link(("198.51.100.1", 47000))
        relayed, direct = Peer(8), Peer(9)
        relayed.via_relay = True
        link.tunnel._peers = [relayed, direct]
        link.keepalive()
        self.assertEqual(link.tunnel.sent, [beacon.Discover(7, COOKIE), beacon.PunchRequest(7, 8)])

    def test_lan_address_behind_a_nat(self):
        self.assertEqual(self.link(("198.51.100.1", 47000)).lan_addresses(), ["10.200.1.11:47000"])

    def test_no_lan_address_without_a_nat_or_before_discovery(self):
        self.assertEqual(self.link(("10.200.1.11", 47000)).lan_addresses(), [])
        self.assertEqual(self.link(None).lan_addresses(), [])

    def test_a_wildcard_socket_reports_the_address_toward_the_beacon(self):
        link = self.link(("198.51.100.1", 47000), host="0.0.0.0")
        link.tunnel.beacon_address = ("127.0.0.1", 9001)
        self.assertEqual(link.lan_addresses(), ["127.0.0.1:47000"])


class ChooseEndpointTests(SynchronousTestCase):
    reply = {"real_addr": "198.51.100.1:47001", "lan_addrs": ["10.200.1.12:47001"]}

    def test_behind_our_own_nat_the_lan_address_is_used(self):
        self.assertEqual(choose_endpoint(self.reply, "198.51.100.1"), ("10.200.1.12", 47001))

    def test_elsewhere_the_public_endpoint_is_used(self):
        self.assertEqual(choose_endpoint(self.reply, "198.51.100.2"), ("198.51.100.1", 47001))
        self.assertEqual(choose_endpoint(self.reply, None), ("198.51.100.1", 47001))
        self.assertEqual(choose_endpoint({"real_addr": "198.51.100.1:47001"}, "198.51.100.1"),
                         ("198.51.100.1", 47001))

    def test_a_malformed_lan_address_falls_back_to_the_public_one(self):
        reply = dict(self.reply, lan_addrs=["nonsense"])
        self.assertEqual(choose_endpoint(reply, "198.51.100.1"), ("198.51.100.1", 47001))
