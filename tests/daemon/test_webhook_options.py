"""``--webhook`` and ``--webhook-allow-private`` (and their config.json keys) as the daemon parses them."""

import json
import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import test_tap


class WebhookOptionTests(SynchronousTestCase):
    setUp = test_tap.OptionsTests.setUp
    parse = test_tap.OptionsTests.parse

    def test_a_public_url_is_taken_and_forbidden_ones_refused(self):
        self.assertEqual(self.parse("--webhook", "https://hooks.example.com/p").webhook, "https://hooks.example.com/p")
        self.assertEqual(self.parse().webhook, "")
        for url in ("http://169.254.169.254/", "ftp://hooks.example.com/", "http://127.0.0.1:8080/"):
            with self.assertRaises(usage.UsageError) as caught:
                self.parse("--webhook", url)
            self.assertIn("--webhook", str(caught.exception))

    def test_private_targets_with_the_option_from_flags_or_config(self):
        config = self.parse("--webhook", "http://127.0.0.1:8080/", "--webhook-allow-private")
        self.assertTrue(config.webhook_allow_private)
        with open(os.path.join(self.home, "config.json"), "w") as handle:
            json.dump({"webhook": "http://10.0.0.5/hook", "webhook_allow_private": True}, handle)
        config = self.parse()
        self.assertEqual((config.webhook, config.webhook_allow_private), ("http://10.0.0.5/hook", True))
