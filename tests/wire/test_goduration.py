"""Go's duration syntax: what time.ParseDuration accepts, we accept, with the same value."""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire.goduration import parse_go_duration

UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class GoDurationTests(SynchronousTestCase):
    def test_known_answers(self):
        for text, seconds in (("0", 0.0), ("1h", 3600.0), ("1h30m", 5400.0), ("1.5h", 5400.0),
                              ("90s", 90.0), ("250ms", 0.25), ("-2m", -120.0), ("+1s", 1.0),
                              (".5s", 0.5), ("1m0.5s", 60.5), ("3µs", 3e-6)):
            self.assertAlmostEqual(parse_go_duration(text), seconds)

    def test_refusals(self):
        for text in ("", "1", "h", "1 h", "1hh", "1d", "--1s", "1h-1m", "1e3s", "s1", "x" * 100):
            self.assertRaises(DecodeError, parse_go_duration, text)

    @given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(UNITS))), min_size=1, max_size=4))
    def test_sums_of_terms(self, terms):
        text = "".join(f"{number}{unit}" for number, unit in terms)
        expected = sum(number * UNITS[unit] for number, unit in terms)
        self.assertAlmostEqual(parse_go_duration(text), expected, places=6)

    @given(st.text(max_size=30))
    def test_any_text_is_a_duration_or_refused(self, text):
        try:
            parse_go_duration(text)
        except DecodeError:
            pass
