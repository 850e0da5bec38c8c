"""Length-prefixed JSON: Go-compatible encoding, the decoder, the size limit."""

import json
import struct

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.registry.framing import (
    MAX_MESSAGE, FrameDecoder, decode_body, encode_message, go_json,
)


class GoJsonTests(SynchronousTestCase):
    def test_sorted_compact(self):
        self.assertEqual(go_json({"type": "x", "a": [1, 2], "b": {"d": 1, "c": True}}),
                         b'{"a":[1,2],"b":{"c":true,"d":1},"type":"x"}')

    def test_html_characters_escaped_like_go(self):
        self.assertEqual(go_json({"j": "<a & b>\u2028"}),
                         b'{"j":"\\u003ca \\u0026 b\\u003e\\u2028"}')

    def test_non_ascii_stays_utf8(self):
        self.assertEqual(go_json({"o": "é"}), '{"o":"é"}'.encode("utf-8"))

    def test_lone_surrogate_still_valid_utf8(self):
        go_json({"o": json.loads('"\\ud800"')}).decode("utf-8")


class FramingTests(SynchronousTestCase):
    def test_round_trip_in_pieces(self):
        data = encode_message({"type": "lookup", "node_id": 5}) * 3
        decoder = FrameDecoder()
        bodies = []
        for i in range(len(data)):
            bodies += decoder.feed(data[i:i + 1])
        self.assertEqual([decode_body(b) for b in bodies], [{"type": "lookup", "node_id": 5}] * 3)
        self.assertEqual(decoder.buffered, 0)

    def test_many_messages_in_one_read(self):
        messages = [{"type": "lookup", "node_id": n} for n in range(500)]
        data = b"".join(encode_message(m) for m in messages)
        decoder = FrameDecoder()
        self.assertEqual([decode_body(b) for b in decoder.feed(data)], messages)
        self.assertEqual(decoder.buffered, 0)

    def test_one_message_over_many_reads(self):
        body = json.dumps({"type": "set_tags", "tags": ["x" * 60] * 2000}).encode()
        data = struct.pack(">I", len(body)) + body
        decoder = FrameDecoder()
        for start in range(0, len(data) - 1000, 1000):
            self.assertEqual(decoder.feed(data[start:start + 1000]), [])
        self.assertEqual(decoder.feed(data[start + 1000:]), [body])
        self.assertEqual(decoder.buffered, 0)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=300), max_size=20), st.data())
    def test_any_split_yields_the_same_bodies(self, bodies, data):
        stream = b"".join(struct.pack(">I", len(b)) + b for b in bodies)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
        decoder = FrameDecoder(max_message=300)
        received = []
        for start, stop in zip([0] + cuts, cuts + [len(stream)]):
            received += decoder.feed(stream[start:stop])
        self.assertEqual(received, bodies)
        self.assertTrue(all(type(body) is bytes for body in received))
        self.assertEqual(decoder.buffered, 0)

    def test_oversized_length_refused_before_buffering(self):
        decoder = FrameDecoder()
        with self.assertRaises(DecodeError):
            decoder.feed(struct.pack(">I", MAX_MESSAGE + 1) + b"{")

    def test_oversized_length_after_a_complete_message_refused(self):
        decoder = FrameDecoder(max_message=32)
        with self.assertRaises(DecodeError):
            decoder.feed(encode_message({}) + struct.pack(">I", 33))

    def test_oversized_length_split_across_reads_refused(self):
        decoder = FrameDecoder(max_message=32)
        self.assertEqual(decoder.feed(b"\x00\x00"), [])
        with self.assertRaises(DecodeError):
            decoder.feed(b"\x00\x21{")

    def test_limit_itself_allowed(self):
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(struct.pack(">I", MAX_MESSAGE)), [])

    def test_body_must_be_an_object(self):
        for body in (b"[1]", b'"x"', b"nul", b"\xff", b"NaN", b"[" * 100000, b""):
            with self.assertRaises(DecodeError):
                decode_body(body)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=64))
    def test_random_bytes_only_raise_decode_error(self, data):
        decoder = FrameDecoder(max_message=32)
        try:
            for body in decoder.feed(data):
                try:
                    decode_body(body)
                except DecodeError:
                    pass
        except DecodeError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=40))
    def test_random_text_bodies_only_raise_decode_error(self, text):
        try:
            self.assertIsInstance(decode_body(text.encode("utf-8")), dict)
        except DecodeError:
            pass
