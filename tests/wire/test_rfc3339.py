"""RFC 3339 times: the one formatter (Go's time.RFC3339 in UTC) and the one parser (every Go layout)."""

import math
from datetime import datetime, timezone

from hypothesis import assume, given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire.rfc3339 import format_rfc3339, parse_rfc3339

# 0001-01-01 .. 9999-12-31, the years the text form can hold.
seconds = st.integers(-62135596800, 253402300799)


class KnownAnswerTests(SynchronousTestCase):
    def test_format(self):
        self.assertEqual(format_rfc3339(0), "1970-01-01T00:00:00Z")
        self.assertEqual(format_rfc3339(1772366400.75), "2026-03-01T12:00:00Z")
        self.assertEqual(format_rfc3339(-0.5), "1969-12-31T23:59:59Z")

    def test_parse_go_layouts(self):
        self.assertEqual(parse_rfc3339("2026-03-01T12:00:00Z"), 1772366400.0)
        self.assertEqual(parse_rfc3339("2026-03-01T12:00:00.5Z"), 1772366400.5)
        # RFC3339Nano: nine digits, of which Python keeps six.
        self.assertAlmostEqual(parse_rfc3339("2026-03-01T12:00:00.123456789Z"), 1772366400.123456, places=5)
        self.assertEqual(parse_rfc3339("2026-03-01T14:00:00+02:00"), 1772366400.0)
        self.assertEqual(parse_rfc3339("2026-03-01t12:00:00z"), 1772366400.0)

    def test_refused(self):
        for text in ["", "2026-03-01", "2026-03-01T12:00:00", "2026-03-01 12:00:00Z", "2026-13-01T12:00:00Z",
                     "2026-02-30T12:00:00Z", "2026-03-01T25:00:00Z", "2026-03-01T12:00:00.Z",
                     "2026-03-01T12:00:00.1234567890Z", "2026-03-01T12:00:00+0200", "２０２６-03-01T12:00:00Z",
                     "2026-03-01T12:00:00Z\n", None, 5]:
            self.assertRaises(DecodeError, parse_rfc3339, text)

    def test_message_names_what(self):
        with self.assertRaises(DecodeError) as caught:
            parse_rfc3339("yesterday", "approved_at")
        self.assertIn("approved_at", str(caught.exception))


class PropertyTests(SynchronousTestCase):
    @given(seconds)
    def test_round_trip(self, value):
        self.assertEqual(parse_rfc3339(format_rfc3339(value)), value)

    @given(seconds, st.integers(0, 999999))
    def test_format_drops_the_fraction(self, value, micros):
        moment = value + micros / 1e6
        # Far in the future a float has no room for microseconds: the sum rounds up to the next second.
        assume(math.floor(moment) == value)
        self.assertEqual(format_rfc3339(moment), format_rfc3339(value))

    @given(st.datetimes(timezones=st.just(timezone.utc)))
    def test_reads_what_isoformat_writes(self, moment):
        text = moment.isoformat().replace("+00:00", "Z")
        self.assertEqual(parse_rfc3339(text), moment.timestamp())

    @given(st.text(max_size=40))
    def test_garbage_raises_only_decode_error(self, text):
        try:
            value = parse_rfc3339(text)
        except DecodeError:
            return
        self.assertIsInstance(value, float)
        datetime.fromtimestamp(value, timezone.utc)  # a time that exists
