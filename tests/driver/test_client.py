"""The Twisted SDK against a fake daemon on a real Unix socket."""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from pilotnet.driver import client, streams
from pilotnet.driver.commands import CREDIT_BATCH, MAX_CHUNK, WRITE_CREDIT
from pilotnet.errors import (
    ALREADY_EXISTS, CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, TIMEOUT, PilotError,
)
from pilotnet.wire.address import Addr, broadcast
from tests.driver.fakedaemon import AGENT_B, NODE
from tests.driver.support import WAIT, FakeDaemonMixin, bounded


class ConnectTests(TestCase):
    def test_missing_socket_is_not_running_with_a_hint(self):
        d = client.connect(reactor, socket_path=os.path.join(self.mktemp(), "none.sock"))
        failure = self.failureResultOf(d, PilotError) if d.called else None
        if failure is None:
            return self.assertFailure(bounded(d), PilotError).addCallback(self.check_not_running)
        self.check_not_running(failure.value)

    def check_not_running(self, error):
        self.assertEqual(error.code, NOT_RUNNING)
        self.assertEqual(error.message, "daemon is not running")
        self.assertEqual(error.hint, "start the daemon with: pilotctl daemon start")


class DefaultSocketPathTests(TestCase):
    def test_environment_wins(self):
        self.assertEqual(client.default_socket_path({"PILOT_SOCKET": "/x.sock", "PILOT_HOME": "/h"}), "/x.sock")

    def test_home_default(self):
        self.assertEqual(client.default_socket_path({"PILOT_HOME": "/nonexistent/h"}), "/nonexistent/h/pilot.sock")

    def test_config_socket_over_default(self):
        home = self.mktemp()
        os.makedirs(home)
        with open(os.path.join(home, "config.json"), "w") as config:
            config.write('{"socket": "/run/p.sock"}')
        self.assertEqual(client.default_socket_path({"PILOT_HOME": home}), "/run/p.sock")

    def test_broken_config_is_ignored(self):
        home = self.mktemp()
        os.makedirs(home)
        with open(os.path.join(home, "config.json"), "w") as config:
            config.write("[not json")
        self.assertEqual(client.default_socket_path({"PILOT_HOME": home}), os.path.join(home, "pilot.sock"))


class DaemonTestCase(FakeDaemonMixin, TestCase):
    timeout = WAIT  # trial fails a test still running after this many seconds

    async def connected(self):
        self.start_fake_daemon()
        daemon = await bounded(client.connect(reactor, socket_path=self.socket_path))
        self.addCleanup(daemon.close)
        return daemon

    async def assert_fails(self, deferred, code):
        try:
            await bounded(deferred)
        except PilotError as error:
            self.assertEqual(error.code, code, error.message)
            return error
        self.fail(f"expected a {code} error")


class QueryTests(DaemonTestCase):
    async def test_info_peers_connections(self):
        daemon = await self.connected()
        info = await daemon.info()
        self.assertEqual(info["address"], str(NODE))
        peers = await daemon.peers()
        self.assertEqual([p["path"] for p in peers], ["direct", "relay"])
        self.assertEqual(await daemon.connections(), [])

    async def test_registry_operations(self):
        daemon = await self.connected()
        self.assertEqual((await daemon.set_hostname("alpha"))["hostname"], "alpha")
        self.assertEqual((await daemon.info())["hostname"], "alpha")
        self.assertEqual((await daemon.set_visibility(True))["visibility"], "public")
        self.assertEqual((await daemon.set_tags(["a", "b"]))["tags"], ["a", "b"])
        self.assertEqual((await daemon.set_task_exec(True))["task_exec"], True)
        self.assertEqual((await daemon.lookup(9))["address"], str(AGENT_B))
        self.assertEqual((await daemon.deregister())["type"], "deregister_ok")
        error = await self.assert_fails(daemon.set_tags(["a", "b", "c", "d"]), INVALID_ARGUMENT)
        self.assertIn("maximum 3 tags", error.message)
        await self.assert_fails(daemon.lookup(77), NOT_FOUND)


