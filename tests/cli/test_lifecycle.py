"""``daemon start|stop|status`` with the fake daemon standing in for ``twistd pilot-daemon``.

The command that would run the real daemon is swapped for one running the
fake daemon as a real background process, so the pid file, the log, the
polling and the signals are all exercised for real.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import TestCase

import pilotnet
from pilotnet.cli.commands import lifecycle
from tests.cli.support import PilotctlMixin

ROOT = str(Path(pilotnet.__file__).resolve().parent.parent)


def fake_daemon_command(options):
    script = f"import sys; sys.path.insert(0, {ROOT!r}); from tests.driver.fakedaemon import main; main({options['socket']!r})"
    return [sys.executable, "-c", script]


class DaemonCommandTests(TestCase):
    def test_options_become_twistd_arguments(self):
        command = lifecycle.daemon_command({"home": "/h", "socket": "/h/s", "public": True, "listen": "0.0.0.0:0"})
        self.assertEqual(command[1:], [
            "-c", lifecycle.TWISTD, "-n", "--pidfile=", "pilot-daemon",
            "--home", "/h", "--socket", "/h/s", "--public", "--listen", "0.0.0.0:0",
        ])


class LifecycleTests(PilotctlMixin, TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="pilot-test-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.addCleanup(self.kill_recorded_daemon)
        self.patch(lifecycle, "daemon_command", fake_daemon_command)

    def kill_recorded_daemon(self):
        try:
            pid = int(Path(self.home_file("pilot.pid")).read_text())
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (OSError, ValueError):
            pass

    async def test_daemon_flags_are_passed_on(self):
        seen = []

        def recording(options):
            seen.append(options)
            return fake_daemon_command(options)

        self.patch(lifecycle, "daemon_command", recording)
        started = await self.pilotctl("daemon", "start", "--mss", "4096", "--local-mss", "0",
                                      "--listen", "127.0.0.1:0", "--webhook", "http://127.0.0.1:9/h",
                                      "--webhook-allow-private", "--json")
        self.assertEqual(started.code, 0, started)
        self.assertEqual((seen[0]["mss"], seen[0]["local-mss"], seen[0]["listen"]), ("4096", "0", "127.0.0.1:0"))
        self.assertEqual((seen[0]["webhook"], seen[0]["webhook-allow-private"]), ("http://127.0.0.1:9/h", True))

    async def test_start_status_stop(self):
        started = await self.pilotctl("daemon", "start", "--json")
        self.assertEqual(started.code, 0, started)
        pid = started.data["pid"]
        self.assertEqual(Path(self.home_file("pilot.pid")).read_text().strip(), str(pid))
        self.assertEqual(started.data["address"], "0:0000.0000.0005")
        self.assertEqual(started.data["socket"], self.home_file("pilot.sock"))
        self.assertEqual(started.data["log_file"], self.home_file("pilot.log"))

        status = await self.pilotctl("daemon", "status", "--json")
        self.assertEqual((status.data["running"], status.data["responsive"], status.data["pid"]), (True, True, pid))
        human = await self.pilotctl("daemon", "status")
        self.assertTrue(human.stdout.startswith(f"Daemon: running (pid {pid})\n  Node ID:     5\n"))
        self.assertEqual((await self.pilotctl("daemon", "status", "--check")).code, 0)

        again = await self.pilotctl("daemon", "start", "--json")
        self.assertEqual(again.error["code"], "already_exists")
        self.assertEqual(again.error["hint"], "stop it first with: pilotctl daemon stop")

        stopped = await self.pilotctl("daemon", "stop")
        self.assertEqual(stopped.stdout, f"daemon stopped (pid {pid})\n")
        self.assertFalse(os.path.exists(self.home_file("pilot.pid")))

        after = await self.pilotctl("daemon", "status")
        self.assertEqual((after.code, after.stdout), (0, "Daemon: stopped\n  start with: pilotctl daemon start\n"))
        self.assertEqual((await self.pilotctl("daemon", "status", "--check")).code, 1)
        stop_again = await self.pilotctl("daemon", "stop", "--json")
        self.assertEqual(stop_again.error["message"], "daemon is not running")

    async def test_human_start_output(self):
        started = await self.pilotctl("daemon", "start", "--hostname", "alpha")
        self.assertEqual(started.code, 0, started)
        lines = started.stdout.splitlines()
        self.assertTrue(lines[0].startswith("Daemon running (pid "))
        self.assertEqual(lines[1:], ["  Address:  0:0000.0000.0005", f"  Socket:   {self.home_file('pilot.sock')}",
                                     f"  Logs:     {self.home_file('pilot.log')}"])
        self.assertTrue(started.stderr.startswith("starting daemon (pid "))

    async def test_a_daemon_that_exits_early(self):
        self.patch(lifecycle, "daemon_command",
                   lambda options: [sys.executable, "-c", "import sys; print('bad option'); sys.exit(3)"])
        result = await self.pilotctl("daemon", "start", "--json")
        self.assertEqual(result.code, 1)
        self.assertEqual(result.error["code"], "not_running")
        self.assertEqual(result.error["message"], "daemon exited with code 3 before it was ready")
        self.assertIn("bad option", Path(self.home_file("pilot.log")).read_text())
        self.assertFalse(os.path.exists(self.home_file("pilot.pid")))

    async def test_a_live_pid_file_refuses_start(self):
        Path(self.home_file("pilot.pid")).write_text(f"{os.getpid()}\n")
        self.addCleanup(os.remove, self.home_file("pilot.pid"))
        result = await self.pilotctl("daemon", "start", "--json")
        self.assertEqual(result.error["code"], "already_exists")
        self.assertEqual(result.error["message"], f"daemon is already running (pid {os.getpid()})")

    async def test_stale_pid_file(self):
        finished = subprocess.Popen([sys.executable, "-c", "pass"])
        finished.wait()
        Path(self.home_file("pilot.pid")).write_text(f"{finished.pid}\n")
        result = await self.pilotctl("daemon", "stop", "--json")
        self.assertEqual(result.error, {"code": "not_running", "message": "daemon is not running (cleaned up stale state)",
                                        "status": "error"})
        self.assertFalse(os.path.exists(self.home_file("pilot.pid")))


class UnmanagedDaemonTests(PilotctlMixin, TestCase):
    def setUp(self):
        self.start_fake_daemon()

    async def test_a_daemon_without_pid_file(self):
        start = await self.pilotctl("daemon", "start", "--json")
        self.assertEqual(start.error["code"], "already_exists")
        stop = await self.pilotctl("daemon", "stop", "--json")
        self.assertEqual(stop.error["code"], "not_running")
        self.assertEqual(stop.error["hint"], f"find and kill the process manually: lsof -U | grep {self.socket_path}")
        status = await self.pilotctl("daemon", "status", "--json")
        self.assertEqual((status.data["running"], status.data["responsive"], status.data["pid"]), (True, True, 0))
        self.assertEqual(json.loads(status.stdout)["status"], "ok")
