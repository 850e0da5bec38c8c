"""Streams over data sockets: the SDK against the daemon's real control protocol and real stream tables.

Two stand-in nodes, A and B, each with a real :class:`~pilotnet.daemon.streams.Streams`
on the reactor, joined by an in-process wire that delivers each packet on the
next reactor turn (and can be held, to stall a stream); each node serves a
real control socket on a Unix socket.  So the stream's bytes cross
SDK -> data socket -> daemon A -> engine -> daemon B -> data socket -> SDK,
the path of two real daemons without their tunnel.

Nothing polls: a test waits with :func:`once` for the calls that can make
its condition true (a producer paused by its transport, bytes received, a
connection lost), which the objects on the path make anyway.
"""

import os
import shutil
import socket
import tempfile
from types import SimpleNamespace

from twisted.internet import defer, reactor
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.trial.unittest import TestCase

from pilotnet.daemon.control import MAX_PENDING_DESCRIPTORS, ControlFactory
from pilotnet.daemon.streams import SEND_HIGH_WATER, Streams
from pilotnet.driver import client, commands
from pilotnet.driver.streams import RECEIVE_BUFFER_LIMIT
from pilotnet.errors import ALREADY_EXISTS, CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, PilotError
from pilotnet.transport.config import StreamConfig
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import PROTO_STREAM
from tests.driver.support import WAIT, bounded

A = Addr(0, 1)
B = Addr(0, 2)
PORT = 5200


class Wire:
    """Packets between the two stream tables, each delivered on a later reactor turn; ``held`` stops them."""

    def __init__(self):
        self.nodes = {}
        self.held = False
        self._parked = []

    def transmit(self, packet):
        if self.held:
            self._parked.append(packet)
        else:
            reactor.callLater(0, self._deliver, packet)

    def release(self):
        self.held = False
        parked, self._parked = self._parked, []
        for packet in parked:
            self._deliver(packet)

    def _deliver(self, packet):
        if packet.protocol == PROTO_STREAM:
            self.nodes[packet.dst.node].stream_packet(packet)


def stand_in_node(wire, address):
    streams = Streams(clock=reactor, transmit=wire.transmit, config=StreamConfig(), max_per_port=16,
                      max_connections=64, syn_rate=1000)
    wire.nodes[address.node] = streams

    def dial(remote, port, owner, timeout=None):
        return streams.dial(address, remote, port, owner)

    return SimpleNamespace(streams=streams, events=None, dial=dial)


class RecordingControlFactory(ControlFactory):
    """The daemon's control factory, keeping the protocols it builds for the tests to look at."""

    def __init__(self, node):
        super().__init__(node, reactor)
        self.built = []
        #: Each protocol, once its connection is lost (and it has closed what it held).
        self.lost = defer.DeferredQueue()

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        self.built.append(protocol)
        lose = protocol.connectionLost

        def connectionLost(reason):
            lose(reason)
            self.lost.put(protocol)

        protocol.connectionLost = connectionLost
        return protocol


def once(condition, *calls):
    """A Deferred that fires once ``condition()`` holds, checked now and after each of ``calls``.

    ``calls`` are ``(object, method name)`` pairs: the only calls after which
    ``condition`` can have become true (a buffer grew, a transport paused its
    producer).  Each is wrapped on that one object, so the wait follows those
    events instead of polling the reactor; the wrappers stay, inert, once
    the Deferred has fired.  Bounded by :func:`bounded`.
    """
    done = defer.Deferred()

    def check():
        if not done.called and condition():
            done.callback(None)

    def watch(target, name):
        call = getattr(target, name)

        def watched(*args, **kwargs):
            result = call(*args, **kwargs)
            check()
            return result

        setattr(target, name, watched)

    for target, name in calls:
        watch(target, name)
    check()
    return bounded(done)


def copies_of(sock):
    """How many of this process's descriptors refer to ``sock`` (the kernel's socket object, by inode)."""
    target = os.readlink(f"/proc/self/fd/{sock.fileno()}")
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == target
        except OSError:
            pass  # the directory's own descriptor, gone once listed
    return count


