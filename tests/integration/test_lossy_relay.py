"""The lossy relay the loss tests and benchmark put in front of a daemon: the loss asked for, and no more."""

import socket

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.tunnel import SOCKET_BUFFER
from pilotnet.daemon.udp_batch import BatchSender
from tests.daemon.test_udp_batch import receive_all
from tests.integration.lossy_relay import LossyRelay, listen_relay

#: A daemon's largest burst: 64 segments in one system call, several times over before the relay reads.
BURST = [index.to_bytes(2, "big") * 512 for index in range(4 * 64)]


class LossyRelayTests(SynchronousTestCase):
    def start(self, loss):
        self.relay = LossyRelay(None, loss=loss, seed=3)
        self.port = listen_relay(reactor, self.relay)
        self.addCleanup(self.port.stopListening)
        self.daemon = self.socket()
        self.relay.target = self.daemon.getsockname()
        self.peer = self.socket()
        return ("127.0.0.1", self.port.getHost().port)

    def socket(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        self.addCleanup(sock.close)
        return sock

    def test_bursts_cross_whole_and_in_order_without_loss(self):
        relay_address = self.start(loss=0.0)
        sender = BatchSender(self.peer)
        for _ in range(4):
            sender.send(BURST, relay_address)
        for _ in range(4):  # one read takes at most the port's maxThroughput (256 KiB)
            self.port.doRead()
        received = receive_all(self.daemon)
        self.assertEqual(len(received), 4 * len(BURST))
        self.assertTrue(received == BURST * 4)
        self.assertEqual((self.relay.forwarded, self.relay.dropped, self.relay.send_failures), (4 * len(BURST), 0, 0))

    def test_answers_go_back_to_the_last_speaker(self):
        relay_address = self.start(loss=0.0)
        self.peer.sendto(b"hello", relay_address)
        self.port.doRead()
        self.assertEqual(receive_all(self.daemon), [b"hello"])
        self.daemon.sendto(b"answer", relay_address)
        self.port.doRead()
        self.assertEqual(receive_all(self.peer), [b"answer"])

    def test_it_drops_the_share_asked_for_and_forwards_the_rest_in_order(self):
        relay_address = self.start(loss=0.1)
        BatchSender(self.peer).send(BURST, relay_address)
        self.port.doRead()
        received = receive_all(self.daemon)
        self.assertEqual(len(received), self.relay.forwarded)
        self.assertEqual(self.relay.forwarded + self.relay.dropped, len(BURST))
        self.assertTrue(10 <= self.relay.dropped <= 45, self.relay.dropped)
        self.assertTrue(received == [frame for frame in BURST if frame in set(received)])

    def test_its_buffers_hold_bursts_larger_than_the_kernel_default(self):
        self.start(loss=0.0)
        handle = self.port.getHandle()
        default = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(default.close)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            self.assertGreater(handle.getsockopt(socket.SOL_SOCKET, option),
                               default.getsockopt(socket.SOL_SOCKET, option))
        self.assertLessEqual(handle.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), 2 * SOCKET_BUFFER)
