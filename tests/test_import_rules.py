"""DESIGN.md's import rule: the sans-IO cores touch no sockets, no reactor, no clock.

``pilotnet.wire``, ``pilotnet.crypto`` and ``pilotnet.transport`` take bytes
and ``now`` and return bytes, events and deadlines; everything with I/O is a
Twisted shell around them.  Checked on the source, so an import hidden inside
a function is caught too.
"""

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import pilotnet

SANS_IO_PACKAGES = ("wire", "crypto", "transport")
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
        self.assertGreater(checked, 5)

    def test_the_checker_catches_violations(self):
        for source in ("import socket", "from twisted.internet import reactor", "import time",
                       "def f():\n    from twisted.internet.task import Clock", "import twisted.internet.reactor"):
            self.assertTrue(any(is_forbidden(m) for m in imported_modules(source)), source)
        for source in ("import struct", "from twisted.python import failure", "import timeit_like"):
            self.assertFalse(any(is_forbidden(m) for m in imported_modules(source)), source)
