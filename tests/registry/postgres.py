"""A throwaway PostgreSQL server for tests and benchmarks: its own cluster in a temp directory.

The distribution's server (``tools/run-tests`` installs it as root) refuses
to run as root, so under root the cluster belongs to the unprivileged
``postgres`` user (else ``nobody``).  PostgreSQL cannot listen on port 0: a
free port is found by binding 127.0.0.1:0 and releasing it, and start-up is
retried on another one if something took it meanwhile.  The server is stopped
(fast shutdown, then harder) and its directory removed in the test's cleanup,
whether the test passed or not.

:class:`PostgresServer` is the blocking core (benchmarks use it as it is);
:func:`start_cluster` wraps it for trial tests without blocking the reactor
on waits.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile

from twisted.trial.unittest import SkipTest

from tests.integration.processes import pause, wait_until

START_ATTEMPTS = 3
STOP_GRACE = 5.0
STOP_SIGNALS = ("SIGINT", "SIGQUIT", "SIGKILL")  # fast shutdown, immediate, then no choice


class PostgresMissing(Exception):
    """No PostgreSQL server program on this machine, or nobody to run it as."""


def server_programs():
    """The directory of ``initdb`` and ``postgres``: on PATH, else Debian's per-version one."""
    on_path = shutil.which("initdb")
    if on_path:
        return os.path.dirname(on_path)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(path.split("/")[-3]))
    if not found:
        raise PostgresMissing("the PostgreSQL server is not installed (tools/run-tests installs "
                              "the postgresql package when run as root)")
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
    raise PostgresMissing("running as root and no unprivileged user to run PostgreSQL as")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One cluster in a new temp directory; nothing here waits (the callers wait their own way)."""

    def __init__(self, max_connections=60, durable=True):
        """``durable=False`` turns fsync off: tests lose nothing a process crash can take."""
        self.programs = server_programs()
        self.durable = durable
        self.user = _server_user()
        self.max_connections = max_connections
        self.directory = tempfile.mkdtemp(prefix="pilotnet-pg-")
        self.port = 0
        self.process = None
        self._log = os.path.join(self.directory, "server.log")
        try:
            self._initdb()
        except BaseException:
            self.remove()
            raise

    def _as_server_user(self):
        if self.user is None:
            return {}
        uid, gid = self.user
        return {"user": uid, "group": gid, "extra_groups": []}

    def _initdb(self):
        sockets = os.path.join(self.directory, "sock")
        os.makedirs(sockets)
        if self.user is not None:
            for path in (self.directory, sockets):
                os.chown(path, *self.user)
        subprocess.run(
            [os.path.join(self.programs, "initdb"), "-D", os.path.join(self.directory, "data"),
             "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, **self._as_server_user())

    def url(self, database="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def spawn(self, port):
        """Start the server on ``port`` (not yet ready; see :meth:`ready`)."""
        self.port = port
        with open(self._log, "ab") as log:
            self.process = subprocess.Popen(
                [os.path.join(self.programs, "postgres"), "-D",
                 os.path.join(self.directory, "data"), "-h", "127.0.0.1", "-p", str(port),
                 "-k", os.path.join(self.directory, "sock"),
                 "-c", f"max_connections={self.max_connections}", "-c", "shared_buffers=32MB",
                 "-c", f"fsync={'on' if self.durable else 'off'}"],
                stdout=log, stderr=log, env={}, **self._as_server_user())

    def ready(self):
        """True once it accepts queries; raises if the server exited."""
        import psycopg
        if self.process.poll() is not None:
            with open(self._log, errors="replace") as log:
                raise RuntimeError(f"PostgreSQL exited:\n{log.read()[-2000:]}")
        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self, name):
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def signal(self, name):
        if self.running:
            self.process.send_signal(getattr(signal, name))

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresCluster:
    """A :class:`PostgresServer` for a trial test: async start/stop/restart, removed at cleanup."""

    def __init__(self, test):
        try:
            self.server = PostgresServer(durable=False)
        except PostgresMissing as missing:
            raise SkipTest(str(missing)) from None
        test.addCleanup(self.server.remove)
        test.addCleanup(self.stop)

    @property
    def port(self):
        return self.server.port

    def url(self, database="postgres"):
        return self.server.url(database)

    def create_database(self, name):
        return self.server.create_database(name)

    async def start(self):
        """Start the server (on a new free port the first time); ready to accept queries."""
        for attempt in range(START_ATTEMPTS):
            first_start = not self.server.port
            self.server.spawn(self.server.port or free_port())
            try:
                await wait_until(self.server.ready, "PostgreSQL to accept connections")
                return self
            except RuntimeError:
                if attempt == START_ATTEMPTS - 1 or not first_start:
                    raise
                self.server.port = 0  # the port was taken meanwhile: another one
        return self

    async def stop(self):
        """Fast shutdown (disconnects clients), then harder if it lingers; idempotent."""
        for name in STOP_SIGNALS:
            if not self.server.running:
                return
            self.server.signal(name)
            for _ in range(int(STOP_GRACE / 0.05)):
                if not self.server.running:
                    return
                await pause(0.05)

    async def restart(self):
        await self.stop()
        await self.start()


async def start_cluster(test):
    """A started :class:`PostgresCluster`, stopped and removed in ``test``'s cleanup."""
    return await PostgresCluster(test).start()
