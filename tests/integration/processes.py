"""Real pilotnet processes for integration tests: rendezvous, daemons, pilotctl.

Every process binds port 0 on 127.0.0.1, reports what it bound (a ports file,
or its control socket), and is killed in the test's cleanup whatever happens.
Waits are polls with a deadline: a process that never becomes ready fails the
test with its own output instead of hanging it.
"""

import inspect
import json
import os
import shutil
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from pilotnet.driver.client import connect
from pilotnet.errors import PilotError

_TWISTD = "from twisted.scripts.twistd import run; run()"
READY_TIMEOUT = 20.0


def pause(seconds):
    waiting = Deferred()
    reactor.callLater(seconds, waiting.callback, None)
    return waiting


async def wait_until(condition, what, timeout=READY_TIMEOUT, interval=0.02):
    """Poll ``condition`` (which may be async) until it is true, for at most ``timeout``."""
    deadline = reactor.seconds() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await pause(interval)


class ProcessOutput(ProcessProtocol):
    """Collects a process's output (stdout and stderr together); ``ended`` fires with the reason it ended."""

    def __init__(self):
        self.output = b""
        self.ended = Deferred()

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)


class TwistdProcess:
    """One ``twistd -n`` process in ``directory``, killed in the test's cleanup."""

    plugin = None

    def __init__(self, test, directory, *extra):
        self.test = test
        self.directory = os.path.abspath(directory)
        self.extra = list(extra)
        self._process = None
        self._output = None

    def arguments(self):
        raise NotImplementedError

    def twistd_options(self):
        """In the foreground, no pid file: the test owns the process."""
        return ["-n", "--pidfile="]

    def spawn(self, environment=None):
        os.makedirs(self.directory, exist_ok=True)
        self._output = ProcessOutput()
        args = [sys.executable, "-c", _TWISTD, *self.twistd_options(), self.plugin, *self.arguments(), *self.extra]
        env = dict(os.environ)
        env.update(environment or {})
        self._process = reactor.spawnProcess(self._output, sys.executable, args, env=env, path=self.directory)
        self.test.addCleanup(self.kill)

    @property
    def running(self):
        return self._output is not None and not self._output.ended.called

    @property
    def output(self):
        return self._output.output.decode("utf-8", "replace") if self._output else ""

    @property
    def ended(self):
        """A Deferred of the process's end (its ``ProcessDone`` or ``ProcessTerminated``)."""
        return self._output.ended

    def check_alive(self):
        if not self.running:
            self.test.fail(f"{self.plugin} exited early:\n{self.output[-4000:]}")

    async def stop(self, signal="TERM"):
        """Send ``signal`` and wait for the exit; returns the exit reason."""
        if not self._output.ended.called:
            self._process.signalProcess(signal)
        return await self._output.ended

    def kill(self):
        if self.running:
            self._process.signalProcess("KILL")
            return self._output.ended.addErrback(lambda failure: None).addBoth(self._keep_output)
        self._keep_output(None)
        return None

    def _keep_output(self, _):
        """Leave the process's output beside its files (trial keeps them), to read after a failure."""
        if self._output is not None:
            with open(os.path.join(self.directory, "output.log"), "wb") as handle:
                handle.write(self._output.output)

    async def spawn_and_read_ports(self, ports_file):
        """Start the process and wait for the ports file it writes once listening; its contents."""
        if os.path.exists(ports_file):
            os.remove(ports_file)
        self.spawn()

        def ready():
            self.check_alive()
            return os.path.exists(ports_file)

        await wait_until(ready, f"{self.plugin} to report its ports")
        with open(ports_file) as handle:
            return json.load(handle)


class RendezvousProcess(TwistdProcess):
    """``twistd -n pilot-rendezvous``; its bound ports are read from a ports file."""

    plugin = "pilot-rendezvous"

    def __init__(self, test, directory, *extra):
        super().__init__(test, directory, *extra)
        self.ports_file = os.path.join(self.directory, "ports.json")
        self.ports = None
        self.registry_port = 0
        self.beacon_port = 0

    def arguments(self):
        return ["--registry", f"tcp:{self.registry_port}:interface=127.0.0.1",
                "--beacon", f"127.0.0.1:{self.beacon_port}", "--ports-file", self.ports_file]

    async def start(self):
        self.ports = await self.spawn_and_read_ports(self.ports_file)
        # A restart of this object reuses the same ports, as a restarted server would.
        self.registry_port = self.ports["registry"]["port"]
        self.beacon_port = self.ports["beacon"]["port"]
        return self

    @property
    def registry_endpoint(self):
        return f"tcp:127.0.0.1:{self.registry_port}"

    @property
    def registry_address(self):
        return f"127.0.0.1:{self.registry_port}"

    @property
    def beacon_address(self):
        return ("127.0.0.1", self.beacon_port)


