"""The control socket of a real daemon: the blocking client, big answers, hostile clients, the socket path.

Also ``pilotctl``'s commands that need no daemon at all (help, and the ones
that talk to the registry directly).
"""

import errno
import json
import os
import select
import socket
import subprocess
import sys
import tempfile

from twisted.internet.defer import gatherResults
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from pilotnet.control import schema
from pilotnet.control.client import BoxReader, ControlClient, encode_box
from pilotnet.errors import INVALID_ARGUMENT, PilotError
from pilotnet.wire.address import PORT_ECHO
from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, pilotctl, wait_until

#: More connections than fit one AMP value of Info or Connections (about 150 did before).
MANY_CONNECTIONS = 400
#: Seconds a client that floods requests waits for the daemon's socket to take more before concluding it stopped.
STALL = 3.0


class ControlSocketTests(PilotctlMixin, TestCase):
    timeout = 240

    async def network(self, beta_options=None):
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        self.alpha = await DaemonProcess(self, os.path.join(base, "alpha"), self.rendezvous,
                                         hostname="alpha").start()
        if beta_options is not None:
            self.beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous, *beta_options,
                                            hostname="beta").start()

    def client(self):
        """A blocking client of alpha's socket (used from a thread: this test's reactor keeps running)."""
        client = ControlClient(self.alpha.socket_path, timeout=20.0)
        self.addCleanup(client.close)
        return client

    async def test_the_blocking_client_against_the_real_daemon(self):
        await self.network()
        client = self.client()
        info = await deferToThread(lambda: client.call(schema.INFO)["info"])
        self.assertEqual((info["node_id"], info["hostname"]), (self.alpha.node_id, "alpha"))
        tags = await deferToThread(lambda: client.call(schema.SET_TAGS, tags=["gpu", "ml"])["result"])
        self.assertEqual(tags["node_id"], self.alpha.node_id)
        for timeout in (float("nan"), float("inf"), -1.0, 0.0):
            box = {b"_command": b"Dial", b"_ask": b"1"}
            schema.DIAL.encode_arguments({"address": self.alpha.address, "port": PORT_ECHO}, box)
            box[b"timeout"] = repr(timeout).encode()  # what a client skipping the schema's own check sends
            error = await deferToThread(self._raw_error, box)
            self.assertEqual(error["code"], INVALID_ARGUMENT, timeout)
            self.assertIn("timeout", error["message"])
        with self.assertRaises(PilotError) as raised:
            client.call(schema.DIAL, address=self.alpha.address, port=PORT_ECHO, timeout=float("nan"))
        self.assertEqual(raised.exception.code, INVALID_ARGUMENT)

    def _raw_error(self, box):
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(20)
            raw.connect(self.alpha.socket_path)
            raw.sendall(encode_box(box))
            reader = BoxReader()
            while True:
                for reply in reader.feed(raw.recv(65536)):
                    return json.loads(reply[b"_error_description"])

    async def test_pilotctl_info_imports_no_twisted(self):
        await self.network([])
        script = ("import atexit, sys\n"
                  "atexit.register(lambda: sys.stderr.write('\\nTWISTED=%s\\n' % "
                  "any(m == 'twisted' or m.startswith('twisted.') for m in sys.modules)))\n"
                  "from pilotnet.cli.main import main\n"
                  "main(sys.argv[1:])\n")
        env = dict(os.environ, PILOT_HOME=self.alpha.home, PILOT_SOCKET=self.alpha.socket_path)
        for argv in (["info", "--json"], ["peers"], ["trust"], ["pending"], ["daemon", "status"], ["health"],
                     ["send", self.beta.address, "7", "--data", "hi"]):
            done = await deferToThread(subprocess.run, [sys.executable, "-c", script, *argv], env=env,
                                       capture_output=True, text=True, timeout=60)
            self.assertEqual(done.returncode, 0, (argv, done.stderr))
            self.assertIn("TWISTED=False", done.stderr, argv)

    async def test_info_connections_and_status_answer_with_hundreds_of_connections(self):
        await self.network(["--syn-rate-limit", "10000"])
        sdk = await self.alpha.connect()
        streams = []
        for start in range(0, MANY_CONNECTIONS, 50):
            streams += await gatherResults([sdk.dial(self.beta.address, PORT_ECHO) for _ in range(50)])
        info = await self.ok(self.alpha, "info")
        self.assertGreaterEqual(info["connections"], MANY_CONNECTIONS)
        self.assertGreater(len(json.dumps(info)), 65535)  # more than one AMP value could carry
        connections = await self.ok(self.alpha, "connections")
        self.assertGreaterEqual(connections["total"], MANY_CONNECTIONS)
        status = await self.ok(self.alpha, "daemon", "status")
        self.assertGreaterEqual(status["connections"], MANY_CONNECTIONS)
        self.assertTrue(status["responsive"])
        human = await self.on(self.alpha, "connections")
        self.assertEqual(human.code, 0, human)
        self.assertIn("more (see --json)", human.stdout)
        for stream in streams:
            stream.close()

    async def test_a_client_that_never_reads_is_not_buffered_without_bound(self):
        await self.network()
        sent = await deferToThread(self._flood_without_reading, 40000)
        # The daemon stopped reading this client once its answers stopped draining, so the flood stalled
        # long before all of it was taken (the daemon used to read and answer every request).
        self.assertLess(sent, 40000)
        info = await self.ok(self.alpha, "info")
        self.assertEqual(info["node_id"], self.alpha.node_id)

    def _flood_without_reading(self, requests):
        """Send ``requests`` Info asks and never read; how many went out before the socket stalled."""
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(self.alpha.socket_path)
            raw.setblocking(False)
            sent = 0
            pending = b""
            while sent < requests:
                if not pending:
                    pending = encode_box({b"_command": b"Info", b"_ask": b"%x" % sent})
                try:
                    written = raw.send(pending)
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        return sent  # dropped by the daemon: bounded too
                    if not select.select([], [raw], [], STALL)[1]:
                        return sent
                    continue
                pending = pending[written:]
                if not pending:
                    sent += 1
            return sent

    async def test_a_live_socket_is_refused_and_kept_a_stale_one_replaced(self):
        await self.network()
        second = DaemonProcess(self, self.mktemp(), self.rendezvous, hostname="second")
        second.socket_path = self.alpha.socket_path
        second.spawn({"PILOT_HOME": second.home})
        self.assertNotEqual((await second.ended).exitCode, 0)
        self.assertIn("already listening", second.output)
        self.assertEqual((await self.ok(self.alpha, "info"))["node_id"], self.alpha.node_id)

        not_a_socket = os.path.join(tempfile.mkdtemp(prefix="pilotnet-"), "notes.txt")
        self.addCleanup(os.remove, not_a_socket)
        with open(not_a_socket, "w") as handle:
            handle.write("keep me")
        third = DaemonProcess(self, self.mktemp(), self.rendezvous, hostname="third")
        third.socket_path = not_a_socket
        third.spawn({"PILOT_HOME": third.home})
        self.assertNotEqual((await third.ended).exitCode, 0)
        with open(not_a_socket) as handle:
            self.assertEqual(handle.read(), "keep me")

        stale_directory = tempfile.mkdtemp(prefix="pilotnet-")
        stale = os.path.join(stale_directory, "pilot.sock")
        with socket.socket(socket.AF_UNIX) as left_behind:
            left_behind.bind(stale)  # a socket file nothing listens on, as a crashed daemon leaves
        fourth = DaemonProcess(self, self.mktemp(), self.rendezvous, hostname="fourth")
        fourth.socket_path = stale
        fourth.spawn({"PILOT_HOME": fourth.home})
        self.addCleanup(fourth.kill)

        async def answering():
            fourth.check_alive()
            info = await fourth.query_info()
            return info is not None and info.get("hostname") == "fourth"

        await wait_until(answering, "the daemon to replace the stale socket")


