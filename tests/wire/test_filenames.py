"""The one check every peer-supplied file name passes before it names a file on our disk."""

import os
import unicodedata

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire.filenames import MAX_NAME_BYTES, check_base_name

SETTINGS = settings(max_examples=300, deadline=None)
BASE = os.path.join(os.sep, "srv", "pilot", "received")

name_parts = st.text(max_size=30) | st.sampled_from(
    ["..", ".", "/", "\\", "\0", "\u202e", "\u2066", "\u200f", "\u200b", "\n", "\x1b", "\u2028", "x", "é"])
hostile = st.lists(name_parts, min_size=1, max_size=6).map("".join)


class ExamplesTests(SynchronousTestCase):
    def test_plain_names_pass_unchanged(self):
        for name in ("report.pdf", "résumé final.txt", "a" * MAX_NAME_BYTES, "数据.csv", "a.b.c", "-x"):
            self.assertEqual(check_base_name(name), name)

    def test_every_kind_of_escape_is_refused(self):
        for name in ("", ".", "..", "../x", "x/../../victim/requirements.txt", "a/b", "a\\b", "/etc/passwd",
                     "a..b", ".bashrc", ".partial-x", "nul\0", "line\nbreak", "esc\x1b[31m", "del\x7f",
                     "invoice\u202etxt.exe", "a\u2066b", "zero\u200bwidth", "sep\u2028x", "é" * 128,
                     "a" * (MAX_NAME_BYTES + 1), "lone\ud800"):
            with self.assertRaises(DecodeError, msg=repr(name)):
                check_base_name(name)

    def test_not_text_is_refused(self):
        self.assertRaises(DecodeError, check_base_name, b"bytes")

    def test_the_error_names_what_was_checked(self):
        with self.assertRaises(DecodeError) as caught:
            check_base_name("a/b", "result file name")
        self.assertIn("result file name", caught.exception.message)


class PropertyTests(SynchronousTestCase):
    @SETTINGS
    @given(st.text(max_size=300) | hostile)
    def test_accepted_names_stay_in_the_directory_and_look_like_themselves(self, name):
        try:
            accepted = check_base_name(name)
        except DecodeError:
            return
        self.assertEqual(accepted, name)
        path = os.path.normpath(os.path.join(BASE, accepted))
        self.assertEqual(os.path.dirname(path), BASE)
        self.assertEqual(os.path.basename(path), accepted)
        self.assertFalse(accepted.startswith("."))
        self.assertLessEqual(len(accepted.encode("utf-8")), MAX_NAME_BYTES)
        self.assertFalse({unicodedata.category(c) for c in accepted} & {"Cc", "Cf", "Cs", "Zl", "Zp"})

    @SETTINGS
    @given(st.text(min_size=1, max_size=20), st.sampled_from(["../", "/", "\\", "..", "\u202e", "\0"]),
           st.text(max_size=20))
    def test_any_name_with_a_forbidden_part_is_refused(self, before, forbidden, after):
        self.assertRaises(DecodeError, check_base_name, before + forbidden + after)
