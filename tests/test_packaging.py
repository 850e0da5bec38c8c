"""Packaging: every package is listed, and a wheel carries what an installed pilotnet needs.

setup.cfg lists packages explicitly (automatic discovery drops the twistd
plugins from wheels), so a new sub-package that is not listed would work from
a checkout and vanish from an install.  These tests catch that.
"""

import configparser
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from twisted.trial.unittest import SkipTest, TestCase

ROOT = Path(__file__).resolve().parent.parent


def listed_packages():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def source_packages():
    found = set()
    for init in (ROOT / "pilotnet").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    return found


class PackageListTests(TestCase):
    def test_every_package_is_listed(self):
        missing = source_packages() - listed_packages()
        self.assertEqual(missing, set(), f"add {sorted(missing)} to packages in setup.cfg")

    def test_plugin_directory_has_no_init(self):
        self.assertFalse((ROOT / "twisted" / "__init__.py").exists())
        self.assertFalse((ROOT / "twisted" / "plugins" / "__init__.py").exists())


class WheelTests(TestCase):
    timeout = 300

    def test_wheel_installs_the_plugins_and_nothing_of_the_tests(self):
        if not (ROOT / "setup.cfg").exists():
            raise SkipTest("not running from a checkout")
        with tempfile.TemporaryDirectory() as directory:
            build = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", directory, str(ROOT)],
                capture_output=True, text=True)
            self.assertEqual(build.returncode, 0, build.stderr[-3000:])
            [wheel] = Path(directory).glob("pilotnet-*.whl")
            with zipfile.ZipFile(wheel) as archive:
                names = archive.namelist()
                archive.extractall(os.path.join(directory, "site"))
            self.assertIn("twisted/plugins/pilotnet_daemon.py", names)
            self.assertIn("twisted/plugins/pilotnet_servers.py", names)
            self.assertIn("twisted/plugins/pilotnet_gateway.py", names)
            self.assertIn("twisted/plugins/pilotnet_endpoints.py", names)
            self.assertFalse([n for n in names if n.startswith("tests/")])
            self.assertFalse([n for n in names if n.endswith("dropin.cache")])
            packaged = {os.path.dirname(n).replace("/", ".") for n in names if n.endswith("__init__.py")}
            self.assertEqual(packaged, source_packages())
            # From the unpacked wheel alone, twistd finds every pilotnet command.
            probe = (
                "import sys; sys.path.insert(0, sys.argv[1]);"
                "from twisted.plugin import getPlugins; from twisted.application.service import IServiceMaker;"
                "import twisted.plugins;"
                "print(sorted(p.tapname for p in getPlugins(IServiceMaker) if p.tapname.startswith('pilot-')))"
            )
            found = subprocess.run([sys.executable, "-c", probe, os.path.join(directory, "site")],
                                   capture_output=True, text=True)
            self.assertEqual(found.returncode, 0, found.stderr[-3000:])
            self.assertEqual(found.stdout.strip(),
                             "['pilot-beacon', 'pilot-daemon', 'pilot-gateway', 'pilot-registry', 'pilot-rendezvous']")
            # ...and every Twisted program finds the pilot: endpoint strings there.
            probe = (
                "import sys; sys.path.insert(0, sys.argv[1]);"
                "from twisted.internet import reactor; from twisted.internet.endpoints import "
                "serverFromString, clientFromString;"
                "print(type(serverFromString(reactor, 'pilot:80')).__name__,"
                " type(clientFromString(reactor, 'pilot:agent-alpha:80')).__name__)"
            )
            found = subprocess.run([sys.executable, "-c", probe, os.path.join(directory, "site")],
                                   capture_output=True, text=True, cwd=directory)
            self.assertEqual(found.returncode, 0, found.stderr[-3000:])
            self.assertEqual(found.stdout.strip(), "PilotServerEndpoint PilotClientEndpoint")
            # The dashboard's templates and static files travel inside the wheel...
            self.assertIn("pilotnet/dashboard/templates/index.html", names)
            self.assertIn("pilotnet/dashboard/templates/static/dashboard.js", names)
            # ...and a page renders from the unpacked wheel alone, away from the checkout.
            rendered = subprocess.run([sys.executable, "-c", RENDER_FROM_WHEEL, os.path.join(directory, "site")],
                                      capture_output=True, text=True, cwd=directory)
            self.assertEqual(rendered.returncode, 0, rendered.stderr[-3000:])
            self.assertEqual(rendered.stdout.splitlines(), [os.path.join(directory, "site", "pilotnet", "dashboard", "templates"),
                                                            "200 True"])


# Serves "/" of a dashboard over an empty registry with the pilotnet found first on sys.path.
RENDER_FROM_WHEEL = """
import sys
sys.path.insert(0, sys.argv[1])
from treq.testing import StubTreq
from twisted.internet.task import Clock
from pilotnet.dashboard import rendering
from pilotnet.dashboard.service import Dashboard
from pilotnet.registry.handlers import Registry
from pilotnet.registry.server import RegistryServer
print(rendering.template_directory())
clock = Clock()
client = StubTreq(Dashboard(RegistryServer(Registry(), clock), clock).site().resource)
response = client.get("http://polo.test/")
client.flush()
response = response.result
body = response.content()
client.flush()
print(response.code, b"Node directory" in body.result)
"""


class InstalledCommandsTests(TestCase):
    def test_twistd_finds_every_pilot_command_outside_the_checkout(self):
        """The editable install must not hide twisted/plugins (users start daemons from anywhere)."""
        probe = (
            "from twisted.plugin import getPlugins; from twisted.application.service import IServiceMaker;"
            "print(sorted(p.tapname for p in getPlugins(IServiceMaker) if p.tapname.startswith('pilot-')))"
        )
        with tempfile.TemporaryDirectory() as elsewhere:
            found = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, capture_output=True,
                                   text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        self.assertEqual(found.returncode, 0, found.stderr[-3000:])
        self.assertEqual(found.stdout.strip(), "['pilot-beacon', 'pilot-daemon', 'pilot-gateway', 'pilot-registry', 'pilot-rendezvous']",
                         "reinstall with: pip install --config-settings editable_mode=compat -e .")
