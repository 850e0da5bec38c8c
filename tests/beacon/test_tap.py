"""``twistd pilot-beacon`` options: the peer secret file and the per-IP node limit."""

import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pilotnet import rendezvous_tap
from pilotnet.beacon import tap
from pilotnet.beacon.peering import PeerAuth


class BeaconOptionsTests(SynchronousTestCase):
    def secret_file(self, mode, secret=b"a secret all our beacons share\n"):
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(secret)
        os.chmod(path, mode)
        return path

    def test_a_private_secret_file_authenticates_peers(self):
        options = tap.Options()
        options.parseOptions(["--peer-secret-file", self.secret_file(0o600), "--max-nodes-per-ip", "8"])
        self.assertIsInstance(options["peer-auth"], PeerAuth)
        self.assertEqual(options["max-nodes-per-ip"], 8)

    def test_the_rendezvous_takes_the_same_options(self):
        options = rendezvous_tap.Options()
        options.parseOptions(["--peer-secret-file", self.secret_file(0o600)])
        self.assertIsInstance(options["peer-auth"], PeerAuth)

    def test_a_secret_file_others_can_read_is_refused(self):
        path = self.secret_file(0o644)
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--peer-secret-file", path])
        self.assertIn("chmod 600", str(error))

    def test_a_short_secret_is_refused(self):
        path = self.secret_file(0o600, b"short")
        self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--peer-secret-file", path])

    def test_without_a_secret_there_is_no_peer_authentication(self):
        options = tap.Options()
        options.parseOptions([])
        self.assertIsNone(options["peer-auth"])

    def test_answering_short_discovers_is_off_unless_asked_for(self):
        for command, flags, expected in ((tap.Options, [], False),
                                         (rendezvous_tap.Options, ["--answer-short-discover"], True)):
            options = command()
            options.parseOptions(flags)
            service = tap.make_beacon_service(None, options)
            self.assertIs(service.core.answer_short_discovers, expected)