class NoDaemonTests(TestCase):
    """Commands that work with no daemon: help, and the registry-direct ones."""

    timeout = 120

    def home(self, registry):
        home = tempfile.mkdtemp(prefix="pilot-home-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", home]))
        with open(os.path.join(home, "config.json"), "w") as config:
            json.dump({"registry": registry}, config)
        return home

    async def ok(self, home, *args):
        result = await pilotctl(self, home, *args, "--json", socket_path=os.path.join(home, "none.sock"))
        self.assertEqual(result.code, 0, result)
        return result.json()["data"]

    async def test_register_lookup_rotate_deregister_without_a_daemon(self):
        rendezvous = await RendezvousProcess(self, os.path.join(self.mktemp(), "rendezvous")).start()
        home = self.home(rendezvous.registry_address)
        registered = await self.ok(home, "register", "127.0.0.1:4000")
        node_id = registered["node_id"]
        with open(os.path.join(home, "identity.json")) as identity:
            first_key = json.load(identity)["public_key"]
        self.assertEqual(oct(os.stat(os.path.join(home, "identity.json")).st_mode & 0o777), "0o600")
        looked_up = await self.ok(home, "lookup", str(node_id))
        self.assertEqual((looked_up["node_id"], looked_up["public_key"]), (node_id, first_key))
        rotated = await self.ok(home, "rotate-key", str(node_id))
        with open(os.path.join(home, "identity.json")) as identity:
            second_key = json.load(identity)["public_key"]
        self.assertNotEqual(second_key, first_key)
        self.assertEqual(rotated["public_key"], second_key)
        self.assertEqual((await self.ok(home, "lookup", str(node_id)))["public_key"], second_key)
        self.assertEqual(await self.ok(home, "deregister", str(node_id)), {"type": "deregister_ok"})
        gone = await pilotctl(self, home, "lookup", str(node_id), "--json")
        self.assertEqual((gone.code, gone.error()["code"]), (1, "not_found"))

    async def test_an_unreachable_registry_is_connection_failed(self):
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        home = self.home(f"127.0.0.1:{port}")
        result = await pilotctl(self, home, "lookup", "5", "--json")
        self.assertEqual(result.code, 1, result)
        self.assertEqual(result.error()["code"], "connection_failed")
        self.assertIn("PILOT_REGISTRY", result.error()["hint"])