class DataSocketMixin:
    async def start(self):
        directory = tempfile.mkdtemp(prefix="pilot-data-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.wire = Wire()
        self.nodes, self.factories, self.paths = {}, {}, {}
        for address in (A, B):
            node = self.nodes[address] = stand_in_node(self.wire, address)
            self.factories[address] = factory = RecordingControlFactory(node)
            self.paths[address] = path = os.path.join(directory, f"{address.node}.sock")
            port = await UNIXServerEndpoint(reactor, path).listen(factory)
            self.addCleanup(port.stopListening)
        self.addCleanup(self._abort_streams)

    def _abort_streams(self):
        for node in self.nodes.values():
            node.streams.abort_all()

    async def connect(self, address):
        daemon = await bounded(client.connect(reactor, self.paths[address], data_sockets=self.data_sockets))
        self.addCleanup(daemon.close)
        return daemon

    #: Whether the SDK gives streams data sockets (without: they stay on AMP).
    data_sockets = True

    async def pair(self):
        """A stream from a client of A to a client of B, both on data sockets (if :attr:`data_sockets`)."""
        await self.start()
        self.alpha = await self.connect(A)
        self.beta = await self.connect(B)
        listener = await self.beta.listen(PORT)
        dialled = await bounded(self.alpha.dial(str(B), PORT))
        accepted = await bounded(listener.accept())
        if self.data_sockets:
            await once(lambda: dialled._socket is not None and accepted._socket is not None,
                       (dialled, "_socket_attached"), (accepted, "_socket_attached"))
        return dialled, accepted


class DataPathTests(DataSocketMixin, TestCase):
    async def test_bytes_cross_both_ways_intact_and_off_amp(self):
        dialled, accepted = await self.pair()
        sent_out, sent_back = os.urandom(3 * 1024 * 1024 + 7), os.urandom(2 * 1024 * 1024 + 3)
        writing = defer.gatherResults([defer.ensureDeferred(self._write_in_pieces(dialled, sent_out)),
                                       defer.ensureDeferred(self._write_in_pieces(accepted, sent_back))])
        received_out, received_back = await bounded(defer.gatherResults([
            accepted.read_exactly(len(sent_out)), dialled.read_exactly(len(sent_back))]))
        await bounded(writing)
        self.assertEqual(received_out, sent_out)
        self.assertEqual(received_back, sent_back)
        # Nothing of it went through AMP's write credit.
        self.assertEqual((dialled._uncredited, accepted._uncredited), (0, 0))

    async def _write_in_pieces(self, stream, data):
        for offset in range(0, len(data), 100_000):
            await stream.write(data[offset:offset + 100_000])

    async def test_small_writes_keep_their_order(self):
        dialled, accepted = await self.pair()
        for index in range(500):
            dialled.write(b"%d," % index)
        expected = b"".join(b"%d," % index for index in range(500))
        self.assertEqual(await bounded(accepted.read_exactly(len(expected))), expected)

    async def test_a_dialled_stream_has_its_data_socket_from_the_start(self):
        # The Dial carried it: the first write needs no AttachSocket round trip first.
        await self.start()
        alpha, beta = await self.connect(A), await self.connect(B)
        await beta.listen(PORT)
        dialled = await bounded(alpha.dial(str(B), PORT))
        self.assertIsNotNone(dialled._socket)
        self.assertFalse(dialled._attaching)
        [control] = [p for p in self._protocols(A) if p._sockets]
        self.assertEqual(list(control._sockets), [dialled.conn_id])

    async def test_a_burst_of_dials_stays_within_the_daemons_bound_on_passed_descriptors(self):
        # Twisted passes a burst's descriptors ahead of its boxes: with every Dial carrying one, the
        # daemon would see more than it lets a client have unclaimed, and drop the client.
        await self.start()
        alpha, beta = await self.connect(A), await self.connect(B)
        ports = [PORT + offset for offset in range(3)]
        listeners = [await beta.listen(port) for port in ports]
        burst = [alpha.dial(str(B), port) for port in ports for _ in range(10)]
        self.assertGreater(len(burst), MAX_PENDING_DESCRIPTORS)
        dialled = await bounded(defer.gatherResults(burst))
        # Those past the bound get theirs with AttachSocket, as the accepted streams (a burst too) do.
        accepted = [await bounded(listener.accept()) for listener in listeners for _ in range(10)]
        for stream in dialled + accepted:
            await once(lambda: stream._socket is not None, (stream, "_socket_attached"))

    async def test_what_is_written_while_the_data_sockets_are_attached_keeps_its_order(self):
        await self.start()
        alpha, beta = await self.connect(A), await self.connect(B)
        listener = await beta.listen(PORT)
        dialled = await bounded(alpha.dial(str(B), PORT))
        for index in range(300):
            dialled.write(b"%d," % index)
        accepted = await bounded(listener.accept())
        self.assertTrue(accepted._attaching)  # the daemon has not taken the accepted stream's socket yet
        for index in range(300):
            accepted.write(b"%d;" % index)
        out = b"".join(b"%d," % index for index in range(300))
        back = b"".join(b"%d;" % index for index in range(300))
        self.assertEqual(await bounded(accepted.read_exactly(len(out))), out)
        self.assertEqual(await bounded(dialled.read_exactly(len(back))), back)
        self.assertIsNotNone(dialled._socket)
        self.assertIsNotNone(accepted._socket)

    async def test_a_reader_that_stops_reading_stops_the_writer_within_bounds(self):
        dialled, accepted = await self.pair()
        data = os.urandom(24 * 1024 * 1024)
        writing = dialled.write(data)
        alpha_streams = self.nodes[A].streams
        alpha_stream = alpha_streams._streams[dialled.conn_id]
        # The reader reads nothing: its buffer fills to its limit, then everything behind it stops.
        await once(lambda: len(accepted._buffer) >= RECEIVE_BUFFER_LIMIT, (accepted, "_received"))
        # Stopped: the reader does not read its socket, daemon A does not read the writer's (its send
        # buffer is over the high-water mark), and the writer's transport has paused its producer.
        await once(lambda: not accepted._socket._reading and alpha_stream.writers and dialled._socket.paused,
                   (accepted._socket, "read_while"), (alpha_streams, "write"), (dialled._socket, "pauseProducing"))
        self.assertFalse(writing.called)
        self.assertLess(len(accepted._buffer), RECEIVE_BUFFER_LIMIT + 256 * 1024)
        self.assertLess(alpha_stream.conn.send_buffered, SEND_HIGH_WATER + 256 * 1024)
        # What is in flight anywhere is a small part of what was written.
        self.assertLess(len(accepted._buffer) + alpha_stream.conn.send_buffered, len(data) // 4)
        received = await bounded(accepted.read_exactly(len(data)), WAIT * 3)
        await bounded(writing)
        self.assertEqual(received, data)

    async def test_half_close_ends_one_direction_only(self):
        dialled, accepted = await self.pair()
        accepted.half_open = True
        await dialled.write(b"request")
        dialled.shutdown_write()
        self.assertEqual(await bounded(accepted.read_exactly(7)), b"request")
        self.assertEqual(await bounded(accepted.read()), b"")  # the end of the request
        with self.assertRaises(PilotError) as raised:
            await dialled.write(b"late")
        self.assertEqual(raised.exception.code, CONNECTION_FAILED)
        await accepted.write(b"answer after the end")  # the other direction is still open
        self.assertEqual(await bounded(dialled.read_exactly(20)), b"answer after the end")
        await bounded(accepted.close())
        self.assertEqual(await bounded(dialled.read()), b"")
        self.assertIsNone(await bounded(dialled.closed))
        self.assertIsNone(await bounded(accepted.closed))

    async def test_close_delivers_what_was_written_then_the_end(self):
        dialled, accepted = await self.pair()
        data = os.urandom(500_000)
        dialled.write(data)
        await bounded(dialled.close())
        self.assertEqual(await bounded(accepted.read_exactly(len(data))), data)
        self.assertEqual(await bounded(accepted.read()), b"")
        self.assertIsNone(await bounded(accepted.closed))

    async def test_a_client_that_exits_once_closed_loses_nothing_it_wrote(self):
        # The daemon aborts a client's data sockets when its control socket ends: a close answered
        # before the daemon read the socket's end (as `pilotctl publish` does before it exits) lost
        # whatever of the data was still in the socket.
        dialled, accepted = await self.pair()
        data = os.urandom(2 * 1024 * 1024)
        dialled.write(data)
        await bounded(dialled.close())
        self.alpha._protocol.transport.abortConnection()  # the program exits
        self.assertEqual(await bounded(accepted.read_exactly(len(data))), data)
        self.assertEqual(await bounded(accepted.read()), b"")
        self.assertIsNone(await bounded(accepted.closed))

    async def test_a_stream_closed_before_its_data_socket_is_attached_ends(self):
        await self.start()
        alpha, beta = await self.connect(A), await self.connect(B)
        listener = await beta.listen(PORT)
        dialled = await bounded(alpha.dial(str(B), PORT))
        accepted = await bounded(listener.accept())
        self.assertTrue(accepted._attaching)
        await bounded(accepted.close())
        self.assertEqual(await bounded(dialled.read()), b"")
        self.assertIsNone(await bounded(accepted.closed))

    async def test_a_failed_stream_fails_its_reader_after_the_data_before_it(self):
        dialled, accepted = await self.pair()
        await accepted.write(b"last words")
        await once(lambda: len(dialled._buffer) == 10, (dialled, "_received"))
        self.nodes[B].streams.abort_peer(A.node)  # B's trust in A ended: B resets the stream
        self.assertEqual(await bounded(dialled.read()), b"last words")
        with self.assertRaises(PilotError) as raised:
            await bounded(dialled.read())
        self.assertEqual(raised.exception.code, CONNECTION_FAILED)
        self.assertIs(await bounded(dialled.closed), raised.exception)

    async def test_a_client_that_vanishes_ends_its_streams_and_data_sockets(self):
        dialled, accepted = await self.pair()
        await dialled.write(b"before vanishing")
        self.assertEqual(await bounded(accepted.read_exactly(16)), b"before vanishing")
        [control] = [p for p in self._protocols(A) if p._sockets]
        [data_socket] = control._sockets.values()
        self.alpha._protocol.transport.abortConnection()  # as when the process is killed
        self.assertEqual(await bounded(accepted.read()), b"")
        self.assertIsNone(await bounded(accepted.closed))
        await once(lambda: not control._sockets, (data_socket, "connectionLost"))

    async def test_a_data_socket_closed_alone_is_the_streams_end(self):
        dialled, accepted = await self.pair()
        dialled._socket.transport.loseConnection()  # the client's end of data, without Close
        self.assertEqual(await bounded(accepted.read()), b"")

    def _protocols(self, address):
        return self.factories[address].built


class AttachRefusalTests(DataSocketMixin, TestCase):
    """What a hostile local client can pass as a data socket, and what it gets for it.

    The SDK attaches no data socket itself here: the tests pass their own.
    """

    data_sockets = False

    async def _call_attach(self, daemon, conn_id, descriptor):
        return await bounded(daemon._call(commands.AttachSocket, conn_id=conn_id, data_socket=descriptor))

    async def test_a_stream_of_another_client_is_not_found(self):
        dialled, _ = await self.pair()
        intruder = await self.connect(A)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        with self.assertRaises(PilotError) as raised:
            await self._call_attach(intruder, dialled.conn_id, theirs.fileno())
        self.assertEqual(raised.exception.code, NOT_FOUND)

    async def test_a_second_data_socket_is_refused_and_the_first_kept(self):
        dialled, accepted = await self.pair()
        ours, theirs = self._socketpair()
        await self._call_attach(self.alpha, dialled.conn_id, theirs)
        with self.assertRaises(PilotError) as raised:
            await self._call_attach(self.alpha, dialled.conn_id, self._socketpair()[1])
        self.assertEqual(raised.exception.code, ALREADY_EXISTS)
        os.write(ours, b"over the first")
        self.assertEqual(await bounded(accepted.read_exactly(14)), b"over the first")

    async def test_without_a_data_socket_the_stream_stays_on_amp(self):
        dialled, accepted = await self.pair()
        await dialled.write(b"x" * 300_000)
        self.assertEqual(await bounded(accepted.read_exactly(300_000)), b"x" * 300_000)
        self.assertIsNone(dialled._socket)
        self.assertGreater(dialled._uncredited + accepted._unreturned, 0)

    def _socketpair(self):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        return ours.fileno(), theirs.fileno()

    async def _call_dial(self, daemon, descriptor, port=PORT):
        return await bounded(daemon._call(commands.Dial, address=str(B), port=port, data_socket=descriptor))

    async def test_a_socket_passed_with_a_dial_carries_the_stream(self):
        await self.start()
        self.alpha, beta = await self.connect(A), await self.connect(B)
        listener = await beta.listen(PORT)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        with theirs:
            answer = await self._call_dial(self.alpha, theirs.fileno())
        self.assertTrue(answer["attached"])
        ours.sendall(b"over the dial's socket")
        accepted = await bounded(listener.accept())
        self.assertEqual(await bounded(accepted.read_exactly(22)), b"over the dial's socket")

    async def _alpha_and_a_socket_to_pass(self):
        """Alpha's client, and one end of a socket pair to pass with a call (both ends closed at cleanup)."""
        await self.start()
        self.alpha = await self.connect(A)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        return theirs

    async def test_a_failed_dial_closes_the_socket_passed_with_it(self):
        theirs = await self._alpha_and_a_socket_to_pass()
        with self.assertRaises(PilotError) as raised:
            await self._call_dial(self.alpha, theirs.fileno(), port=PORT + 1)  # nobody listens there
        self.assertEqual(raised.exception.code, CONNECTION_FAILED)
        self.assertEqual(copies_of(theirs), 1)  # the daemon (in this process) kept no copy

    async def test_an_invalid_dial_closes_the_socket_passed_with_it(self):
        theirs = await self._alpha_and_a_socket_to_pass()
        with self.assertRaises(PilotError) as raised:
            await bounded(self.alpha._call(commands.Dial, address="not an address", port=PORT,
                                           data_socket=theirs.fileno()))
        self.assertEqual(raised.exception.code, INVALID_ARGUMENT)
        self.assertEqual(copies_of(theirs), 1)

    async def test_a_datagram_socket_passed_with_a_dial_leaves_the_stream_on_amp(self):
        await self.start()
        self.alpha, beta = await self.connect(A), await self.connect(B)
        await beta.listen(PORT)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        answer = await self._call_dial(self.alpha, theirs.fileno())
        self.assertFalse(answer["attached"])
        self.assertEqual(copies_of(theirs), 1)
        self.assertFalse(any(p._sockets for p in self.factories[A].built))

    async def test_a_file_is_refused(self):
        dialled, _ = await self.pair()
        with open(__file__, "rb") as handle:
            with self.assertRaises(PilotError) as raised:
                await self._call_attach(self.alpha, dialled.conn_id, handle.fileno())
        self.assertEqual(raised.exception.code, INVALID_ARGUMENT)

    async def test_a_datagram_socket_is_refused(self):
        dialled, _ = await self.pair()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        with self.assertRaises(PilotError) as raised:
            await self._call_attach(self.alpha, dialled.conn_id, theirs.fileno())
        self.assertEqual(raised.exception.code, INVALID_ARGUMENT)

    async def test_descriptors_nobody_claims_are_closed_and_their_sender_dropped(self):
        await self.start()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(raw.close)
        raw.connect(self.paths[A])
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        # The start of a box that never ends, each byte with a descriptor no argument claims.
        start = b"\x00\x01x\xff\xff" + b"a" * 100
        for offset in range(MAX_PENDING_DESCRIPTORS * 4):
            socket.send_fds(raw, [start[offset:offset + 1]], [theirs.fileno()])
        # The daemon drops the client: its socket is closed before its protocol hears the loss.
        await bounded(self.factories[A].lost.get())
        raw.setblocking(False)
        try:
            self.assertEqual(raw.recv(1), b"")
        except ConnectionResetError:
            pass  # closed with bytes unread: as much a drop
        # The daemon runs in this process: no copy of what it was passed may stay open in it.
        self.assertEqual(copies_of(theirs), 1)
