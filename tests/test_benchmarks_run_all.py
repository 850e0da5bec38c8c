"""benchmarks.run_all's reading of the benchmarks' JSON, its targets and its table, on canned output."""

from twisted.trial.unittest import SynchronousTestCase

from benchmarks import run_all


def figures(**values):
    """A benchmark's ``--json`` list: one ``{"figure", "value", "unit"}`` per item of ``values``."""
    return [{"figure": name, "value": value, "unit": "x"} for name, value in values.items()]


DAEMON_STREAM = [
    {"figure": "raw encrypted UDP, one way (ceiling)", "value": 50.0, "unit": "MB/s"},
    {"figure": "raw encrypted UDP, one way, 32768-byte payloads", "value": 200.0, "unit": "MB/s"},
    {"figure": "stream via SDK, one way", "value": 110.0, "unit": "MB/s"},
    {"figure": "stream via SDK, one way, 1024-byte segments", "value": 40.0, "unit": "MB/s"},
    {"figure": "pilotctl bench (echo), send rate", "value": 90.0, "unit": "MB/s"},
    {"figure": "64-byte round trip on an open stream, p50", "value": 0.15, "unit": "ms"},
    {"figure": "64-byte round trip on an open stream in AMP boxes, p50", "value": 0.3, "unit": "ms"},
    {"figure": "daemon idle RSS (alpha)", "value": 75.0, "unit": "MB"},
]
REGISTRY = {"sizes": [{"nodes": 10_000, "lookup": {"per_second": 1.0}},
                      {"nodes": 100_000, "lookup": {"per_second": 25_000.0}, "heartbeat": {"per_second": 4_000.0}}]}


def row(label, outcomes):
    [figure] = [figure for figure in run_all.FIGURES if figure.label == label]
    return run_all.evaluate(figure, outcomes)


class EvaluateTests(SynchronousTestCase):
    def test_a_figure_next_to_its_same_run_baseline(self):
        sdk = row("stream via SDK, one way", {"daemon_stream": DAEMON_STREAM})
        self.assertEqual((sdk.value, sdk.baseline, sdk.baseline_label), (110.0, 50.0, "1 KiB ceiling"))
        self.assertAlmostEqual(sdk.ratio, 2.2)
        self.assertEqual((sdk.target, sdk.met, sdk.error), (">= 80.0 MB/s, >= 0.50 x baseline", True, None))

    def test_the_same_figure_next_to_another_baseline(self):
        share = row("stream via SDK, share of 32 KiB ceiling", {"daemon_stream": DAEMON_STREAM})
        self.assertEqual((share.value, share.baseline, share.baseline_label), (110.0, 200.0, "32 KiB ceiling"))
        self.assertAlmostEqual(share.ratio, 0.55)
        self.assertEqual((share.target, share.met), ("", None))

    def test_every_part_of_a_target_must_hold(self):
        fast_enough = figures(**{"raw encrypted UDP, one way (ceiling)": 200.0,
                                 "pilotctl bench (echo), send rate": 90.0})
        bench = row("pilotctl bench, send rate", {"daemon_stream": fast_enough})
        self.assertAlmostEqual(bench.ratio, 0.45)
        self.assertIs(bench.met, False)
        small = row("stream via SDK, 1 KiB segments", {"daemon_stream": DAEMON_STREAM})
        self.assertAlmostEqual(small.ratio, 0.8)
        self.assertIs(small.met, False)

    def test_upper_bounds(self):
        outcomes = {"daemon_stream": DAEMON_STREAM}
        round_trip = row("64 B round trip, open stream, p50", outcomes)
        self.assertIs(round_trip.met, True)
        self.assertAlmostEqual(round_trip.ratio, 0.5)
        self.assertIs(row("daemon idle RSS", outcomes).met, False)

    def test_a_figure_without_a_target_is_neither_met_nor_missed(self):
        ceiling = row("raw encrypted UDP one way, 32 KiB payloads", {"daemon_stream": DAEMON_STREAM})
        self.assertEqual((ceiling.value, ceiling.target, ceiling.met, ceiling.ratio), (200.0, "", None, None))

    def test_paths_into_an_object(self):
        lookups = row("registry 100k nodes: lookups/s", {"registry_load": REGISTRY})
        heartbeats = row("registry 100k nodes: heartbeats/s", {"registry_load": REGISTRY})
        self.assertEqual((lookups.value, lookups.met), (25_000.0, True))
        self.assertEqual((heartbeats.value, heartbeats.met), (4_000.0, False))

    def test_a_renamed_figure_is_an_error_that_names_it(self):
        renamed = [dict(item, figure=item["figure"].upper()) for item in DAEMON_STREAM]
        sdk = row("stream via SDK, one way", {"daemon_stream": renamed})
        self.assertIsNone(sdk.value)
        self.assertEqual(sdk.error, "daemon_stream printed no figure named 'stream via SDK, one way'")
        missing = row("registry 100k nodes: registrations/s", {"registry_load": REGISTRY})
        self.assertEqual(missing.error, "registry_load printed nothing at sizes/-1/register/per_second")

    def test_a_figure_measured_at_another_size_is_an_error(self):
        small = {"sizes": REGISTRY["sizes"][:1]}
        lookups = row("registry 100k nodes: lookups/s", {"registry_load": small})
        self.assertEqual(lookups.error, "registry_load printed sizes/-1/nodes = 10000, not 100000")

    def test_a_failed_or_missing_benchmark_is_an_error_row(self):
        failed = row("events 64 B, 1 publisher -> 1 subscriber",
                     {"event_stream": RuntimeError("exit status 1: boom")})
        self.assertEqual(failed.error, "event_stream: exit status 1: boom")
        self.assertEqual(row("pilotctl info --json, p50", {}).error, "cli_latency: not run")

    def test_every_figure_reads_a_benchmark_that_runs(self):
        names = {benchmark.name for benchmark in run_all.BENCHMARKS}
        self.assertEqual({figure.benchmark for figure in run_all.FIGURES}, names)


