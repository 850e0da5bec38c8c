"""pilotctl's argument rules, command table checks and output formats (no I/O)."""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.cli import catalogue
from pilotnet.cli.args import Args, parse_duration, parse_number, split_globals
from pilotnet.cli.output import (
    envelope, error_document, format_bytes, format_uptime, go_duration, go_json, human_error, table,
)
from pilotnet.driver.targets import parse_port, parse_target
from pilotnet.errors import INVALID_ARGUMENT, NOT_RUNNING, PilotError
from pilotnet.wire.address import Addr


class GlobalOptionTests(SynchronousTestCase):
    def test_json_anywhere(self):
        self.assertEqual(split_globals(["ping", "--json", "a"]), (True, None, ["ping", "a"]))
        self.assertEqual(split_globals(["info"]), (False, None, ["info"]))

    def test_home_both_spellings(self):
        self.assertEqual(split_globals(["--home", "/h", "info"]), (False, "/h", ["info"]))
        self.assertEqual(split_globals(["info", "--home=/h", "--json"]), (True, "/h", ["info"]))


class ArgsTests(SynchronousTestCase):
    def test_reference_rules(self):
        args = Args(["a", "--k=v", "--count", "3", "--flag", "--other", "b", "-x"])
        self.assertEqual(args.positional, ["a", "-x"])
        self.assertEqual(args.flags, {"k": "v", "count": "3", "flag": "true", "other": "b"})

    def test_value_may_look_negative_but_not_like_a_flag(self):
        self.assertEqual(Args(["--delta", "-1"]).flags, {"delta": "-1"})
        self.assertEqual(Args(["--a", "--b"]).flags, {"a": "true", "b": "true"})

    def test_trailing_bare_flag_and_empty_value(self):
        self.assertEqual(Args(["x", "--public"]).flags, {"public": "true"})
        self.assertEqual(Args(["--message="]).flags, {"message": ""})

    def test_booleans(self):
        args = Args(["--a", "--b=1", "--c=", "--d=false", "--e=yes"])
        self.assertEqual([args.boolean(k) for k in "abcdef"], [True, True, True, False, False, False])

    def test_integers(self):
        self.assertEqual(Args(["--count", "3"]).integer("count", 4), 3)
        self.assertEqual(Args([]).integer("count", 4), 4)
        for bad in ("x", "1.5", "-2", "٣"):
            with self.assertRaises(PilotError) as raised:
                Args(["--count", bad]).integer("count", 4)
            self.assertEqual(raised.exception.code, INVALID_ARGUMENT)

    def test_durations(self):
        for text, seconds in (("30s", 30), ("2m", 120), ("1h30m", 5400), ("250ms", 0.25), ("1.5", 1.5),
                              ("1m0.5s", 60.5), ("10", 10)):
            self.assertAlmostEqual(parse_duration(text, "--timeout"), seconds)
        for bad in ("", "s", "5x", "1s2", "-1s", "1 s"):
            with self.assertRaises(PilotError) as raised:
                parse_duration(bad, "--timeout")
            self.assertEqual(raised.exception.code, INVALID_ARGUMENT)
            self.assertIn("--timeout", raised.exception.message)

    def test_numbers(self):
        self.assertEqual(parse_number("42", "node ID", 100), 42)
        for bad in ("", "x", "101", "-1", "١"):
            self.assertRaises(PilotError, parse_number, bad, "node ID", 100)


class TargetTests(SynchronousTestCase):
    def test_spellings(self):
        self.assertEqual(parse_target("1:0001.0000.0002"), Addr(1, 2))
        self.assertEqual(parse_target("42"), Addr(0, 42))
        self.assertIsNone(parse_target("agent-b"))

    def test_invalid(self):
        for bad in ("", "1:0002.0000.0001", "0:0000.0000", str(2**32), None):
            with self.assertRaises(PilotError) as raised:
                parse_target(bad)
            self.assertEqual(raised.exception.code, INVALID_ARGUMENT)

    def test_ports(self):
        self.assertEqual(parse_port("7"), 7)
        self.assertEqual(parse_port(65535), 65535)
        for bad in ("x", "-1", "65536", 70000, "", True, None, "７"):
            with self.assertRaises(PilotError) as raised:
                parse_port(bad)
            self.assertEqual(raised.exception.code, INVALID_ARGUMENT)


