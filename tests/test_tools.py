"""tools/_python-env.sh: the clear stops before anything is installed (old Python, no venv module).

A stand-in ``python`` answers the script's probes as an old Python or a Debian
Python without ``python3.X-venv`` would; stand-in ``id`` and ``apt-get`` play a
normal user or root.  Nothing is installed.
"""

import os
import stat
import subprocess
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/bin/bash
case "$2" in
  *ensurepip*) exit 1 ;;
  *'print("%d.%d"'*) echo "$FAKE_VERSION" ;;
  *'sys.version_info[:2] <'*) [[ $FAKE_VERSION == 3.11 ]] ;;
  *'sys.prefix == sys.base_prefix'*) exit 1 ;;
esac
"""


class PythonEnvironmentTests(SynchronousTestCase):
    def _attempt(self, version, uid):
        bin_directory = Path(self.mktemp()).absolute()
        bin_directory.mkdir()
        for name, text in (("python", FAKE_PYTHON), ("id", f"#!/bin/bash\necho {uid}\n"),
                           ("apt-get", f'#!/bin/bash\necho "$@" >> {bin_directory}/apt.log\n')):
            path = bin_directory / name
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        env = dict(os.environ, PATH=f"{bin_directory}{os.pathsep}{os.environ['PATH']}",
                   PYTHON=str(bin_directory / "python"), FAKE_VERSION=version,
                   PILOT_VENV=str(bin_directory / "venv"))
        result = subprocess.run(["bash", "-c", 'source tools/_python-env.sh && use_project_python ""'],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        apt_log = bin_directory / "apt.log"
        return result, apt_log.read_text() if apt_log.exists() else ""

    def test_an_old_python_is_refused_with_what_to_do(self):
        result, apt = self._attempt("3.9", 1000)
        self.assertEqual(result.returncode, 1)
        self.assertIn("pilotnet needs Python 3.11 or newer", result.stderr)
        self.assertIn("is 3.9", result.stderr)
        self.assertIn("PYTHON=python3.11", result.stderr)
        self.assertEqual(apt, "")

    def test_without_the_venv_module_a_user_is_told_which_package_to_install(self):
        result, apt = self._attempt("3.11", 1000)
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot make a virtual environment", result.stderr)
        self.assertIn("apt-get install python3.11-venv", result.stderr)
        self.assertEqual(apt, "")

    def test_without_the_venv_module_root_installs_it_with_apt(self):
        result, apt = self._attempt("3.11", 0)
        self.assertIn("install -y -qq python3.11-venv", apt)
        # The stand-in still has no ensurepip afterwards: the tool stops rather than go on.
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot make a virtual environment", result.stderr)
