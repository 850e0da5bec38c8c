"""The registry vectors captured from the Go client: signatures and request bytes."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import sign_request, signature_valid
from pilotnet.registry.framing import decode_body, encode_message
from tests.vectors import vectors

_CHALLENGE_TYPES = {"heartbeat": "heartbeat", "resolve": "resolve",
                    "handshake": "request_handshake", "respond": "respond_handshake",
                    "poll_handshakes": "poll_handshakes", "deregister": "deregister"}


class SignatureVectorTests(SynchronousTestCase):
    def test_signatures(self):
        cases = vectors("registry", prefix="registry.sig.")
        self.assertGreaterEqual(len(cases), 6)
        for case in cases:
            inputs = case["inputs"]
            identity = Identity.from_seed(bytes.fromhex(inputs["ed25519_seed_hex"]))
            self.assertEqual(identity.public_key_b64, inputs["ed25519_public_b64"])
            self.assertEqual(identity.sign_b64(inputs["challenge"]),
                             case["output"]["signature_b64"], case["id"])

    def test_registry_accepts_the_go_signatures(self):
        """Our verifier rebuilds each challenge from request fields and accepts Go's signature."""
        for case in vectors("registry", prefix="registry.sig."):
            challenge = case["inputs"]["challenge"]
            name, *numbers = challenge.split(":")
            kind = _CHALLENGE_TYPES[name]
            ids = [int(n) for n in numbers]
            fields = {
                "heartbeat": lambda: {"node_id": ids[0]},
                "resolve": lambda: {"requester_id": ids[0], "node_id": ids[1]},
                "request_handshake": lambda: {"from_node_id": ids[0], "to_node_id": ids[1]},
                "respond_handshake": lambda: {"node_id": ids[0], "peer_id": ids[1]},
                "poll_handshakes": lambda: {"node_id": ids[0]},
                "deregister": lambda: {"node_id": ids[0]},
            }[kind]()
            self.assertTrue(signature_valid(case["inputs"]["ed25519_public_b64"], kind, fields,
                                            case["output"]["signature_b64"]), case["id"])


class RequestVectorTests(SynchronousTestCase):
    def _request(self, case):
        inputs = case["inputs"]
        identity = Identity.from_seed(bytes.fromhex(inputs["ed25519_seed_hex"]))
        kind = case["id"].rsplit(".", 1)[1]
        skip = {"ed25519_seed_hex", "challenge", "public_key_b64"}
        request = {"type": kind, **{k: v for k, v in inputs.items() if k not in skip}}
        if kind == "register":
            request["public_key"] = identity.public_key_b64
            return request
        return sign_request(identity, request)

    def test_requests_byte_identical(self):
        cases = vectors("registry", prefix="registry.request.")
        self.assertGreaterEqual(len(cases), 4)
        for case in cases:
            encoded = encode_message(self._request(case))
            self.assertEqual(encoded.hex(), case["output_hex"], case["id"])
            self.assertEqual(decode_body(encoded[4:]), decode_body(case["output"]["json"].encode()))
