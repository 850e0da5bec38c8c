"""A throwaway PostgreSQL server for tests: its own cluster in a temp directory.

The distribution's server (``tools/run-tests`` installs it as root) refuses
to run as root, so under root the cluster belongs to the unprivileged
``postgres`` user (else ``nobody``).  PostgreSQL cannot listen on port 0: a
free port is found by binding 127.0.0.1:0 and releasing it, and start-up is
retried on another one if something took it meanwhile.  The server is stopped
(fast shutdown, then harder) and its directory removed in the test's cleanup,
whether the test passed or not.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SkipTest

from tests.integration.processes import pause, wait_until

START_ATTEMPTS = 3
STOP_GRACE = 5.0


def server_programs():
    """The directory of ``initdb`` and ``postgres``: on PATH, else Debian's per-version one."""
    on_path = shutil.which("initdb")
    if on_path:
        return os.path.dirname(on_path)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(path.split("/")[-3]))
    if not found:
        raise SkipTest("the PostgreSQL server is not installed (tools/run-tests installs the "
                       "postgresql package when run as root)")
    return os.path.dirname(found[-1])


def _server_user():
    """``(uid, gid)`` to run the server as: ourselves, or an unprivileged user under root."""
    if os.getuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise SkipTest("running as root and no unprivileged user to run PostgreSQL as")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _ServerOutput(ProcessProtocol):
    def __init__(self):
        self.output = b""
        self.ended = Deferred()

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(None)


class PostgresCluster:
    """One PostgreSQL server of the test's own; ``url(name)`` after :meth:`start`."""

    def __init__(self, test):
        self.test = test
        self.programs = server_programs()
        self.user = _server_user()
        self.directory = tempfile.mkdtemp(prefix="pilotnet-pg-")
        test.addCleanup(shutil.rmtree, self.directory, True)
        self.port = 0
        self._process = None
        self._output = None
        self._initdb()

    def _as_server_user(self):
        if self.user is None:
            return {}
        uid, gid = self.user
        return {"user": uid, "group": gid, "extra_groups": []}

    def _initdb(self):
        if self.user is not None:
            os.chown(self.directory, *self.user)
        os.makedirs(os.path.join(self.directory, "sock"))
        if self.user is not None:
            os.chown(os.path.join(self.directory, "sock"), *self.user)
        subprocess.run(
            [os.path.join(self.programs, "initdb"), "-D", os.path.join(self.directory, "data"),
             "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, **self._as_server_user())

    def url(self, database="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def start(self):
        """Start the server (on a new free port the first time); ready to accept queries."""
        for attempt in range(START_ATTEMPTS):
            port = self.port or _free_port()
            self._spawn(port)
            try:
                await wait_until(self._ready, "PostgreSQL to accept connections")
            except AssertionError:
                if attempt == START_ATTEMPTS - 1 or self.port:
                    raise
                continue  # the port was taken meanwhile: another one
            self.port = port
            return self
        return self

    def _spawn(self, port):
        self._output = _ServerOutput()
        args = [os.path.join(self.programs, "postgres"), "-D", os.path.join(self.directory, "data"),
                "-h", "127.0.0.1", "-p", str(port), "-k", os.path.join(self.directory, "sock"),
                "-c", "max_connections=60", "-c", "shared_buffers=32MB", "-c", "fsync=off"]
        uid, gid = self.user if self.user is not None else (None, None)
        self._process = reactor.spawnProcess(self._output, args[0], args, env={},
                                             uid=uid, gid=gid)
        self._pending_port = port
        self.test.addCleanup(self.stop)

    def _ready(self):
        import psycopg
        if self._output.ended.called:
            raise AssertionError(f"PostgreSQL exited:\n{self._output.output.decode()[-2000:]}")
        try:
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{self._pending_port}/postgres",
                            connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self, name):
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    async def stop(self):
        """Fast shutdown (disconnects clients), then harder if it lingers; idempotent."""
        if self._output is None or self._output.ended.called:
            return
        for signal_name in ("INT", "QUIT", "KILL"):
            try:
                self._process.signalProcess(signal_name)
            except ProcessExitedAlready:
                break
            deadline = reactor.seconds() + STOP_GRACE
            while not self._output.ended.called and reactor.seconds() < deadline:
                await pause(0.05)
            if self._output.ended.called:
                return

    async def restart(self):
        await self.stop()
        await self.start()


async def start_cluster(test):
    """A started :class:`PostgresCluster`, stopped and removed in ``test``'s cleanup."""
    return await PostgresCluster(test).start()
