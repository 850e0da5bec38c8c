"""``twistd pilot-daemon`` options: flags over config.json over defaults, and refusals."""

import json
import os
import shutil
import tempfile

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.tap import Options


class OptionsTests(SynchronousTestCase):
    def setUp(self):
        # Short, so the default socket path inside it fits a Unix socket address.
        self.home = tempfile.mkdtemp(prefix="pilotnet-")
        self.addCleanup(shutil.rmtree, self.home, True)

    def parse(self, *args):
        options = Options()
        options.parseOptions(["--home", self.home, *args])
        return options.config

    def test_defaults(self):
        config = self.parse()
        self.assertEqual((config.registry, config.beacon, config.mss), ("127.0.0.1:9000", "127.0.0.1:9001", 1024))
        self.assertEqual(config.local_mss, 32768)
        self.assertEqual(self.parse("--local-mss", "0").local_mss, 0)
        self.assertTrue(config.encrypt and config.echo and config.dataexchange and config.eventstream)
        self.assertFalse(config.public)

    def test_registry_fingerprint_pins_tls(self):
        pin = "AB:" * 31 + "AB"
        self.assertEqual(self.parse("--registry-fingerprint", pin).registry_fingerprint, pin)
        self.assertEqual(self.parse().registry_fingerprint, "")
    def test_service_limits(self):
        config = self.parse()
        self.assertEqual((config.inflight_max_bytes, config.message_max_bytes, config.received_max_bytes,
                          config.received_max_files, config.inbox_max_bytes, config.inbox_max_messages,
                          config.task_queue_max), (32 << 20, 4 << 20, 256 << 20, 1000, 64 << 20, 1000, 100))
        config = self.parse("--received-max-files", "3", "--inbox-max-bytes", "1000", "--task-queue-max", "7")
        self.assertEqual((config.received_max_files, config.inbox_max_bytes, config.task_queue_max), (3, 1000, 7))
        self.assertRaises(usage.UsageError, self.parse, "--message-max-bytes", "lots")

    def test_switches(self):
        config = self.parse("--public", "--no-encrypt", "--no-echo", "--no-dataexchange", "--no-eventstream",
                            "--no-tasksubmit", "--trust-auto-approve")
        self.assertTrue(config.public and config.trust_auto_approve)
        self.assertFalse(config.encrypt or config.echo or config.dataexchange or config.eventstream
                         or config.tasksubmit)

    def test_flags_override_the_config_file(self):
        with open(os.path.join(self.home, "config.json"), "w") as handle:
            json.dump({"registry": "10.0.0.1:9000", "hostname": "from-file", "mss": 1400}, handle)
        config = self.parse("--hostname", "from-flag")
        self.assertEqual((config.registry, config.hostname, config.mss), ("10.0.0.1:9000", "from-flag", 1400))

    def test_refusals(self):
        for args in (("--mss", "10"), ("--mss", "70000"), ("--mss", "lots"), ("--local-mss", "70000"),
                     ("--local-mss", "-1"), ("--log-format", "xml"),
                     ("--keepalive", "-1"), ("--socket", "/" + "s" * 200),
                     ("--registry-fingerprint", "abc"), ("--registry-fingerprint", "g" * 64)):
            self.assertRaises(usage.UsageError, self.parse, *args)
