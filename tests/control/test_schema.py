"""One schema, two implementations: every command's boxes mean the same to AMP and to the blocking client."""

from hypothesis import given, settings, strategies as st
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.control import commands, schema
from pilotnet.control.client import BoxReader, encode_box
from pilotnet.errors import INVALID_ARGUMENT, PilotError

SAMPLES = {
    schema.Integer: 4294967295,
    schema.Float: 2.5,
    schema.Boolean: True,
    schema.Bytes: b"\x00\xffdata",
    schema.Text: "h\u00e9llo \u2192 agent",
    schema.TextList: ["gpu", "\u00fcber", ""],
    schema.LongBytes: bytes(range(256)) * 600,  # 153,600 bytes: three AMP values
    schema.JSON: {"conn_list": [{"id": n, "state": "ESTABLISHED"} for n in range(5000)]},
}


def sample(pairs):
    return {key: SAMPLES[type(value)] for key, value in pairs}


def boxed_only(specs):
    """The specs whose values all travel inside the box (a Descriptor travels beside it, over AMP only)."""
    return [(command, spec) for command, spec in specs
            if not any(isinstance(value, schema.Descriptor) for _, value in spec.arguments + spec.response)]


def amp_box(data):
    """The boxes AMP itself parses from ``data``."""
    return amp.parseString(data)


class RoundTripTests(SynchronousTestCase):
    def test_the_amp_classes_are_the_schema(self):
        self.assertEqual([c.commandName.decode() for c in commands.ALL], [s.name for s in schema.COMMANDS])
        for command, spec in zip(commands.ALL, schema.COMMANDS):
            self.assertEqual([key for key, _ in command.arguments], [k.encode() for k, _ in spec.arguments])
            self.assertEqual(command.requiresAnswer, spec.answered)

    def test_every_command_client_to_amp(self):
        for command, spec in boxed_only(zip(commands.ALL, schema.COMMANDS)):
            values = sample(spec.arguments)
            box = {b"_command": spec.name.encode(), b"_ask": b"1"}
            spec.encode_arguments(values, box)
            [parsed] = amp_box(encode_box(box))
            self.assertEqual(command.parseArguments(parsed, None), values, spec.name)

    def test_every_command_amp_to_client(self):
        for command, spec in boxed_only(zip(commands.ALL, schema.COMMANDS)):
            values = sample(spec.arguments)
            [box] = BoxReader().feed(command.makeArguments(values, None).serialize())
            self.assertEqual(spec.decode_arguments(box), values, spec.name)

    def test_every_answer_both_ways(self):
        for command, spec in zip(commands.ALL, schema.COMMANDS):
            values = sample(spec.response)
            box = {b"_answer": b"1"}
            for key, value in spec.response:
                value.put(key.encode(), values[key], box)
            [parsed] = amp_box(encode_box(box))
            self.assertEqual(command.parseResponse(parsed, None), values, spec.name)
            answer = amp.AmpBox(_answer=b"1")
            answer.update(command.makeResponse(values, None))
            [decoded] = BoxReader().feed(answer.serialize())
            self.assertEqual(spec.decode_response(decoded), values, spec.name)

    def test_a_descriptor_travels_as_amps_descriptor(self):
        self.assertIsInstance(dict(commands.AttachSocket.arguments)[b"data_socket"], amp.Descriptor)
        self.assertEqual(boxed_only([(commands.AttachSocket, schema.ATTACH_SOCKET)]), [])

    def test_long_values_continue_in_numbered_keys_within_amps_limit(self):
        box = {}
        schema.JSON().put(b"info", SAMPLES[schema.JSON], box)
        self.assertGreater(len(box), 2)
        self.assertTrue(all(len(value) <= amp.MAX_VALUE_LENGTH for value in box.values()))
        self.assertEqual(list(box), [b"info"] + [b"info.%d" % part for part in range(1, len(box))])

    def test_an_optional_argument_may_be_absent(self):
        box = {}
        schema.DIAL.encode_arguments({"address": "0:0000.0000.0001", "port": 7}, box)
        self.assertNotIn(b"timeout", box)
        [parsed] = amp_box(encode_box({**box, b"_command": b"Dial"}))
        self.assertIsNone(commands.Dial.parseArguments(parsed, None)["timeout"])

    def test_timeouts_must_be_finite_and_positive(self):
        self.assertEqual(schema.check_timeout(None), None)
        self.assertEqual(schema.check_timeout(3), 3.0)
        for bad in (float("nan"), float("inf"), -1.0, 0, True, "5"):
            with self.assertRaises(PilotError) as raised:
                schema.check_timeout(bad)
            self.assertEqual(raised.exception.code, INVALID_ARGUMENT)

    def test_command_failed_keeps_code_and_hint_through_its_description(self):
        error = schema.CommandFailed("no such port", code="not_found", hint="bind it first")
        carried = schema.CommandFailed(str(error))
        self.assertEqual((carried.message, carried.code, carried.hint), ("no such port", "not_found", "bind it first"))


boxes = st.lists(st.dictionaries(st.binary(min_size=1, max_size=20), st.binary(max_size=300), max_size=5),
                 max_size=4)


class ValueFuzzTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(sorted(SAMPLES, key=lambda kind: kind.__name__)), st.binary(max_size=300))
    def test_malformed_values_raise_only_value_errors(self, kind, data):
        """What the blocking client turns into a clean ``internal`` error (and AMP into an error answer)."""
        try:
            kind().decode(data)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError included
            pass

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.text(max_size=40), max_size=10))
    def test_text_lists_round_trip(self, items):
        self.assertEqual(schema.TextList().decode(schema.TextList().encode(items)), items)


class BoxReaderTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(boxes, st.integers(min_value=1, max_value=50))
    def test_boxes_come_back_in_any_chunking(self, sent, step):
        data = b"".join(encode_box(box) for box in sent)
        reader, received = BoxReader(), []
        for start in range(0, len(data), step):
            received += reader.feed(data[start:start + step])
        self.assertEqual(received, sent)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2000))
    def test_random_bytes_raise_only_pilot_errors(self, data):
        try:
            BoxReader().feed(data)
        except PilotError:
            pass

    def test_a_box_over_the_limit_is_refused(self):
        reader = BoxReader(limit=schema.MAX_BOX)
        value = b"x" * schema.MAX_VALUE
        with self.assertRaises(PilotError):
            for index in range(schema.MAX_BOX // schema.MAX_VALUE + 2):
                reader.feed(encode_box({b"k%d" % index: value})[:-2])
