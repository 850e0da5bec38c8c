"""cjson writes and reads exactly what the json package does, for every value and option pilotnet uses."""

import json

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from pilotnet.wire import cjson

scalars = (st.none() | st.booleans() | st.integers() | st.text()
           | st.floats(allow_nan=True, allow_infinity=True))
keys = st.text() | st.integers() | st.booleans() | st.floats(allow_nan=False)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    | st.tuples(children, children),
    max_leaves=30)
options = st.fixed_dictionaries({
    "ensure_ascii": st.booleans(),
    "sort_keys": st.booleans(),
    "separators": st.sampled_from([None, (", ", ": "), (",", ":"), (",", ": ")]),
    "indent": st.sampled_from([None, 0, 2, 4]),
})


class DumpsTests(unittest.TestCase):
    @settings(max_examples=300)
    @given(documents, options)
    def test_the_same_text_as_json_dumps(self, value, chosen):
        self.assertEqual(cjson.dumps(value, **chosen), json.dumps(value, **chosen))

    @given(st.dictionaries(keys, scalars, max_size=4), st.sampled_from([None, 2]))
    def test_keys_of_every_kind_as_json_writes_them(self, value, indent):
        self.assertEqual(cjson.dumps(value, indent=indent), json.dumps(value, indent=indent))

    def test_allow_nan_false_refuses_nan(self):
        with self.assertRaises(ValueError):
            cjson.dumps([float("nan")], allow_nan=False)

    def test_a_value_json_cannot_write_is_refused(self):
        for indent in (None, 2):
            with self.assertRaises(TypeError):
                cjson.dumps({"a": object()}, indent=indent)

    def test_a_circular_document_is_refused(self):
        loop = []
        loop.append(loop)
        for indent in (None, 2):
            with self.assertRaises(ValueError):
                cjson.dumps(loop, indent=indent)


class LoadsTests(unittest.TestCase):
    @settings(max_examples=300)
    @given(documents, st.sampled_from([None, 2]), st.sampled_from(["", " ", "\n\t "]))
    def test_reads_what_json_reads(self, value, indent, padding):
        text = padding + json.dumps(value, indent=indent) + padding
        self.assertEqual(repr(cjson.loads(text)), repr(json.loads(text)))

    @given(st.text(max_size=40))
    def test_garbage_is_a_value_error_exactly_when_json_refuses_it(self, text):
        try:
            expected = json.loads(text)
        except ValueError:
            self.assertRaises(ValueError, cjson.loads, text)
        else:
            self.assertEqual(repr(cjson.loads(text)), repr(expected))

    def test_constants_go_through_parse_constant(self):
        def refuse(name):
            raise ValueError(f"{name} is not JSON")

        with self.assertRaises(ValueError):
            cjson.make_loads(refuse)("[NaN]")
        self.assertEqual(cjson.loads("[Infinity]"), [float("inf")])

    def test_deep_nesting_is_an_error_not_a_crash(self):
        with self.assertRaises((ValueError, RecursionError)):
            cjson.loads("[" * 100_000)
