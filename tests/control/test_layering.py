"""pilotnet.control is a low room: it imports nothing above the wire codecs, and its client part no Twisted.

The daemon, the SDK and pilotctl all import it; nothing it imports may import
them back (DESIGN.md: cli -> control -> wire).
"""

import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import pilotnet
from tests.test_import_rules import imported_modules

ALLOWED = ("pilotnet.control", "pilotnet.errors", "pilotnet.wire")
TWISTED_FREE = ("__init__.py", "schema.py", "client.py")


class ControlLayerTests(SynchronousTestCase):
    def test_control_imports_nothing_above_wire(self):
        root = Path(pilotnet.__file__).parent / "control"
        for path in sorted(root.glob("*.py")):
            ours = {m for m in imported_modules(path.read_text()) if m.startswith("pilotnet")}
            above = sorted(m for m in ours if not m.startswith(ALLOWED))
            self.assertEqual(above, [], f"{path.name} imports {above}")
            if path.name in TWISTED_FREE:
                twisted = sorted(m for m in imported_modules(path.read_text()) if m.startswith("twisted"))
                self.assertEqual(twisted, [], f"{path.name} imports {twisted}")

    def test_the_blocking_client_loads_without_twisted(self):
        code = ("import sys\n"
                "import pilotnet.control.client, pilotnet.cli.runner, pilotnet.cli.commands.node\n"
                "import pilotnet.cli.commands.registry, pilotnet.cli.commands.trust, pilotnet.cli.commands.lifecycle\n"
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        self.assertEqual(done.stdout.strip(), "[]")
