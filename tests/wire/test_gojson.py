"""Go-compatible compact JSON and strict field reading."""

import json

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire import gojson

SETTINGS = settings(max_examples=200, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


class DumpsTests(SynchronousTestCase):
    def test_compact_and_ordered(self):
        self.assertEqual(gojson.dumps({"b": 1, "a": [True, None, "x"]}), b'{"b":1,"a":[true,null,"x"]}')

    def test_html_characters_escaped_as_go_does(self):
        self.assertEqual(gojson.dumps({"s": "<a>&b</a>"}), b'{"s":"\\u003ca\\u003e\\u0026b\\u003c/a\\u003e"}')
        self.assertEqual(gojson.dumps("\u2028\u2029"), b'"\\u2028\\u2029"')

    def test_control_characters(self):
        self.assertEqual(gojson.dumps("\n\r\t\b\f\x01\x1f\x7f"), b'"\\n\\r\\t\\b\\f\\u0001\\u001f\x7f"')

    def test_non_ascii_kept_as_utf8(self):
        self.assertEqual(gojson.dumps("héllo ✓"), '"héllo ✓"'.encode())

    def test_lone_surrogate_becomes_replacement_character(self):
        self.assertEqual(gojson.dumps("a\ud800"), '"a\ufffd"'.encode())

    def test_floats_refused(self):
        self.assertRaises(TypeError, gojson.dumps, {"a": [1.5]})

    @SETTINGS
    @given(json_values)
    def test_reads_back_as_the_same_value(self, value):
        self.assertEqual(json.loads(gojson.dumps(value)), value)


class LoadsTests(SynchronousTestCase):
    def test_object_required(self):
        self.assertEqual(gojson.loads_object(b'{"a":1}', "thing"), {"a": 1})
        for bad in (b"[1]", b"1", b'"x"', b"", b"{", b"\xff", b'{"a":NaN}', b"[" * 100000):
            self.assertRaises(DecodeError, gojson.loads_object, bad, "thing")

    def test_typed_fields(self):
        document = {"s": "x", "i": 5, "f": 5.0, "b": True, "n": None}
        self.assertEqual(gojson.get_str(document, "s", "t"), "x")
        self.assertEqual(gojson.get_str(document, "missing", "t", "d"), "d")
        self.assertEqual(gojson.get_str(document, "n", "t", ""), "")
        self.assertRaises(DecodeError, gojson.get_str, document, "missing", "t")
        self.assertRaises(DecodeError, gojson.get_str, document, "i", "t")
        self.assertEqual(gojson.get_int(document, "i", "t", 0, 10), 5)
        self.assertRaises(DecodeError, gojson.get_int, document, "i", "t", 6, 10)
        self.assertRaises(DecodeError, gojson.get_int, document, "f", "t", 0, 10)
        self.assertRaises(DecodeError, gojson.get_int, document, "b", "t", 0, 10)

    def test_error_names_the_field(self):
        error = self.assertRaises(DecodeError, gojson.get_int, {"node_id": "x"}, "node_id", "handshake", 0, 1)
        self.assertIn("node_id", str(error))
        self.assertIn("handshake", str(error))

    def test_escaped_lone_surrogate_read_as_replacement_character(self):
        document = gojson.loads_object(b'{"s":"a\\ud800"}', "t")
        self.assertEqual(gojson.get_str(document, "s", "t"), "a\ufffd")

    @SETTINGS
    @given(st.binary(max_size=100))
    def test_random_bytes_only_raise_decode_error(self, data):
        try:
            gojson.loads_object(data, "thing")
        except DecodeError:
            pass
