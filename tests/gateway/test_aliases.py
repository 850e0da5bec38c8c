"""What needs root, said before anything is tried; a loopback subnet needs no aliases."""

import os

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import INVALID_ARGUMENT, PilotError
from pilotnet.gateway import aliases
from pilotnet.gateway.mappings import parse_subnet


class RootTests(SynchronousTestCase):
    def setUp(self):
        self.patch(os, "geteuid", lambda: 1000)  # an ordinary user
        self.patch(aliases.shutil, "which", lambda name: f"/usr/sbin/{name}")
        self.patch(aliases.sys, "platform", "linux")

    def refusal(self, subnet, ports):
        with self.assertRaises(PilotError) as raised:
            aliases.require_root("pilotctl gateway start", parse_subnet(subnet), ports)
        self.assertEqual(raised.exception.code, INVALID_ARGUMENT)
        return raised.exception

    def test_aliases_need_root_and_the_error_says_why(self):
        error = self.refusal("10.4.0.0/16", [8080])
        self.assertEqual(error.message, "pilotctl gateway start needs root: it adds an address per mapping to the "
                                        "loopback interface (ip addr add <ip>/32 dev lo)")
        self.assertIn("sudo", error.hint)

    def test_low_ports_need_root_even_on_loopback(self):
        error = self.refusal("127.4.0.0/16", [8080, 80])
        self.assertEqual(error.message, "pilotctl gateway start needs root: it listens on port 80, below 1024")

    def test_a_loopback_subnet_with_high_ports_needs_nothing(self):
        aliases.require_root("pilot-gateway", parse_subnet("127.4.0.0/16"), [8080, 8443])
        self.assertIsInstance(aliases.aliases_for(parse_subnet("127.4.0.0/16")), aliases.NoAliases)
        self.assertIsInstance(aliases.aliases_for(parse_subnet("10.4.0.0/16")), aliases.LoopbackAliases)

    def test_root_may_do_everything(self):
        self.patch(os, "geteuid", lambda: 0)
        aliases.require_root("pilot-gateway", parse_subnet("10.4.0.0/16"), [80])
