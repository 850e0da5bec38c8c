"""The real ``pilotctl`` process against the fake daemon running as its own process."""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

import pilotnet
from tests.driver.support import bounded

ROOT = str(Path(pilotnet.__file__).resolve().parent.parent)

# Runs command lines that need no daemon in one process, then lists the Twisted modules it imported.
WITHOUT_THE_DAEMON = """
import io, sys
from pilotnet.cli.runner import start
for argv in (["context"], ["--json", "context"], [], ["nope"], ["info", "--nope"], ["daemon"],
             ["init", "--hostname", "quick"], ["config"], ["received"], ["inbox", "--clear"], ["daemon", "--help"]):
    start(argv, stdout=io.StringIO(), stderr=io.StringIO())
print(sorted(name for name in sys.modules if name.partition(".")[0] == "twisted"))
"""

# Runs bin/pilotctl as the installed script runs, then lists the costly modules it imported: each of
# these costs a pilotctl start milliseconds (``re`` alone about half a bare interpreter's start).
COSTLY_MODULES = ("re", "json", "typing", "enum", "functools", "pathlib", "inspect", "dataclasses", "twisted")
SCRIPT_IMPORTS = """
import sys
sys.argv = ["pilotctl"] + sys.argv[1:]
path = {script!r}
try:
    exec(compile(open(path).read(), path, "exec"), {{"__name__": "__main__"}})
except SystemExit:
    pass
sys.stderr.write(repr(sorted(name for name in sys.modules if name.partition(".")[0] in {costly!r})))
"""


class Collect(ProcessProtocol):
    """Gathers a process's output; ``ready`` fires on the first stdout line, ``ended`` with the exit code."""

    def __init__(self, stdin=b""):
        self.stdin = stdin
        self.out = b""
        self.err = b""
        self.ready = Deferred()
        self.ended = Deferred()

    def connectionMade(self):
        self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.out += data
        if b"\n" in self.out and not self.ready.called:
            self.ready.callback(self.out)

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


class ProcessTests(TestCase):
    timeout = 30  # trial fails a test still running after this many seconds

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="pilot-test-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.environment = {
            "PILOT_HOME": self.home, "PYTHONPATH": ROOT, "PATH": os.environ.get("PATH", ""),
        }

    def spawn(self, argv, protocol):
        process = reactor.spawnProcess(protocol, sys.executable, [sys.executable] + argv, env=self.environment)

        def kill():
            if not protocol.ended.called:
                process.signalProcess("KILL")
            return protocol.ended

        self.addCleanup(kill)
        return process

    async def start_fake_daemon(self):
        protocol = Collect()
        self.spawn(["-m", "tests.driver.fakedaemon", os.path.join(self.home, "pilot.sock")], protocol)
        self.assertEqual(await bounded(protocol.ready), b"ready\n")

    async def pilotctl(self, *argv, stdin=b""):
        protocol = Collect(stdin)
        self.spawn(["-m", "pilotnet.cli.main"] + list(argv), protocol)
        code = await bounded(protocol.ended, 30)
        return code, protocol.out.decode(), protocol.err.decode()

    async def test_without_a_daemon(self):
        code, out, err = await self.pilotctl("info", "--json")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(json.loads(err), {"code": "not_running", "hint": "start the daemon with: pilotctl daemon start",
                                           "message": "daemon is not running", "status": "error"})
        code, out, err = await self.pilotctl()
        self.assertEqual(code, 2)
        self.assertIn("usage: pilotctl", err)

    async def test_commands_without_the_daemon_do_not_import_twisted(self):
        """Importing Twisted is most of a command's start-up time; these commands finish before it."""
        protocol = Collect()
        self.spawn(["-c", WITHOUT_THE_DAEMON], protocol)
        self.assertEqual(await bounded(protocol.ended, 30), 0, protocol.err)
        self.assertEqual(protocol.out, b"[]\n")

    async def test_the_script_imports_nothing_costly(self):
        """``pilotctl context`` and ``pilotctl info`` start as little as the interpreter can (issue: quick as a builtin)."""
        script = SCRIPT_IMPORTS.format(script=os.path.join(ROOT, "bin", "pilotctl"), costly=COSTLY_MODULES)
        await self.start_fake_daemon()
        for argv in (["context", "--json"], ["--json", "info"]):
            protocol = Collect()
            self.spawn(["-c", script] + argv, protocol)
            self.assertEqual(await bounded(protocol.ended, 30), 0, protocol.err)
            self.assertEqual(protocol.err, b"[]", argv)
            self.assertEqual(json.loads(protocol.out)["status"], "ok")

    async def test_against_the_fake_daemon(self):
        await self.start_fake_daemon()
        code, out, err = await self.pilotctl("--json", "info")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out)["data"]["address"], "0:0000.0000.0005")
        code, out, err = await self.pilotctl("ping", "agent-b", "--count", "1")
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith("PING 0:0000.0000.0009\n6 bytes from 0:0000.0000.0009: seq=0 time="), out)
        self.assertIn("1 probe sent, 1 received, 0% probe loss", out)
        code, out, err = await self.pilotctl("bench", "agent-b", "1")
        self.assertEqual(code, 0, err)
        self.assertIn("  Echoed:   1.0 MB in ", out)
        self.assertNotIn("100%", err)  # stderr is a pipe here: no progress bar
        code, out, err = await self.pilotctl("connect", "agent-b", "7", stdin=b"piped\n")
        self.assertEqual((code, out), (0, "piped\n"))
        code, out, err = await self.pilotctl("send", "agent-b", "70000", "--data", "x")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, 'error: invalid port "70000": must be a number from 0 to 65535\n')