class DaemonProcess(TwistdProcess):
    """``twistd -n pilot-daemon`` with its own home directory; ready once it answers Info."""

    plugin = "pilot-daemon"

    def __init__(self, test, directory, rendezvous, *extra, hostname=None, public=True):
        super().__init__(test, directory, *extra)
        self.rendezvous = rendezvous
        self.hostname = hostname
        self.public = public
        self.home = os.path.join(self.directory, "home")
        # Unix socket paths are limited to 107 bytes; trial's temp paths are longer.
        socket_directory = tempfile.mkdtemp(prefix="pilotnet-")
        test.addCleanup(shutil.rmtree, socket_directory, True)
        self.socket_path = os.path.join(socket_directory, "pilot.sock")
        self.info = None

    def arguments(self):
        args = ["--home", self.home, "--socket", self.socket_path, "--registry", self.rendezvous.registry_address,
                "--beacon", "%s:%d" % self.rendezvous.beacon_address, "--listen", "127.0.0.1:0"]
        if self.hostname:
            args += ["--hostname", self.hostname]
        if self.public:
            args.append("--public")
        return args

    async def start(self):
        if os.path.exists(self.socket_path):
            os.remove(self.socket_path)
        self.spawn({"PILOT_HOME": self.home})

        async def registered():
            self.check_alive()
            if not os.path.exists(self.socket_path):
                return False
            info = await self.query_info()
            return info if info and info.get("node_id") else False

        self.info = await wait_until(registered, "pilot-daemon to register")
        return self

    async def query_info(self):
        try:
            daemon = await connect(reactor, self.socket_path, timeout=2.0)
        except PilotError:
            return None
        try:
            return await daemon.info()
        finally:
            daemon.close()

    async def connect(self):
        daemon = await connect(reactor, self.socket_path)
        self.test.addCleanup(daemon.close)
        return daemon

    @property
    def address(self):
        return self.info["address"]

    @property
    def node_id(self):
        return self.info["node_id"]


class PilotctlResult:
    def __init__(self, code, stdout, stderr):
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def json(self):
        return json.loads(self.stdout)

    def error(self):
        return json.loads(self.stderr.strip().splitlines()[-1])

    def __repr__(self):
        return f"<pilotctl exit {self.code}\nstdout: {self.stdout}\nstderr: {self.stderr}>"


class _Collect(ProcessProtocol):
    def __init__(self):
        self.stdout = b""
        self.stderr = b""
        self.ended = Deferred()

    def outReceived(self, data):
        self.stdout += data

    def errReceived(self, data):
        self.stderr += data

    def processEnded(self, reason):
        self.ended.callback(getattr(reason.value, "exitCode", None))


async def pilotctl(test, home, *args, socket_path=None, stdin=None, timeout=60.0):
    """Run the real ``pilotctl`` with ``home`` as its home (and ``socket_path`` as the daemon's socket)."""
    collect = _Collect()
    env = dict(os.environ, PILOT_HOME=home)
    env.pop("PILOT_SOCKET", None)
    if socket_path is not None:
        env["PILOT_SOCKET"] = socket_path
    process = reactor.spawnProcess(collect, sys.executable,
                                   [sys.executable, "-m", "pilotnet.cli.main", *args], env=env)
    if stdin is not None:
        process.write(stdin)
    process.closeStdin()
    killer = reactor.callLater(timeout, process.signalProcess, "KILL")
    code = await collect.ended
    if killer.active():
        killer.cancel()
    else:
        test.fail(f"pilotctl {' '.join(args)} did not finish within {timeout:g}s")
    return PilotctlResult(code, collect.stdout.decode("utf-8", "replace"), collect.stderr.decode("utf-8", "replace"))


class PilotctlMixin:
    """For TestCases driving daemons (:class:`DaemonProcess`) with the real ``pilotctl``."""

    def on(self, daemon, *args, **options):
        return pilotctl(self, daemon.home, *args, socket_path=daemon.socket_path, **options)

    async def ok(self, daemon, *args):
        """``--json`` output's data of a command that must succeed."""
        result = await self.on(daemon, *args, "--json")
        self.assertEqual(result.code, 0, result)
        envelope = result.json()
        self.assertEqual(envelope["status"], "ok")
        return envelope["data"]
