"""Data exchange frames (port 1001) against the Go reference's vectors and properties."""

import struct

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire import dataexchange as dx
from pilotnet.wire.typedframe import FrameData, FrameEnd, MAX_PAYLOAD
from tests.vectors import vectors
from tests.wire.chunking import chunk_sizes, feed_all

SETTINGS = settings(max_examples=150, deadline=None)

safe_names = st.text(
    alphabet=st.characters(blacklist_characters="/\\.", blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
    max_size=40,
).filter(lambda n: len(n.encode()) <= dx.MAX_FILE_NAME)
frames = st.one_of(
    st.builds(dx.DataFrame, st.sampled_from([1, 2, 3, 7, 0xFFFFFFFF]), st.binary(max_size=300), st.just("")),
    st.builds(dx.DataFrame, st.just(dx.TYPE_FILE), st.binary(max_size=300), safe_names),
)


def stream_frames(events):
    """Reassemble whole frames from DataStreamDecoder events, checking their order."""
    frames_out, current, parts = [], None, []
    for event in events:
        if isinstance(event, dx.DataFrameStart):
            assert current is None
            current, parts = event, []
        elif isinstance(event, FrameData):
            assert current is not None and event.data
            parts.append(event.data)
        else:
            assert isinstance(event, FrameEnd) and current is not None
            payload = b"".join(parts)
            assert len(payload) == current.length
            frames_out.append(dx.DataFrame(current.frame_type, payload, current.file_name))
            current = None
    return frames_out


class VectorTests(SynchronousTestCase):
    def test_vectors(self):
        cases = vectors("service-1001")
        self.assertEqual(len(cases), 5)
        for case in cases:
            inputs = case["inputs"]
            expected = dx.DataFrame(inputs["type"], bytes.fromhex(inputs["payload_hex"]), inputs["filename"])
            wire = bytes.fromhex(case["output_hex"])
            writes = [bytes.fromhex(w) for w in case["output"]["writes_hex"]]
            self.assertEqual(dx.encode_frame(*expected), writes, case["id"])
            self.assertEqual(dx.DataFrameReader().feed(wire), [expected], case["id"])
            self.assertEqual(stream_frames(dx.DataStreamDecoder().feed(wire)), [expected], case["id"])
            self.assertEqual(dx.type_name(inputs["type"]), inputs["type_name"])

    def test_ack_reply(self):
        writes = [bytes.fromhex(w) for w in
                  next(v for v in vectors("service-1001") if v["id"].endswith("ack_reply"))["output"]["writes_hex"]]
        self.assertEqual(dx.encode_ack(dx.DataFrame(dx.TYPE_TEXT, b"hi")), writes)

    def test_ack_counts_file_content_only(self):
        self.assertEqual(dx.ack_text(dx.TYPE_FILE, 5), "ACK FILE 5 bytes")
        self.assertEqual(dx.ack_text(9, 0), "ACK UNKNOWN(9) 0 bytes")
        self.assertEqual(dx.error_text(dx.TYPE_JSON, "disk full"), "ERR JSON save failed: disk full")


class FileTests(SynchronousTestCase):
    def test_streamed_file_header_matches_whole_frame(self):
        content = b"x" * 1000
        header = dx.encode_frame_header(dx.TYPE_FILE, len(content), "report.pdf")
        self.assertEqual(header + content, b"".join(dx.encode_frame(dx.TYPE_FILE, content, "report.pdf")))

    def test_stream_decoder_reports_name_before_content(self):
        wire = b"".join(dx.encode_frame(dx.TYPE_FILE, b"hello", "a.txt"))
        events = []
        decoder = dx.DataStreamDecoder()
        for index in range(len(wire)):
            events.extend(decoder.feed(wire[index:index + 1]))
        self.assertEqual(events[0], dx.DataFrameStart(dx.TYPE_FILE, 5, "a.txt"))
        self.assertEqual(b"".join(e.data for e in events if isinstance(e, FrameData)), b"hello")
        self.assertIsInstance(events[-1], FrameEnd)
        self.assertTrue(decoder.at_boundary)

    def test_bad_names_refused(self):
        for name in ("a/b", "..", "a..b", "x\\y", "nul\0", ".", "é" * 128, ".hidden", "a\u202etxt.exe"):
            self.assertRaises(DecodeError, dx.check_file_name, name)
            self.assertRaises(DecodeError, dx.encode_frame, dx.TYPE_FILE, b"", name)
        self.assertEqual(dx.check_file_name("a" * 255), "a" * 255)
        self.assertEqual(dx.check_file_name(""), "")

    def test_bad_names_refused_on_the_wire(self):
        for raw in (b"../etc/passwd", b"a/b", b"\xff\xfe", b"a" * 256):
            payload = struct.pack(">H", len(raw)) + raw + b"data"
            wire = struct.pack(">II", dx.TYPE_FILE, len(payload)) + payload
            self.assertRaises(DecodeError, dx.DataFrameReader().feed, wire)
            self.assertRaises(DecodeError, dx.DataStreamDecoder().feed, wire)

    def test_truncated_file_payloads_refused(self):
        for payload in (b"", b"\x00", b"\x00\x05abc"):
            wire = struct.pack(">II", dx.TYPE_FILE, len(payload)) + payload
            self.assertRaises(DecodeError, dx.DataFrameReader().feed, wire)
            self.assertRaises(DecodeError, dx.DataStreamDecoder().feed, wire)

    def test_name_only_on_file_frames(self):
        self.assertRaises(DecodeError, dx.encode_frame, dx.TYPE_TEXT, b"", "a.txt")
        self.assertRaises(DecodeError, dx.encode_frame_header, dx.TYPE_TEXT, 0, "a.txt")


class LimitTests(SynchronousTestCase):
    def test_exactly_two_to_the_24_is_allowed(self):
        header = struct.pack(">II", dx.TYPE_BINARY, MAX_PAYLOAD)
        self.assertEqual(dx.DataStreamDecoder().feed(header), [dx.DataFrameStart(dx.TYPE_BINARY, MAX_PAYLOAD, "")])

    def test_more_is_refused_at_the_header(self):
        header = struct.pack(">II", dx.TYPE_BINARY, MAX_PAYLOAD + 1)
        self.assertRaises(DecodeError, dx.DataStreamDecoder().feed, header)
        self.assertRaises(DecodeError, dx.DataFrameReader().feed, header)
        self.assertRaises(DecodeError, dx.encode_frame_header, dx.TYPE_BINARY, MAX_PAYLOAD + 1)

    def test_file_name_counts_towards_the_limit(self):
        self.assertRaises(DecodeError, dx.encode_frame_header, dx.TYPE_FILE, MAX_PAYLOAD, "a")
        dx.encode_frame_header(dx.TYPE_FILE, MAX_PAYLOAD - 3, "a")

    def test_frames_before_a_refused_one_are_reported_with_the_error(self):
        good = b"".join(dx.encode_frame(dx.TYPE_FILE, b"fine", "ok.txt"))
        bad = struct.pack(">II", dx.TYPE_FILE, 2 + 9 + 1) + b"\x00\x09../passwd" + b"x"
        with self.assertRaises(dx.StreamDecodeError) as caught:
            dx.DataStreamDecoder().feed(good + bad)
        self.assertEqual(stream_frames(caught.exception.events), [dx.DataFrame(dx.TYPE_FILE, b"fine", "ok.txt")])
        oversized = struct.pack(">II", dx.TYPE_TEXT, MAX_PAYLOAD + 1)
        with self.assertRaises(dx.StreamDecodeError) as caught:
            dx.DataStreamDecoder().feed(good + oversized)
        self.assertEqual(stream_frames(caught.exception.events), [dx.DataFrame(dx.TYPE_FILE, b"fine", "ok.txt")])

    def test_failed_stream_stays_failed(self):
        decoder = dx.DataStreamDecoder()
        self.assertRaises(DecodeError, decoder.feed, b"\x00\x00\x00\x01\xff\xff\xff\xff")
        self.assertRaises(DecodeError, decoder.feed, b"\x00")


class PropertyTests(SynchronousTestCase):
    @SETTINGS
    @given(st.lists(frames, max_size=5), chunk_sizes)
    def test_round_trip_in_chunks(self, messages, sizes):
        wire = b"".join(b"".join(dx.encode_frame(*m)) for m in messages)
        self.assertEqual(feed_all(dx.DataFrameReader(), wire, sizes), messages)
        decoder = dx.DataStreamDecoder()
        self.assertEqual(stream_frames(feed_all(decoder, wire, sizes)), messages)
        self.assertTrue(decoder.at_boundary)

    @SETTINGS
    @given(st.binary(max_size=200), chunk_sizes)
    def test_random_bytes_only_raise_decode_error(self, data, sizes):
        for decoder in (dx.DataFrameReader(), dx.DataStreamDecoder()):
            try:
                feed_all(decoder, data, sizes)
            except DecodeError:
                pass

    @SETTINGS
    @given(st.binary(max_size=300), chunk_sizes)
    def test_random_file_payloads_only_raise_decode_error(self, payload, sizes):
        wire = struct.pack(">II", dx.TYPE_FILE, len(payload)) + payload
        for decoder in (dx.DataFrameReader(), dx.DataStreamDecoder()):
            try:
                feed_all(decoder, wire, sizes)
            except DecodeError:
                pass

    @SETTINGS
    @given(frames, st.data())
    def test_truncated_frame_needs_more_data(self, message, data):
        wire = b"".join(dx.encode_frame(*message))
        cut = data.draw(st.integers(0, len(wire) - 1))
        decoder = dx.DataFrameReader()
        self.assertEqual(decoder.feed(wire[:cut]), [])
        self.assertEqual(decoder.at_boundary, cut == 0)
