"""mypy over the package, as configured in setup.cfg: strict for the sans-IO cores, default elsewhere.

Running it as a test puts the type check in every ``tools/run-tests`` and CI
run without a separate step.  It runs mypy in-process through its API, with
a fresh cache in the trial temp directory (about 15 s on a busy two-core
machine).
"""

from pathlib import Path

from mypy import api
from twisted.trial.unittest import SynchronousTestCase

import pilotnet

ROOT = Path(pilotnet.__file__).resolve().parent.parent
CONFIG = ROOT / "setup.cfg"


class TypeCheckTests(SynchronousTestCase):
    def setUp(self):
        if not CONFIG.exists():
            self.skipTest(f"no setup.cfg beside the pilotnet package in {ROOT} (not a checkout)")

    def test_mypy_passes(self):
        # The package path is given explicitly (setup.cfg's `files` is relative to the
        # checkout, and trial runs in its temp directory).
        stdout, stderr, status = api.run([
            "--config-file", str(CONFIG),
            "--cache-dir", str(Path(self.mktemp()).resolve()),
            "--no-error-summary",
            str(ROOT / "pilotnet"),
        ])
        self.assertEqual(status, 0, f"mypy found type errors:\n{stdout}{stderr}")

    def test_the_cores_are_checked_strictly(self):
        # An unannotated function in a strict room must fail, or the strict section
        # of setup.cfg has stopped applying (a renamed package, a typo in a pattern).
        probe = Path(self.mktemp())
        package = probe / "pilotnet" / "wire"
        package.mkdir(parents=True)
        (probe / "pilotnet" / "__init__.py").write_text("")
        (package / "__init__.py").write_text("")
        (package / "probe.py").write_text("def untyped(value):\n    return value\n")
        stdout, stderr, status = api.run([
            "--config-file", str(CONFIG),
            "--cache-dir", str(Path(self.mktemp()).resolve()),
            str(package / "probe.py"),
        ])
        self.assertEqual(status, 1, stdout + stderr)
        self.assertIn("[no-untyped-def]", stdout)
