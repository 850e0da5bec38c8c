"""A punch command forged with the beacon's source address, over real UDP sockets.

The attacker sends, from the beacon's address (a raw socket writes the IP header,
so this needs root), a punch command naming a victim.  Once our beacon has echoed
the daemon's cookie, such a command draws no PILA and no more bytes than it has,
while the beacon's own commands keep working in full.
"""

import os
import socket
import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from pilotnet.beacon.core import BeaconCore
from pilotnet.beacon.server import BeaconService
from pilotnet.crypto.identity import Identity
from pilotnet.crypto.tunnel import TunnelKeyPair
from pilotnet.daemon.beacon_link import BeaconLink
from pilotnet.daemon.tunnel import Tunnel
from pilotnet.wire import beacon
from tests.daemon.fakes import StaticKeys


def send_from(source, destination, payload):
    """One UDP datagram to ``destination`` whose IP and UDP headers say it came from ``source``."""
    udp = struct.pack("!HHHH", source[1], destination[1], 8 + len(payload), 0) + payload
    # Version 4, 20-byte header; the kernel fills in the length, the ID and the checksum.
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(source[0]), socket.inet_aton(destination[0]))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + udp, (destination[0], 0))


class _Counter(DatagramProtocol):
    def __init__(self):
        self.sizes = []

    def datagramReceived(self, data, addr):
        self.sizes.append(len(data))


def _wait(seconds):
    waiting = Deferred()
    reactor.callLater(seconds, waiting.callback, None)
    return waiting


class ForgedPunchCommandTests(TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            raise self.skipTest("forging a source address takes a raw socket, which needs root")
        self.keys = StaticKeys()
        self.beacon = BeaconService(reactor, BeaconCore(1), "127.0.0.1", 0)
        self.beacon.startService()
        self.addCleanup(self.beacon.stopService)
        self.beacon_address = ("127.0.0.1", self.beacon.address.port)

    def node(self, node_id):
        identity = Identity.generate()
        self.keys.keys[node_id] = identity.public_key
        tunnel = Tunnel(identity=identity, key_pair=TunnelKeyPair.generate(), peer_keys=self.keys,
                        clock=reactor, on_packet=lambda packet, peer: None)
        port = reactor.listenUDP(0, tunnel, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        tunnel.node_id = node_id
        tunnel.beacon_address = self.beacon_address
        return tunnel, BeaconLink(tunnel, reactor), ("127.0.0.1", port.getHost().port)

    @inlineCallbacks
    def test_a_forged_command_draws_no_pila_and_the_beacons_own_still_punches(self):
        a, a_link, _ = self.node(1)
        b, b_link, b_address = self.node(2)
        for link in (a_link, b_link):
            self.assertIsNotNone((yield link.discover()))
        self.assertTrue(b.beacon_binds_punches)
        victim = _Counter()
        victim_port = reactor.listenUDP(0, victim, interface="127.0.0.1")
        self.addCleanup(victim_port.stopListening)
        aimed = beacon.Endpoint("127.0.0.1", victim_port.getHost().port)
        forged = beacon.encode(beacon.PunchCommand(aimed))
        send_from(self.beacon_address, b_address, forged)
        send_from(self.beacon_address, b_address, beacon.encode(beacon.PunchCommand(aimed, bytes(range(1, 17)))))
        a_link.request_punch(2)  # the beacon's own command to B: B punches A and sends its PILA
        while a.peer(2) is None or not a.peer(2).authenticated:
            yield _wait(0.01)
        yield _wait(0.2)  # what B sent the victim has arrived by now
        self.assertEqual(b.counters.forged_beacon, 1)
        self.assertLessEqual(sum(victim.sizes), len(forged))
        self.assertEqual(victim.sizes, [4] * (len(forged) // 4))  # PILPs only: no 138-byte PILA
