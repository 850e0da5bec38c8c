"""The X-Pilot-Signature: what docs/webhooks.md tells receivers to compute, in Python and in shell."""

import os
import shutil
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.webhooks.signing import signed_headers, verify

SECRET = "5f" * 32
BODY = b'{"event":"conn.fin","event_id":1}'


def shell_signature(directory, secret, timestamp, body):
    """The shell recipe of docs/webhooks.md, run as written there."""
    recipe = ('printf \'%s.\' "$TS" | cat - body.json | openssl dgst -sha256 -hmac "$SECRET" -r '
              "| cut -d' ' -f1")
    return subprocess.run(["sh", "-c", f'printf "%s" "$BODY" > body.json; {recipe}'], capture_output=True,
                          check=True, env={"TS": str(timestamp), "SECRET": secret, "BODY": body.decode(),
                                           "PATH": "/usr/bin:/bin"}, cwd=directory).stdout.decode().strip()


class SigningTests(SynchronousTestCase):
    def mktemp_dir(self):
        path = self.mktemp()
        os.makedirs(path)
        return path

    def test_fresh_signed_requests_verify(self):
        headers = signed_headers(SECRET, 1_765_000_000, BODY)
        self.assertTrue(headers["X-Pilot-Signature"].startswith("sha256="))
        self.assertTrue(verify(SECRET, headers["X-Pilot-Timestamp"], headers["X-Pilot-Signature"], BODY,
                               now=1_765_000_100))

    def test_tampering_a_wrong_secret_or_a_stale_timestamp_fail(self):
        headers = signed_headers(SECRET, 1_765_000_000, BODY)
        stamp, mac = headers["X-Pilot-Timestamp"], headers["X-Pilot-Signature"]
        self.assertFalse(verify(SECRET, stamp, mac, BODY + b" ", now=1_765_000_000))
        self.assertFalse(verify("other", stamp, mac, BODY, now=1_765_000_000))
        self.assertFalse(verify(SECRET, stamp, mac, BODY, now=1_765_000_000 + 301))
        self.assertFalse(verify(SECRET, "1765000001", mac, BODY, now=1_765_000_000))
        self.assertFalse(verify(SECRET, "-1", mac, BODY, now=0))

    def test_the_shell_recipe_computes_the_same_mac(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed")
        headers = signed_headers(SECRET, 1_765_000_000, BODY)
        self.assertEqual("sha256=" + shell_signature(self.mktemp_dir(), SECRET, 1_765_000_000, BODY), headers["X-Pilot-Signature"])
