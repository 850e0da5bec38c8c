"""Segmented sends: many datagrams per system call, the same datagrams on the wire."""

import errno
import socket

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from pilotnet.daemon.udp_batch import MAX_BYTES, MAX_SEGMENTS, BatchSender, BurstPort


def receive_all(sock):
    received = []
    while True:
        try:
            received.append(sock.recv(65535))
        except BlockingIOError:
            return received


class LoopbackTests(SynchronousTestCase):
    def setUp(self):
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.receiver.bind(("127.0.0.1", 0))
        self.receiver.setblocking(False)
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.receiver.close)
        self.addCleanup(self.sender.close)

    def test_the_receiver_sees_each_datagram_as_sent_and_in_order(self):
        frames = [bytes([index]) * 1100 for index in range(MAX_SEGMENTS + 10)] + [b"last" * 10]
        BatchSender(self.sender).send(frames, self.receiver.getsockname())
        self.assertEqual(receive_all(self.receiver), frames)

    def test_mixed_sizes(self):
        frames = [b"a" * 900, b"b" * 900, b"c" * 1200, b"d" * 300, b"e" * 300, b"f" * 20000, b"g" * 20000]
        BatchSender(self.sender).send(frames, self.receiver.getsockname())
        self.assertEqual(receive_all(self.receiver), frames)


class RecordingSocket:
    def __init__(self, sendmsg_error=None):
        self.sent = []
        self.sendmsg_error = sendmsg_error

    def sendto(self, data, destination):
        self.sent.append(("sendto", data))

    def sendmsg(self, buffers, ancillary, flags, destination):
        if self.sendmsg_error is not None:
            raise OSError(self.sendmsg_error, "refused")
        self.sent.append(("sendmsg", b"".join(buffers), ancillary[0][2]))


class RunTests(SynchronousTestCase):
    def test_runs_respect_the_segment_and_byte_limits(self):
        sock = RecordingSocket()
        frames = [b"x" * 1000] * 150
        BatchSender(sock).send(frames, ("127.0.0.1", 9))
        calls = [call for call in sock.sent if call[0] == "sendmsg"]
        self.assertEqual(sum(len(call[1]) for call in calls), 150 * 1000)
        self.assertTrue(all(len(call[1]) <= min(MAX_BYTES, MAX_SEGMENTS * 1000) for call in calls))

    def test_a_shorter_datagram_ends_its_run_and_a_longer_one_starts_the_next(self):
        sock = RecordingSocket()
        BatchSender(sock).send([b"a" * 10, b"b" * 10, b"c" * 5, b"d" * 10, b"e" * 20], ("127.0.0.1", 9))
        self.assertEqual(sock.sent, [("sendmsg", b"a" * 10 + b"b" * 10 + b"c" * 5, b"\x0a\x00"),
                                     ("sendto", b"d" * 10), ("sendto", b"e" * 20)])

    def test_a_kernel_without_segmentation_gets_one_datagram_per_call_from_then_on(self):
        sock = RecordingSocket(sendmsg_error=errno.EIO)
        sender = BatchSender(sock)
        sender.send([b"a" * 10, b"b" * 10], ("127.0.0.1", 9))
        self.assertFalse(sender.segmenting)
        self.assertEqual(sock.sent, [("sendto", b"a" * 10), ("sendto", b"b" * 10)])

    def test_other_errors_reach_the_caller(self):
        sender = BatchSender(RecordingSocket(sendmsg_error=errno.ENOBUFS))
        self.assertRaises(OSError, sender.send, [b"a", b"b"], ("127.0.0.1", 9))
        self.assertTrue(sender.segmenting)


class Recording(DatagramProtocol):
    def __init__(self, with_listener=True):
        self.events = []
        self.burst_listener = self if with_listener else None

    def datagramReceived(self, data, address):
        self.events.append(data)

    def burst_started(self):
        self.events.append("start")

    def burst_ended(self):
        self.events.append("end")


class BurstPortTests(SynchronousTestCase):
    def listen(self, protocol, max_packet_size=65535):
        port = BurstPort(0, protocol, interface="127.0.0.1", maxPacketSize=max_packet_size, reactor=reactor)
        port.startListening()
        self.addCleanup(port.stopListening)
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.sender.close)
        return port, ("127.0.0.1", port.getHost().port)

    def test_a_segmented_run_and_single_datagrams_arrive_as_sent_within_one_burst(self):
        protocol = Recording()
        port, address = self.listen(protocol)
        run = [bytes([index]) * 1000 for index in range(20)] + [b"tail"]
        BatchSender(self.sender).send(run, address)
        self.sender.sendto(b"single", address)
        port.doRead()
        self.assertEqual(protocol.events, ["start", *run, b"single", "end"])

    def test_a_protocol_that_takes_runs_gets_each_coalesced_run_in_one_call(self):
        class RunRecording(Recording):
            def datagrams_received(self, datagrams, address):
                self.events.append(("run", tuple(datagrams), address[0]))

        protocol = RunRecording()
        port, address = self.listen(protocol)
        if not port.coalescing:
            raise SkipTest("this kernel does not coalesce received datagrams (UDP_GRO)")
        run = [bytes([index]) * 1000 for index in range(20)] + [b"tail"]
        BatchSender(self.sender).send(run, address)
        self.sender.sendto(b"single", address)
        port.doRead()
        self.assertEqual(protocol.events, ["start", ("run", tuple(run), "127.0.0.1"), b"single", "end"])

    def test_without_a_listener_datagrams_still_arrive(self):
        protocol = Recording(with_listener=False)
        port, address = self.listen(protocol)
        self.sender.sendto(b"one", address)
        port.doRead()
        self.assertEqual(protocol.events, [b"one"])

    def test_a_datagram_larger_than_the_port_reads_is_dropped_and_the_next_still_arrives(self):
        protocol = Recording()
        port, address = self.listen(protocol, max_packet_size=100)
        self.sender.sendto(b"x" * 500, address)
        self.sender.sendto(b"fits", address)
        port.doRead()
        self.assertEqual(protocol.events, ["start", b"fits", "end"])