class RenderTests(SynchronousTestCase):
    def test_one_table_then_the_errors(self):
        outcomes = {"daemon_stream": DAEMON_STREAM, "cli_latency": figures(**{
            "pilotctl info --json, p50": 180.0, "python -c pass (interpreter start), p50": 30.0})}
        rows = [row(label, outcomes) for label in
                ("stream via SDK, one way", "pilotctl info --json, p50", "daemon start to ready")]
        lines = run_all.render(rows).splitlines()
        self.assertEqual(lines[0].split(), ["figure", "value", "baseline", "ratio", "target", "met?"])
        self.assertEqual(set(lines[1]), {"-", " "})
        self.assertEqual(lines[2].split("  ")[0], "stream via SDK, one way")
        self.assertIn("110 MB/s", lines[2])
        self.assertIn("1 KiB ceiling 50.0 MB/s", lines[2])
        self.assertIn("2.20", lines[2])
        self.assertTrue(lines[2].endswith("yes"))
        self.assertIn("python -c pass 30.0 ms", lines[3])
        self.assertIn("6.00", lines[3])
        self.assertEqual(lines[3].split()[-8:], ["<=", "60.0", "ms,", "<=", "1.80", "x", "baseline", "NO"])
        self.assertIn("ERROR", lines[4])
        self.assertTrue(lines[4].endswith("error"))
        self.assertEqual(lines[5:], [
            "", "error: daemon start to ready: daemon_stream printed no figure named 'daemon start to ready, median'",
        ])

    def test_a_ratio_ceiling_is_a_target_too(self):
        def met(info_ms):
            outcomes = {"cli_latency": figures(**{"pilotctl info --json, p50": info_ms,
                                                  "python -c pass (interpreter start), p50": 30.0})}
            return run_all.render([row("pilotctl info --json, p50", outcomes)]).splitlines()[2].split()[-1]

        self.assertEqual(met(50.0), "yes")  # <= 60 ms and 1.67 x
        self.assertEqual(met(58.0), "NO")  # <= 60 ms but 1.93 x

    def test_values_keep_a_readable_precision(self):
        self.assertEqual(run_all.format_value(119483.96, "ev/s"), "119,484 ev/s")
        self.assertEqual(run_all.format_value(52.44, "MB"), "52.4 MB")
        self.assertEqual(run_all.format_value(0.291, "s"), "0.29 s")

    def test_small_ratios_keep_two_significant_digits(self):
        outcomes = {"dashboard": figures(**{"uncached directory query, indexed": 0.05,
                                            "uncached directory query, scan-and-sort": 50.0})}
        [line] = run_all.render([row("dashboard uncached query, indexed", outcomes)]).splitlines()[2:]
        self.assertTrue(line.endswith("  0.001"), line)

    def test_the_header_names_the_machine(self):
        info = {"cores": 2, "cpu": "Some CPU", "python": "CPython 3.11.7", "system": "Linux x86_64", "load": 0.5}
        self.assertEqual(run_all.header_line(info, "2026-05-01T12:00:00+00:00", True),
                         "pilotnet benchmarks, 2026-05-01T12:00:00+00:00: 2 cores (Some CPU), CPython 3.11.7, "
                         "Linux x86_64, load average 0.50, --quick")
