"""Event stream frames (port 1002) against the Go reference's vectors and properties."""

import struct

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire import eventstream as es
from tests.vectors import vectors
from tests.wire.chunking import chunk_sizes, feed_all, split

SETTINGS = settings(max_examples=150, deadline=None)

topics = st.text(max_size=30).filter(lambda t: len(t.encode()) <= es.MAX_TOPIC)
events = st.builds(es.Event, topics, st.binary(max_size=200))


class VectorTests(SynchronousTestCase):
    def test_vectors(self):
        cases = vectors("service-1002")
        self.assertEqual(len(cases), 2)
        for case in cases:
            event = es.Event(case["inputs"]["topic"], bytes.fromhex(case["inputs"]["payload_hex"]))
            self.assertEqual(es.encode_event(*event).hex(), case["output_hex"], case["id"])
            self.assertEqual(es.EventDecoder().feed(bytes.fromhex(case["output_hex"])), [event], case["id"])


class LimitTests(SynchronousTestCase):
    def test_topic_limit_inclusive(self):
        es.encode_event("t" * es.MAX_TOPIC)
        self.assertRaises(DecodeError, es.encode_event, "t" * (es.MAX_TOPIC + 1))
        self.assertRaises(DecodeError, es.EventDecoder().feed, struct.pack(">H", es.MAX_TOPIC + 1))

    def test_payload_limit_refused_before_buffering(self):
        decoder = es.EventDecoder()
        self.assertEqual(decoder.feed(struct.pack(">H", 1) + b"t" + struct.pack(">I", es.MAX_PAYLOAD)), [])
        self.assertRaises(DecodeError, es.EventDecoder().feed,
                          struct.pack(">H", 1) + b"t" + struct.pack(">I", es.MAX_PAYLOAD + 1))

    def test_empty_topic_carried(self):
        self.assertEqual(es.EventDecoder().feed(es.encode_event("", b"x")), [es.Event("", b"x")])

    def test_topic_must_be_utf8(self):
        error = self.assertRaises(DecodeError, es.EventDecoder().feed, b"\x00\x01\xff\x00\x00\x00\x00")
        self.assertIn("topic", str(error))
        self.assertRaises(DecodeError, es.encode_event, "\ud800")

    def test_failed_decoder_stays_failed(self):
        decoder = es.EventDecoder()
        self.assertRaises(DecodeError, decoder.feed, b"\xff\xff")
        self.assertRaises(DecodeError, decoder.feed, es.encode_event("t"))


class PropertyTests(SynchronousTestCase):
    @SETTINGS
    @given(st.lists(events, max_size=6), chunk_sizes)
    def test_round_trip_in_chunks(self, messages, sizes):
        decoder = es.EventDecoder()
        wire = b"".join(es.encode_event(*e) for e in messages)
        self.assertEqual(feed_all(decoder, wire, sizes), messages)
        self.assertTrue(decoder.at_boundary)

    @SETTINGS
    @given(events, st.data())
    def test_truncated_event_needs_more_data(self, event, data):
        wire = es.encode_event(*event)
        cut = data.draw(st.integers(0, len(wire) - 1))
        decoder = es.EventDecoder()
        self.assertEqual(decoder.feed(wire[:cut]), [])
        self.assertEqual(decoder.feed(wire[cut:]), [event])

    @SETTINGS
    @given(st.binary(max_size=200), chunk_sizes)
    def test_random_bytes_only_raise_decode_error(self, data, sizes):
        try:
            feed_all(es.EventDecoder(), data, sizes)
        except DecodeError:
            pass


class FrameTests(SynchronousTestCase):
    """The frame-preserving decoding a broker forwards with: each event's own wire bytes, unencoded."""

    @SETTINGS
    @given(st.lists(events, max_size=6), chunk_sizes)
    def test_frames_in_chunks_are_the_encodings(self, messages, sizes):
        decoder = es.EventDecoder()
        wire = b"".join(es.encode_event(*e) for e in messages)
        frames = []
        for piece in split(wire, sizes):
            frames.extend(decoder.feed_frames(piece))
        self.assertEqual(frames, [(e.topic, es.encode_event(*e)) for e in messages])
        self.assertTrue(decoder.at_boundary)

    def test_split_events_gives_pairs_or_frames(self):
        wire = es.encode_event("a.b", b"1") + es.encode_event("", b"") + es.encode_event("c", b"x" * 300)
        self.assertEqual(es.split_events(wire), [("a.b", b"1"), ("", b""), ("c", b"x" * 300)])
        self.assertEqual([frame for _, frame in es.split_events(wire, frames=True)],
                         [es.encode_event("a.b", b"1"), es.encode_event(""), es.encode_event("c", b"x" * 300)])
        self.assertEqual(es.split_events(b""), [])

    def test_split_events_refuses_a_partial_event(self):
        wire = es.encode_event("t", b"payload")
        for cut in range(1, len(wire)):
            self.assertRaises(DecodeError, es.split_events, wire[:cut])
        self.assertRaises(DecodeError, es.split_events, b"\xff\xff")

    def test_large_event_in_small_chunks(self):
        """A 16 MiB event (the limit) fed in 4 KiB chunks: whole, once, after the last chunk."""
        payload = bytes(range(256)) * (es.MAX_PAYLOAD // 256)
        wire = es.encode_event("big", payload) + es.encode_event("after", b"!")
        decoder = es.EventDecoder()
        got = []
        for offset in range(0, len(wire), 4096):
            got.extend(decoder.feed(wire[offset:offset + 4096]))
        self.assertEqual(got, [("big", payload), ("after", b"!")])
        self.assertTrue(decoder.at_boundary)
