"""DESIGN.md's import rules, checked on the source (an import hidden inside a function counts too).

1. The sans-IO cores touch no sockets, no reactor, no clock: ``pilotnet.wire``,
   ``pilotnet.crypto``, ``pilotnet.transport`` and the sans-IO modules of the
   servers take bytes and ``now`` and return bytes, events and deadlines.
2. Rooms form layers: every import between two rooms points down, so no two
   rooms import each other (no cycle of any length) and nothing imports the
   programs at the top (the daemon, the CLI, the dashboard's composition).
"""

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import pilotnet

SANS_IO_PACKAGES = ("wire", "crypto", "transport", "policy")
SANS_IO_MODULES = ("beacon/core.py", "registry/handlers.py", "registry/directory.py", "registry/audit.py",
                   "registry/dispatch.py", "registry/nodes.py", "registry/trust.py",
                   "registry/networks.py", "registry/polo.py", "registry/beacons.py",
                   "webhooks/targets.py", "webhooks/signing.py")
FORBIDDEN = ("twisted.internet", "socket", "time", "asyncio", "select", "selectors", "threading")


def imported_modules(source):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def is_forbidden(module):
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


class ImportRuleTests(SynchronousTestCase):
    def test_sans_io_cores_import_no_io(self):
        root = Path(pilotnet.__file__).parent
        checked = 0
        for package in SANS_IO_PACKAGES:
            for path in sorted((root / package).rglob("*.py")):
                offending = sorted({m for m in imported_modules(path.read_text()) if is_forbidden(m)})
                self.assertEqual(offending, [], f"{path.relative_to(root.parent)} imports {offending}")
                checked += 1
        for module in SANS_IO_MODULES:
            offending = sorted({m for m in imported_modules((root / module).read_text())
                                if is_forbidden(m) and m != "twisted.internet.defer"})
            self.assertEqual(offending, [], f"pilotnet/{module} imports {offending}")
        self.assertGreater(checked, 5)

    def test_the_checker_catches_violations(self):
        for source in ("import socket", "from twisted.internet import reactor", "import time",
                       "def f():\n    from twisted.internet.task import Clock", "import twisted.internet.reactor"):
            self.assertTrue(any(is_forbidden(m) for m in imported_modules(source)), source)
        for source in ("import struct", "from twisted.python import failure", "import timeit_like"):
            self.assertFalse(any(is_forbidden(m) for m in imported_modules(source)), source)


# The layer of every room (a package, or a module at the top of pilotnet).  A room may import
# only rooms of a lower layer.  A new room gets its layer here, which is the moment to decide
# what it may depend on (docs/development.md draws the same picture).
LAYERS = {
    "errors": 0, "interfaces": 0,
    "wire": 1, "ratelimit": 1, "plugin_options": 1, "policy": 2,
    "crypto": 2, "transport": 2, "control": 2, "webhooks": 2,
    "registry": 3,
    "beacon": 4, "services": 4, "dashboard": 4, "driver": 4, "stream_transport": 4,
    "daemon": 5, "endpoints": 5,
    "gateway": 6,
    "cli": 7,
    "registry_tap": 8, "rendezvous_tap": 8,
}


def room_of(path, root):
    parts = path.relative_to(root).with_suffix("").parts
    return "pilotnet" if parts == ("__init__",) else parts[0]


def room_imports(root):
    """``{(importer, imported): first file that imports it}`` between different rooms.

    ``from pilotnet import __version__`` names the package itself, not a room.
    """
    rooms = {room_of(path, root) for path in root.rglob("*.py")}
    arrows = {}
    for path in sorted(root.rglob("*.py")):
        source = room_of(path, root)
        for module in imported_modules(path.read_text()):
            bits = module.split(".")
            if bits[0] == "pilotnet" and len(bits) > 1 and bits[1] in rooms and bits[1] != source:
                arrows.setdefault((source, bits[1]), str(path.relative_to(root.parent)))
    return arrows


def upward(arrows, layers):
    """The arrows that do not point to a lower layer (or involve a room with no layer)."""
    return sorted(f"{where}: {source} -> {target}" for (source, target), where in arrows.items()
                  if source != "pilotnet" and not layers.get(target, 99) < layers.get(source, -1))


class LayerTests(SynchronousTestCase):
    def test_every_room_has_a_layer(self):
        root = Path(pilotnet.__file__).parent
        rooms = {room_of(path, root) for path in root.rglob("*.py")} - {"pilotnet"}
        self.assertEqual(sorted(rooms - set(LAYERS)), [], "give these rooms a layer in LAYERS")

    def test_imports_point_down(self):
        root = Path(pilotnet.__file__).parent
        self.assertEqual(upward(room_imports(root), LAYERS), [])

    def test_the_checker_catches_a_cycle(self):
        arrows = {("services", "daemon"): "services/x.py", ("daemon", "services"): "daemon/y.py"}
        self.assertEqual(upward(arrows, LAYERS), ["services/x.py: services -> daemon"])
        self.assertEqual(upward({("wire", "newroom"): "wire/z.py"}, LAYERS),
                         ["wire/z.py: wire -> newroom"])
