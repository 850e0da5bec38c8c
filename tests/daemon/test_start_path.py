"""What ``twistd pilot-daemon`` loads before it is ready, checked in a fresh interpreter.

The start of a daemon is measured against the bare ``import twisted.internet.reactor``
(docs/performance.md): a module that creeps back onto the start path costs every start,
so these tests fail when one does.  Nothing here is timed.
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

import pilotnet

ROOT = str(Path(pilotnet.__file__).resolve().parent.parent)

#: Imported only when a feature needs them (a webhook delivered, a policy's regular expression
#: compiled) or never by a daemon: each one is milliseconds of a start of about 0.25 s.
COSTLY_MODULES = ("re2", "treq", "twisted.web", "klein", "jinja2", "prometheus_client", "psycopg",
                  "twisted.names", "twisted.conch", "pilotnet.dashboard", "pilotnet.gateway",
                  "pilotnet.webhooks.http", "pilotnet.registry.store")

# Builds the daemon's service as twistd does (options, then makeService) without starting it,
# then reports the costly modules loaded and the garbage collector's state.
BUILD_THE_SERVICE = """
import gc, json, sys
from pilotnet.daemon.tap import Options, makeService
options = Options()
options.parseOptions(["--home", sys.argv[1]])
makeService(options)
costly = json.loads(sys.argv[2])
print(json.dumps({
    "costly": sorted(name for name in sys.modules
                     if any(name == prefix or name.startswith(prefix + ".") for prefix in costly)),
    "collector_on": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


class StartPathTests(TestCase):
    timeout = 60  # trial fails a test still running after this many seconds

    async def build_the_service(self):
        home = tempfile.mkdtemp(prefix="pilot-test-")
        self.addCleanup(shutil.rmtree, home, True)
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-c", BUILD_THE_SERVICE, home, json.dumps(COSTLY_MODULES)],
            env={"PYTHONPATH": ROOT, "PATH": os.environ.get("PATH", "")})
        self.assertEqual(code, 0, err)
        return json.loads(out)

    async def test_the_start_imports_nothing_costly(self):
        self.assertEqual((await self.build_the_service())["costly"], [])

    async def test_the_collector_is_back_on_with_the_start_frozen(self):
        """makeService pauses the collector while it builds the node, then freezes what it loaded."""
        built = await self.build_the_service()
        self.assertTrue(built["collector_on"])
        self.assertGreater(built["frozen"], 0)
