"""Tunnel frame layouts: PILT, PILS header, PILK, PILA (with and without trailer), PILP."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire import tunnel
from pilotnet.wire.tunnel import (
    AUTH_FRAME_SIZE, MAGIC_PUNCH, AuthKeyOffer, KeyOffer, decode_auth_key_offer, decode_key_offer,
    encode_varint, frame_magic, plaintext_frame, sealed_sender,
)
from tests.vectors import by_id

u32 = st.integers(0, 0xFFFFFFFF)
keys = st.binary(min_size=32, max_size=32)
offers = st.builds(
    AuthKeyOffer, u32, keys, keys, st.binary(min_size=64, max_size=64),
    st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1),
)


class KnownAnswerTests(SynchronousTestCase):
    def test_pilt(self):
        v = by_id("tunnel.pilt.keepalive_ping")
        self.assertEqual(plaintext_frame(bytes.fromhex(v["inputs"]["packet_hex"])).hex(), v["output_hex"])

    def test_pilk(self):
        v = by_id("tunnel.pilk")
        raw = bytes.fromhex(v["output_hex"])
        offer = decode_key_offer(raw)
        self.assertEqual(offer.node, 1)
        self.assertEqual(offer.x25519_public.hex(), by_id("tunnel.kdf")["output"]["x25519_public_node1_hex"])
        self.assertEqual(offer.encode(), raw)

    def test_pilp(self):
        self.assertEqual(MAGIC_PUNCH.hex(), by_id("tunnel.pilp")["output_hex"])

    def test_pila_sizes_and_trailers(self):
        expected = {
            "tunnel.pila.136": (136, 0, 0),
            "tunnel.pila.caps": (137, 1, 0),
            "tunnel.pila.caps_response": (138, 1, 2),
            "tunnel.pila.caps_request": (138, 1, 1),
            "tunnel.pila.node2_reply_captured": (138, 1, 2),
        }
        for vid, (size, caps, flags) in expected.items():
            v = by_id(vid)
            raw = bytes.fromhex(v["output_hex"])
            self.assertEqual(len(raw), size, vid)
            offer = decode_auth_key_offer(raw)
            self.assertEqual((offer.node, offer.caps, offer.flags), (v["inputs"]["node"], caps, flags), vid)
            self.assertEqual(offer.x25519_public.hex(), v["inputs"]["x25519_public_hex"], vid)
            self.assertEqual(offer.ed25519_public.hex(), v["inputs"]["ed25519_public_hex"], vid)
            self.assertEqual(offer.signed_message.hex(), v["inputs"]["signed_message_hex"], vid)
            self.assertEqual(offer.encode(), raw, vid)

    def test_pils_sender(self):
        raw = bytes.fromhex(by_id("tunnel.pils.counter1")["output_hex"])
        self.assertEqual(frame_magic(raw), tunnel.MAGIC_SEALED)
        self.assertEqual(sealed_sender(raw), 1)


class LenientTrailerTests(SynchronousTestCase):
    def setUp(self):
        self.base = bytes.fromhex(by_id("tunnel.pila.136")["output_hex"])

    def test_unterminated_varint_is_ignored(self):
        offer = decode_auth_key_offer(self.base + b"\x81")
        self.assertEqual((offer.caps, offer.flags), (0, 0))

    def test_overlong_varint_is_ignored(self):
        offer = decode_auth_key_offer(self.base + b"\xff" * 11 + b"\x01")
        self.assertEqual((offer.caps, offer.flags), (0, 0))

    def test_caps_without_flags(self):
        offer = decode_auth_key_offer(self.base + b"\x01\x80")
        self.assertEqual((offer.caps, offer.flags), (1, 0))

    def test_flags_only_frame_carries_zero_caps(self):
        offer = AuthKeyOffer(1, bytes(32), bytes(32), bytes(64), caps=0, flags=2)
        self.assertEqual(offer.encode()[AUTH_FRAME_SIZE:], b"\x00\x02")


class ErrorTests(SynchronousTestCase):
    def test_short_frames(self):
        self.assertIsNone(frame_magic(b"PIL"))
        self.assertRaises(DecodeError, decode_key_offer, b"PILK" + bytes(35))
        self.assertRaises(DecodeError, decode_auth_key_offer, b"PILA" + bytes(131))
        self.assertRaises(DecodeError, sealed_sender, b"PILS" + bytes(31))

    def test_wrong_magic(self):
        self.assertRaises(DecodeError, decode_key_offer, b"PILA" + bytes(36))
        self.assertRaises(DecodeError, decode_auth_key_offer, b"PILK" + bytes(132))

    def test_varint(self):
        self.assertEqual(encode_varint(0), b"\x00")
        self.assertEqual(encode_varint(300), b"\xac\x02")
        self.assertRaises(ValueError, encode_varint, -1)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(offers)
    def test_pila_round_trip(self, offer):
        self.assertEqual(decode_auth_key_offer(offer.encode()), offer)

    @settings(max_examples=200, deadline=None)
    @given(u32, keys)
    def test_pilk_round_trip(self, node, key):
        self.assertEqual(decode_key_offer(KeyOffer(node, key).encode()), KeyOffer(node, key))

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=160))
    def test_random_bytes_only_raise_decode_error(self, raw):
        for decode in (decode_key_offer, decode_auth_key_offer, sealed_sender):
            try:
                decode(raw)
            except DecodeError:
                pass
