"""The README's quickstart, followed exactly as written, on a copy of this checkout.

``tools/start-local-network`` runs in a fresh copy (so it makes its own ``.venv``
and installs into it), with ``HOME`` a temporary directory (so ``~/.pilot`` and
``~/.pilot-local`` are this test's) and ``PILOT_LOCAL_PORTS="0 0 0"`` (so every
port is a free one; the only change from what a user runs).  What the tool
prints to try next must be the README's list, line for line; then the README's
lines run in one shell, in order, as a user would paste them.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.processes import ProcessOutput

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = shutil.ignore_patterns(".venv", ".git", "_trial_temp*", "__pycache__", "*.egg-info", "build",
                                  "dist", ".hypothesis", "dropin.cache", ".coverage*")
MARK = "@@@"


async def _run(test, command, env, path, timeout):
    """``bash -c command`` in ``path``: its exit code and output (stdout and stderr together)."""
    output = ProcessOutput()
    process = reactor.spawnProcess(output, "/bin/bash", ["/bin/bash", "-c", command], env=env, path=path)
    killer = reactor.callLater(timeout, process.signalProcess, "KILL")
    code = getattr(await output.ended, "exitCode", None)
    text = output.output.decode("utf-8", "replace")
    if killer.active():
        killer.cancel()
    else:
        test.fail(f"{command!r} did not finish within {timeout:g}s:\n{text[-4000:]}")
    return code, text


def readme_quickstart():
    """The README's two set-up commands and its "try next" lines (the Start section's code blocks)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Start"):text.index("\n## ", text.index("## Start") + 1)]
    setup, try_next = re.findall(r"```sh\n(.*?)```", section, re.S)[:2]
    return setup.splitlines(), try_next.splitlines()


def _user_environment(home):
    """What a user's shell would have: no pilot settings, no active virtual environment."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PILOT_") and name not in ("PYTHON", "VIRTUAL_ENV", "PYTHONPATH")}
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["HOME"] = home
    env["PILOT_LOCAL_PORTS"] = "0 0 0"
    return env


def _kill_leftovers(home):
    """Whatever ``stop`` left running (a failed test must not leave processes behind)."""
    for pid_file in [*Path(home).glob(".pilot*/**/*.pid"), *Path(home).glob(".pilot/*.pid")]:
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


class QuickstartTests(TestCase):
    timeout = 600

    def setUp(self):
        base = shutil.which("python3", path=_user_environment("")["PATH"])
        if base is None:
            raise SkipTest("no python3 on PATH to make the quickstart's virtual environment with")
        if os.getuid() != 0 and subprocess.run([base, "-c", "import ensurepip, venv"]).returncode:
            raise SkipTest(f"{base} cannot make virtual environments (apt-get install python3-venv)")

    async def test_the_readme_quickstart_works_as_written(self):
        setup, try_next = readme_quickstart()
        self.assertEqual(len(setup), 2)
        start_command = setup[0].split("#")[0].strip()
        self.assertEqual(start_command, "tools/start-local-network")

        scratch = tempfile.mkdtemp(prefix="pilot-quickstart-")
        self.addCleanup(shutil.rmtree, scratch, True)
        checkout = os.path.join(scratch, "pilotnet")
        shutil.copytree(ROOT, checkout, ignore=LEFT_OUT)
        home = os.path.join(scratch, "home")
        os.makedirs(home)
        env = _user_environment(home)
        self.addCleanup(_kill_leftovers, home)
        self.addCleanup(lambda: ensureDeferred(
            _run(self, "tools/start-local-network stop", env, checkout, 60)))

        code, printed = await _run(self, start_command, env, checkout, 400)
        self.assertEqual(code, 0, printed)
        self.assertTrue(os.path.exists(os.path.join(checkout, ".venv", "bin", "pilotctl")), printed)
        listing = printed[printed.index("Try:"):printed.index("\nLogs:")]
        shown = [line.strip() for line in listing.splitlines() if line.startswith("  ")]
        self.assertEqual(shown, [line.strip() for line in try_next], printed)

        script = "\n".join(f"echo '{MARK} {n}'\n{line}\necho \"{MARK} rc $?\""
                           for n, line in enumerate(try_next))
        code, output = await _run(self, script + f"\nwait\necho '{MARK} end'", env, checkout, 300)
        self.assertEqual(code, 0, output)
        steps = self._steps(output, len(try_next))
        for n, line in enumerate(try_next):
            self.assertEqual(steps[n][1], 0, f"{line}\n{output}")
        # Every line succeeded (above); what each must show, worded loosely enough to
        # survive changes of pilotctl's phrasing.
        expected = {
            "pilotctl info": "alpha",
            "pilotctl ping beta": "0:0000.0000.0002",
            "pilotctl peers": "0:0000.0000.0002",
            "pilotctl pending": "quickstart",
            "pilotctl ping 3": "0:0000.0000.0003",
            "pilotctl task queue": "summarise them again",
        }
        for n, line in enumerate(try_next):
            for command, wanted in expected.items():
                if command in line:
                    self.assertIn(wanted, steps[n][0], f"{line}\n{output}")
        peers_step = next(n for n, line in enumerate(try_next) if line.startswith("pilotctl peers"))
        self.assertRegex(steps[peers_step][0], r"(?m)^2 .*0:0000\.0000\.0002 .* \d+s ago\s*$")
        trust_step = next(n for n, line in enumerate(try_next) if line.startswith("pilotctl trust"))
        self.assertRegex(steps[trust_step][0], r"(?m)^3\s+yes\s")
        submits = [steps[n][0] for n, line in enumerate(try_next) if "task submit" in line]
        self.assertEqual(len(submits), 2)
        for submitted in submits:
            self.assertIn("0:0000.0000.0003", submitted)
            self.assertNotIn("refused", submitted)
        # The background subscriber on gamma got alpha's event (its output lands anywhere).
        self.assertIn("[alerts.disk] full", output)

    def _steps(self, output, count):
        """Each line's ``(output, exit code)``, from the markers around it."""
        found = re.findall(rf"{MARK} (\d+)\n(.*?){MARK} rc (\d+)\n", output, re.S)
        steps = {int(n): (text, int(code)) for n, text, code in found}
        self.assertEqual(sorted(steps), list(range(count)), output)
        return steps
