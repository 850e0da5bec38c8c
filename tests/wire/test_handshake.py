"""Trust handshake messages (port 444) against the Go reference's vectors."""

import json

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.crypto.handshake import is_signed_by
from pilotnet.crypto.identity import Identity
from pilotnet.errors import DecodeError
from pilotnet.wire import handshake as hs
from tests.vectors import vectors

SETTINGS = settings(max_examples=100, deadline=None)
NODE_5 = Identity.from_seed(b"\x05" * 32)
NODE_6 = Identity.from_seed(b"\x06" * 32)
NOW = 1767225600


def valid_document(**changes):
    document = json.loads(hs.encode_message(hs.build_message(hs.REQUEST, NODE_5, 5, 6, NOW, "hello")))
    document.update(changes)
    return json.dumps(document).encode()


class VectorTests(SynchronousTestCase):
    def test_vectors(self):
        cases = vectors("handshake-444")
        self.assertEqual(len(cases), 2)
        kinds = {"request": hs.REQUEST, "accept": hs.ACCEPT}
        for case in cases:
            inputs = case["inputs"]
            identity = Identity.from_seed(bytes.fromhex(inputs["ed25519_seed_hex"]))
            kind = kinds[case["id"].split(".")[1].split("_")[0]]
            self.assertEqual(hs.challenge(inputs["from_node"], inputs["to_node"]),
                             inputs["signed_challenge"].encode())
            message = hs.build_message(kind, identity, inputs["from_node"], inputs["to_node"], inputs["timestamp"],
                                       justification=inputs.get("justification", ""))
            wire = bytes.fromhex(case["output_hex"])
            self.assertEqual(hs.encode_message(message), wire, case["id"])
            self.assertEqual(wire.decode(), case["output"]["json"])
            decoded = hs.decode_message(wire)
            self.assertEqual(decoded, message)
            self.assertTrue(is_signed_by(decoded, inputs["to_node"], decoded.public_key))
            self.assertFalse(is_signed_by(decoded, inputs["to_node"] + 1, decoded.public_key))


class CheckTests(SynchronousTestCase):
    def test_signature_is_checked_against_the_given_key(self):
        message = hs.decode_message(valid_document())
        self.assertTrue(is_signed_by(message, 6, NODE_5.public_key))
        self.assertFalse(is_signed_by(message, 6, NODE_6.public_key))
        self.assertFalse(is_signed_by(message._replace(signature=b""), 6, NODE_5.public_key))

    def test_unsigned_message_decodes(self):
        message = hs.decode_message(valid_document(public_key="", signature=""))
        self.assertEqual((message.public_key, message.signature), (b"", b""))

    def test_freshness_window(self):
        message = hs.build_message(hs.REVOKE, NODE_5, 5, 6, NOW)
        self.assertTrue(hs.is_fresh(message, NOW + hs.MAX_AGE))
        self.assertFalse(hs.is_fresh(message, NOW + hs.MAX_AGE + 1))
        self.assertTrue(hs.is_fresh(message, NOW - hs.MAX_FUTURE_SKEW))
        self.assertFalse(hs.is_fresh(message, NOW - hs.MAX_FUTURE_SKEW - 1))

    def test_malformed_messages_name_the_field(self):
        cases = {
            "type": valid_document(type="handshake_hello"),
            "node_id": valid_document(node_id=1 << 32),
            "public_key": valid_document(public_key="AAAA"),
            "signature": valid_document(signature="not base64!"),
            "timestamp": valid_document(timestamp="soon"),
            "reason": valid_document(reason=None),
            "justification": valid_document(justification=7),
        }
        for field, data in cases.items():
            error = self.assertRaises(DecodeError, hs.decode_message, data)
            self.assertIn(field, str(error))

    def test_size_bound(self):
        self.assertRaises(DecodeError, hs.decode_message, valid_document(justification="x" * hs.MAX_MESSAGE_SIZE))
        big = hs.build_message(hs.REQUEST, NODE_5, 5, 6, NOW, justification="x" * hs.MAX_MESSAGE_SIZE)
        self.assertRaises(DecodeError, hs.encode_message, big)

    def test_unknown_fields_ignored(self):
        self.assertEqual(hs.decode_message(valid_document(extra=1)), hs.decode_message(valid_document()))

    def test_re_encoding_is_canonical(self):
        # Receivers hash the re-encoded message to detect replays.
        canonical = hs.encode_message(hs.build_message(hs.REQUEST, NODE_5, 5, 6, NOW, "hello"))
        spaced = json.dumps(json.loads(canonical), indent=2).encode()
        self.assertEqual(hs.encode_message(hs.decode_message(spaced)), canonical)


class PropertyTests(SynchronousTestCase):
    @SETTINGS
    @given(st.sampled_from(sorted(hs.MESSAGE_TYPES)), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
           st.text(max_size=40), st.text(max_size=40), st.integers(-(1 << 63), (1 << 63) - 1))
    def test_round_trip(self, kind, sender, receiver, justification, reason, timestamp):
        message = hs.build_message(kind, NODE_6, sender, receiver, timestamp, justification, reason)
        decoded = hs.decode_message(hs.encode_message(message))
        self.assertEqual(decoded, message)
        self.assertTrue(is_signed_by(decoded, receiver, NODE_6.public_key))

    @SETTINGS
    @given(st.binary(max_size=300))
    def test_random_bytes_only_raise_decode_error(self, data):
        try:
            hs.decode_message(data)
        except DecodeError:
            pass

    @SETTINGS
    @given(st.data())
    def test_truncated_messages_only_raise_decode_error(self, data):
        wire = valid_document()
        self.assertRaises(DecodeError, hs.decode_message, wire[:data.draw(st.integers(0, len(wire) - 1))])
