"""The in-band SACK blob."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire.sack import decode_sack, encode_sack, looks_like_sack
from tests.vectors import vectors

u32 = st.integers(0, 0xFFFFFFFF)
block_lists = st.lists(st.tuples(u32, u32), min_size=1, max_size=4)


class SackTests(SynchronousTestCase):
    def test_vectors(self):
        checked = 0
        for v in vectors("stream", prefix="stream.sack"):
            blocks = [tuple(b) for b in v["inputs"]["blocks_left_right"]]
            self.assertEqual(encode_sack(blocks).hex(), v["output_hex"])
            self.assertEqual(decode_sack(bytes.fromhex(v["output_hex"])), blocks)
            checked += 1
        self.assertEqual(checked, 2)

    def test_reference_recognition_rule(self):
        blob = encode_sack([(1, 2)])
        self.assertTrue(looks_like_sack(blob))
        self.assertTrue(looks_like_sack(blob + b"extra"))
        self.assertFalse(looks_like_sack(blob[:-1]))
        self.assertFalse(looks_like_sack(b"SACK\x00" + bytes(8)))
        self.assertFalse(looks_like_sack(b"SACK\x05" + bytes(40)))
        self.assertFalse(looks_like_sack(b"SACK"))
        self.assertFalse(looks_like_sack(b"sack\x01" + bytes(8)))

    def test_encode_refuses_bad_counts(self):
        self.assertRaises(ValueError, encode_sack, [])
        self.assertRaises(ValueError, encode_sack, [(0, 1)] * 5)

    @settings(max_examples=300, deadline=None)
    @given(block_lists)
    def test_round_trip(self, blocks):
        self.assertEqual(decode_sack(encode_sack(blocks)), blocks)

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=60))
    def test_random_bytes_only_raise_decode_error(self, raw):
        try:
            decode_sack(raw)
        except DecodeError:
            self.assertFalse(looks_like_sack(raw))
        else:
            self.assertTrue(looks_like_sack(raw))

    @settings(max_examples=200, deadline=None)
    @given(block_lists, st.data())
    def test_truncation_only_raises_decode_error(self, blocks, data):
        blob = encode_sack(blocks)
        cut = data.draw(st.integers(0, len(blob) - 1))
        self.assertRaises(DecodeError, decode_sack, blob[:cut])