class CatalogueTests(SynchronousTestCase):
    def test_every_handler_exists(self):
        for command in catalogue.COMMANDS:
            self.assertTrue(callable(command.load()), command.name)

    def test_find(self):
        self.assertEqual(catalogue.find(["daemon", "start", "--public"])[0].name, "daemon start")
        self.assertEqual(catalogue.find(["ping", "a"])[1], ["a"])
        self.assertIsNone(catalogue.find(["daemon"])[0])
        self.assertIsNone(catalogue.find([])[0])

    def test_checks(self):
        ping = catalogue.BY_NAME["ping"]
        ping.check(Args(["a", "--count", "2"]))
        for argv in ([], ["a", "b"], ["a", "--cuont", "2"]):
            with self.assertRaises(PilotError) as raised:
                ping.check(Args(argv))
            self.assertEqual(raised.exception.code, INVALID_ARGUMENT)
        catalogue.BY_NAME["set-tags"].check(Args(["a", "b", "c", "d"]))

    def test_context_document(self):
        document = catalogue.context_document()
        self.assertEqual(set(document["error_codes"]), {
            "invalid_argument", "not_found", "already_exists", "not_running", "connection_failed", "timeout",
            "internal", "unreachable", "not_trusted", "unavailable", "refused",
        })
        self.assertEqual(document["commands"]["ping"]["args"], ["<address|hostname>", "[--count N]", "[--timeout D]"])
        self.assertIn("--json", document["global_flags"])


class OutputTests(SynchronousTestCase):
    def test_envelope_bytes(self):
        self.assertEqual(envelope({"b": 1, "a": [1.0, 2.5]}), '{"data":{"a":[1,2.5],"b":1},"status":"ok"}')

    def test_error_documents(self):
        plain = PilotError("bad <port>", code=INVALID_ARGUMENT)
        self.assertEqual(error_document(plain),
                         '{"code":"invalid_argument","message":"bad \\u003cport\\u003e","status":"error"}')
        hinted = PilotError("daemon is not running", code=NOT_RUNNING, hint="start it")
        self.assertEqual(error_document(hinted),
                         '{"code":"not_running","hint":"start it","message":"daemon is not running","status":"error"}')
        self.assertEqual(human_error(hinted), "error: daemon is not running\nhint:  start it")
        self.assertEqual(human_error(plain), "error: bad <port>")

    def test_go_json_keeps_utf8(self):
        self.assertEqual(go_json({"m": "— é"}), '{"m":"— é"}')
        self.assertEqual(go_json({"b": 1, "a": 2}, indent=2), '{\n  "a": 2,\n  "b": 1\n}')

    def test_durations_like_go(self):
        for seconds, text in ((0, "0s"), (0.0000005, "500ns"), (0.0008125, "812.5µs"), (0.001234567, "1.234567ms"),
                              (1.5, "1.5s"), (123.5, "2m3.5s"), (3600, "1h0m0s"), (30, "30s"), (-0.002, "-2ms")):
            self.assertEqual(go_duration(seconds), text)

    def test_bytes_and_uptime(self):
        self.assertEqual([format_bytes(n) for n in (512, 1536, 2 * 1024**2, 3 * 1024**3, 5 * 1024**4)],
                         ["512 B", "1.5 KB", "2.0 MB", "3.0 GB", "5120.0 GB"])
        self.assertEqual(format_uptime(3725.9), "01:02:05")
        self.assertEqual(format_uptime(100 * 3600), "100:00:00")

    def test_table(self):
        self.assertEqual(table(["A", "LONG"], [[1, "x"], [22, "yy"]]), "A   LONG\n1   x\n22  yy")


class HandScannedTests(SynchronousTestCase):
    """The scanners that replaced regular expressions (``re`` costs each pilotctl start ~7 ms) agree with them."""

    @staticmethod
    def _duration_by_regex(text):
        import re

        if re.fullmatch(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", text):
            return float(text)
        position, seconds = 0, 0.0
        units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
        for match in re.finditer(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)", text):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * units[match.group(2)]
            position = match.end()
        return seconds if position and position == len(text) else None

    @given(st.text(alphabet="0123456789.nsuµmh -x", max_size=12))
    def test_durations_as_the_regular_expression_read_them(self, text):
        expected = self._duration_by_regex(text)
        if expected is None:
            self.assertRaises(PilotError, parse_duration, text, "--timeout")
        else:
            self.assertAlmostEqual(parse_duration(text, "--timeout"), expected)

    @given(st.text(alphabet="[]-- ABZ_=az.", max_size=30))
    def test_usage_parts_as_the_regular_expression_split_them(self, usage):
        import re

        expected = tuple(re.findall(r"\[[^\]]*\]|--\S+(?: [A-Z_=]+)?|\S+", usage))
        self.assertEqual(catalogue.usage_parts(usage), expected)

    @given(st.text(alphabet="0123456789-+ ٣x", max_size=8))
    def test_integers_are_ascii_digits_only(self, value):
        import re

        args = Args(["--n=" + value])
        if re.fullmatch(r"-?[0-9]+", value):
            self.assertEqual(args.integer("n", 0, minimum=-(10 ** 9)), int(value))
        else:
            self.assertRaises(PilotError, args.integer, "n", 0, -(10 ** 9))
