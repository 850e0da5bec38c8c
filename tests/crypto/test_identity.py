"""Ed25519 identities: Go-compatible files, atomic 0600 writes, refusal of bad files."""

import base64
import json
import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.crypto.identity import Identity, IdentityError, verify, verify_b64
from tests.vectors import vectors


class SignatureVectorTests(SynchronousTestCase):
    def test_registry_signatures(self):
        checked = 0
        for v in vectors("registry", prefix="registry.sig"):
            identity = Identity.from_seed(bytes.fromhex(v["inputs"]["ed25519_seed_hex"]))
            self.assertEqual(identity.public_key_b64, v["inputs"]["ed25519_public_b64"])
            challenge = v["inputs"]["challenge"]
            self.assertEqual(identity.sign_b64(challenge), v["output"]["signature_b64"], v["id"])
            self.assertTrue(verify_b64(identity.public_key_b64, challenge, v["output"]["signature_b64"]))
            self.assertFalse(verify_b64(identity.public_key_b64, challenge + "x", v["output"]["signature_b64"]))
            checked += 1
        self.assertEqual(checked, 6)

    def test_verify_rejects_malformed_inputs(self):
        identity = Identity.generate()
        signature = identity.sign(b"m")
        self.assertTrue(verify(identity.public_key, b"m", signature))
        self.assertFalse(verify(identity.public_key[:31], b"m", signature))
        self.assertFalse(verify(identity.public_key, b"m", signature[:63]))
        self.assertFalse(verify_b64("not base64!", "m", "AAAA"))
        self.assertFalse(verify_b64(identity.public_key_b64, "m", "QUJD"))


class IdentityFileTests(SynchronousTestCase):
    def setUp(self):
        self.directory = self.mktemp()
        self.path = os.path.join(self.directory, "identity.json")

    def test_go_layout_and_mode(self):
        identity = Identity.from_seed(bytes([5]) * 32)
        identity.save(self.path)
        document = json.loads(open(self.path).read())
        self.assertEqual(set(document), {"private_key", "public_key"})
        private = base64.b64decode(document["private_key"])
        self.assertEqual(private, bytes([5]) * 32 + identity.public_key)
        self.assertEqual(document["public_key"], "bnoc3Smwt4/ROvTFWY/v9O8qlxZuPKby5Pv8zYBQW/E=")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(Identity.load(self.path).public_key, identity.public_key)

    def test_save_replaces_atomically_and_leaves_no_temporaries(self):
        Identity.generate().save(self.path)
        second = Identity.generate()
        second.save(self.path)
        self.assertEqual(os.listdir(self.directory), ["identity.json"])
        self.assertEqual(Identity.load(self.path).public_key, second.public_key)

    def test_load_or_create_keeps_the_identity(self):
        first = Identity.load_or_create(self.path)
        self.assertEqual(Identity.load_or_create(self.path).public_key, first.public_key)

    def assertRefused(self, content, fragment):
        os.makedirs(self.directory, exist_ok=True)
        with open(self.path, "wb") as handle:
            handle.write(content)
        with self.assertRaises(IdentityError) as caught:
            Identity.load(self.path)
        self.assertIn(fragment, str(caught.exception))
        return caught.exception

    def test_refuses_bad_files(self):
        good = Identity.generate().to_json()
        other = Identity.generate().to_json()
        self.assertRefused(b"\x00\xff garbage", "not a JSON identity file")
        self.assertRefused(b"[1, 2]", "expected a JSON object")
        self.assertRefused(json.dumps({"public_key": good["public_key"]}).encode(), "'private_key' is missing")
        self.assertRefused(json.dumps(dict(good, private_key="!!")).encode(), "not valid base64")
        self.assertRefused(json.dumps(dict(good, public_key="QUJD")).encode(), "is 3 bytes, expected 32")
        mixed = self.assertRefused(
            json.dumps(dict(good, public_key=other["public_key"])).encode(), "does not belong"
        )
        self.assertIsNotNone(mixed.hint)
        self.assertEqual(mixed.code, "invalid_argument")

    def test_missing_file_is_not_found(self):
        with self.assertRaises(IdentityError) as caught:
            Identity.load(self.path)
        self.assertEqual(caught.exception.code, "not_found")

    def test_bad_seed_size(self):
        self.assertRaises(IdentityError, Identity.from_seed, b"short")