class ResolveTests(DaemonTestCase):
    async def test_every_spelling(self):
        daemon = await self.connected()
        self.assertEqual(await daemon.resolve("0:0000.0000.0009"), AGENT_B)
        self.assertEqual(await daemon.resolve("9"), AGENT_B)
        self.assertEqual(await daemon.resolve("agent-b"), AGENT_B)
        self.assertEqual(await daemon.resolve(Addr(1, 2)), Addr(1, 2))

    async def test_unknown_hostname(self):
        daemon = await self.connected()
        error = await self.assert_fails(daemon.resolve("nobody"), NOT_FOUND)
        self.assertEqual(
            error.message, 'cannot resolve "nobody" — is the hostname correct and is there mutual trust?')
        # The way to a private name: a handshake by that name, which the registry relays.
        self.assertIn('pilotctl handshake nobody "reason"', error.hint)

    async def test_malformed_targets(self):
        daemon = await self.connected()
        for target in ("1:0002.0000.0001", "0:zz", "", "99999999999", 5):
            await self.assert_fails(daemon.resolve(target), INVALID_ARGUMENT)


class StreamTests(DaemonTestCase):
    async def test_echo_round_trip_of_many_chunks(self):
        payload = bytes(range(256)) * (5 * MAX_CHUNK // 256 + 7)
        daemon = await self.connected()
        stream = await daemon.dial("agent-b", 7)
        self.assertEqual((stream.remote_address, stream.remote_port), (AGENT_B, 7))
        await stream.write(payload)
        self.assertEqual(await stream.read_exactly(len(payload)), payload)
        await stream.close()
        self.assertIsNone(await stream.closed)
        self.assertEqual(await stream.read(), b"")

    async def test_write_everything_then_read_under_backpressure(self):
        payload = bytes(range(256)) * (3 * streams.RECEIVE_BUFFER_LIMIT // 256)
        daemon = await self.connected()
        stream = await daemon.dial("agent-b", 7)
        await stream.write(payload)
        self.assertEqual(await stream.read_exactly(len(payload)), payload)
        await stream.write(payload)
        received = b"".join([await stream.read(streams.RECEIVE_BUFFER_LIMIT) for _ in range(3)])
        received += await stream.read_exactly(len(payload) - len(received))
        self.assertEqual(received, payload)

    async def test_dial_errors(self):
        daemon = await self.connected()
        await self.assert_fails(daemon.dial("agent-b", 1234), CONNECTION_FAILED)
        await self.assert_fails(daemon.dial("99", 7), TIMEOUT)
        await self.assert_fails(daemon.dial("agent-b", 70000), INVALID_ARGUMENT)
        await self.assert_fails(daemon.dial("agent-b", "seven"), INVALID_ARGUMENT)
        await self.assert_fails(daemon.dial("ghost", 7), NOT_FOUND)
        for timeout in (float("nan"), float("inf"), -1, 0):
            await self.assert_fails(daemon.dial("agent-b", 7, timeout), INVALID_ARGUMENT)

    async def test_write_needs_bytes_and_an_open_stream(self):
        daemon = await self.connected()
        stream = await daemon.dial("agent-b", 7)
        await self.assert_fails(stream.write("text"), INVALID_ARGUMENT)
        await stream.close()
        await self.assert_fails(stream.write(b"late"), CONNECTION_FAILED)

    async def test_listener_accepts_and_peer_close_ends_the_stream(self):
        daemon = await self.connected()
        listener = await daemon.listen(5000)
        dialled = await daemon.dial(str(NODE), 5000)
        accepted = await bounded(listener.accept())
        self.assertEqual(accepted.local_port, 5000)
        await dialled.write(b"question")
        self.assertEqual(await accepted.read_exactly(8), b"question")
        await accepted.write(b"answer")
        self.assertEqual(await dialled.read(), b"answer")
        await dialled.close()
        chunks = [chunk async for chunk in accepted]
        self.assertEqual(chunks, [])
        self.assertIsNone(await accepted.closed)
        await self.assert_fails(accepted.read_exactly(1), CONNECTION_FAILED)

    async def test_async_iteration_over_a_listener(self):
        daemon = await self.connected()
        listener = await daemon.listen(5001)
        await daemon.dial("self", 5001)
        async for stream in listener:
            self.assertEqual(stream.local_port, 5001)
            break

    async def test_binding_twice_and_closing_a_listener(self):
        daemon = await self.connected()
        listener = await daemon.listen(5002)
        await self.assert_fails(daemon.listen(5002), ALREADY_EXISTS)
        waiting = listener.accept()
        await listener.close()
        await self.assert_fails(waiting, CONNECTION_FAILED)
        again = await daemon.listen(5002)
        self.assertEqual(again.port, 5002)

    async def test_disconnect_by_id(self):
        daemon = await self.connected()
        stream = await daemon.dial("agent-b", 7)
        await daemon.close_connection(stream.conn_id)
        self.assertIsNone(await stream.closed)
        await daemon.close_connection(12345)


class DatagramTests(DaemonTestCase):
    async def test_datagram_reaches_the_bound_port(self):
        daemon = await self.connected()
        listener = await daemon.listen(6000)
        self.assertEqual(await daemon.send_datagram("agent-b", 6000, b"ping"), 1)
        datagram = await bounded(listener.receive_datagram())
        self.assertEqual((datagram.src_address, datagram.dst_port, datagram.data), (NODE, 6000, b"ping"))

    async def test_a_broadcast_address_answers_with_the_copies_sent(self):
        daemon = await self.connected()
        self.assertEqual(await daemon.send_datagram(broadcast(3), 6000, b"all"), 2)
        self.assertEqual(await daemon.send_datagram("3:0003.FFFF.FFFF", 6000, b"all"), 2)
        self.assertEqual(self.fake.node.calls[-1], ("broadcast", 3, 6000, b"all"))

    async def test_bad_datagrams(self):
        daemon = await self.connected()
        await self.assert_fails(daemon.send_datagram("agent-b", 6000, "text"), INVALID_ARGUMENT)
        await self.assert_fails(daemon.send_datagram("agent-b", 6000, b"x" * (MAX_CHUNK + 1)), INVALID_ARGUMENT)
        await self.assert_fails(daemon.send_datagram("agent-b", -1, b"x"), INVALID_ARGUMENT)


class DaemonDeathTests(DaemonTestCase):
    async def test_everything_ends_with_not_running(self):
        daemon = await self.connected()
        stream = await daemon.dial("agent-b", 7)
        listener = await daemon.listen(7000)
        reading = stream.read()
        accepting = listener.accept()
        self.fake.disconnect_everyone()
        await bounded(daemon.disconnected)
        self.assertEqual((await stream.closed).code, NOT_RUNNING)
        await self.assert_fails(reading, NOT_RUNNING)
        await self.assert_fails(accepting, NOT_RUNNING)
        await self.assert_fails(daemon.info(), NOT_RUNNING)
        await self.assert_fails(stream.write(b"x"), NOT_RUNNING)
        await stream.close()


class RecordingDaemon:
    """Stands in for :class:`client.Daemon` below a Stream: records calls and pushes, answers on demand."""

    def __init__(self):
        self.calls = []
        self.pushes = []

    def _call(self, command, **arguments):
        answer = Deferred()
        self.calls.append((command.__name__, arguments, answer))
        return answer

    def _push(self, command, **arguments):
        self.pushes.append((command.__name__, arguments))

    def _forget_stream(self, stream):
        pass

    def take_pushes(self, name):
        taken = [arguments for pushed, arguments in self.pushes if pushed == name]
        self.pushes = [(pushed, arguments) for pushed, arguments in self.pushes if pushed != name]
        return taken


class StreamUnitTests(TestCase):
    def make_stream(self):
        self.daemon = RecordingDaemon()
        return client.Stream(self.daemon, 1, 49152, AGENT_B, 7)

    def test_writes_go_in_chunks_up_to_the_credit_then_wait_for_more(self):
        stream = self.make_stream()
        total = WRITE_CREDIT + 10 * MAX_CHUNK
        written = stream.write(b"x" * total)
        sent = self.daemon.take_pushes("Write")
        self.assertTrue(all(len(w["data"]) <= MAX_CHUNK for w in sent))
        in_credit = sum(len(w["data"]) for w in sent)
        self.assertLess(in_credit, WRITE_CREDIT + MAX_CHUNK)
        self.assertNoResult(written)
        stream._credited(in_credit)
        rest = self.daemon.take_pushes("Write")
        self.assertEqual(in_credit + sum(len(w["data"]) for w in rest), total)
        self.assertIsNone(self.successResultOf(written))

    def test_a_small_write_within_credit_is_done_at_once(self):
        stream = self.make_stream()
        self.assertIsNone(self.successResultOf(stream.write(b"ping")))
        self.assertEqual(self.daemon.take_pushes("Write"), [{"conn_id": 1, "data": b"ping"}])

    def test_a_stream_ending_fails_the_queued_writes_and_later_writes(self):
        stream = self.make_stream()
        written = stream.write(b"x" * (WRITE_CREDIT + MAX_CHUNK))
        stream._end(PilotError("gone", code=CONNECTION_FAILED))
        self.assertEqual(self.failureResultOf(written, PilotError).value.code, CONNECTION_FAILED)
        self.failureResultOf(stream.write(b"more"), PilotError)

    def test_close_waits_for_queued_writes(self):
        stream = self.make_stream()
        stream.write(b"x" * (WRITE_CREDIT + MAX_CHUNK))
        closing = stream.close()
        self.assertEqual(self.daemon.calls, [])
        stream._credited(WRITE_CREDIT)
        self.assertEqual([c[0] for c in self.daemon.calls], ["Close"])
        self.daemon.calls.pop(0)[2].callback({})
        self.assertIsNone(self.successResultOf(closing))
        self.assertIsNone(self.successResultOf(stream.closed))

    def test_received_window_goes_back_in_batches_as_it_is_read(self):
        stream = self.make_stream()
        stream._received(b"a" * (CREDIT_BATCH - 1))
        self.assertEqual(self.daemon.take_pushes("Consumed"), [])
        stream._received(b"b")
        self.assertEqual(self.daemon.take_pushes("Consumed"), [{"conn_id": 1, "size": CREDIT_BATCH}])

    def test_window_is_held_while_the_buffer_is_full(self):
        stream = self.make_stream()
        stream._received(b"a" * streams.RECEIVE_BUFFER_LIMIT)
        self.assertEqual(self.daemon.take_pushes("Consumed"), [])
        self.assertEqual(len(self.successResultOf(stream.read(10))), 10)
        self.assertEqual(self.daemon.take_pushes("Consumed"), [{"conn_id": 1, "size": streams.RECEIVE_BUFFER_LIMIT}])

    def test_no_backpressure_while_writing(self):
        # Write everything, then read, against an echo: holding the echo back
        # while our own write waits on the peer would deadlock both.
        stream = self.make_stream()
        stream._received(b"a" * streams.RECEIVE_BUFFER_LIMIT)
        self.assertEqual(self.daemon.take_pushes("Consumed"), [])
        writing = stream.write(b"x" * (WRITE_CREDIT + MAX_CHUNK))
        stream._received(b"b" * CREDIT_BATCH)
        self.assertEqual(self.daemon.take_pushes("Consumed"),
                         [{"conn_id": 1, "size": streams.RECEIVE_BUFFER_LIMIT + CREDIT_BATCH}])
        stream._credited(WRITE_CREDIT)
        self.successResultOf(writing)
        stream._received(b"c" * CREDIT_BATCH)
        self.assertEqual(self.daemon.take_pushes("Consumed"), [])

    def test_a_large_exact_read_lets_the_buffer_grow_to_its_size(self):
        stream = self.make_stream()
        size = streams.RECEIVE_BUFFER_LIMIT * 3
        reading = stream.read_exactly(size)
        for _ in range(3):
            stream._received(b"a" * streams.RECEIVE_BUFFER_LIMIT)
        self.assertEqual(sum(p["size"] for p in self.daemon.take_pushes("Consumed")), size)
        self.assertEqual(len(self.successResultOf(reading)), size)

    def test_error_is_raised_after_the_data_before_it(self):
        stream = self.make_stream()
        stream._received(b"tail")
        stream._end(PilotError("reset", code=CONNECTION_FAILED))
        self.assertEqual(self.successResultOf(stream.read()), b"tail")
        self.failureResultOf(stream.read(), PilotError)
        self.assertEqual(self.successResultOf(stream.closed).code, CONNECTION_FAILED)

    def test_a_cancelled_read_leaves_the_queue(self):
        stream = self.make_stream()
        reading = stream.read()
        reading.cancel()
        self.failureResultOf(reading)
        stream._received(b"later")
        self.assertEqual(self.successResultOf(stream.read()), b"later")
