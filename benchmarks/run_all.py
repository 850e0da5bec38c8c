"""Every benchmark, one after the other, and one table of the figures the performance targets name.

    python -m benchmarks.run_all [--json FILE] [--quick]

Each benchmark runs as its own process with ``--json`` (never two at once: the
machine has few cores and every figure is CPU-bound), and this script reads
its figures by name.  The table shows, per figure: its value, the baseline
measured by the same run on the same machine where there is one (the raw
encrypted-UDP ceiling for stream throughput, the bare cipher for tunnel
crypto, the bare interpreter start for ``pilotctl``), the ratio of the two,
the target and whether it is met.  The machine may be shared and noisy; the
ratio to a same-run baseline is the figure to compare across runs.

A benchmark that fails, times out, or no longer prints a figure under the
name read here shows as an error row, the others still run, and the exit
status is 1.  Targets not met are results, not errors.  ``--quick`` uses
smaller transfers, fewer events and repeats and shorter load phases (the
100,000-node directories stay; the million-node registry and dashboard runs
use 300,000 nodes), so the whole run takes some ten minutes instead of about
forty.  ``--json FILE`` writes the rows, the machine and every
benchmark's own output there too.  See docs/performance.md.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    """A module under benchmarks/, its arguments for a full and a quick run, and how long it may take.

    ``module`` is the module's name when it differs from ``name`` (one module run twice with
    different arguments).
    """

    name: str
    full: tuple = ()
    quick: tuple = ()
    timeout: float = 900.0
    module: str = None


BENCHMARKS = (
    Benchmark("wire_crypto", timeout=300),
    Benchmark("transport_engine", quick=("--megabytes", "8"), timeout=600),
    Benchmark("daemon_stream", quick=("--megabytes", "20")),
    Benchmark("event_stream", quick=("--events", "2000")),
    Benchmark("registry_load", quick=("--nodes", "100000", "--seconds", "1"), timeout=1800),
    Benchmark("dashboard", quick=("--repeat", "10")),
    Benchmark("registry_million", ("--nodes", "100000,1000000", "--postgresql", ""),
              ("--nodes", "100000,300000", "--seconds", "1", "--postgresql", ""), timeout=3600,
              module="registry_load"),
    Benchmark("dashboard_million", ("--nodes", "1000000"), ("--nodes", "300000", "--repeat", "10"),
              timeout=1800, module="dashboard"),
    Benchmark("cli_latency", quick=("--runs", "10"), timeout=300),
    Benchmark("gateway", quick=("--megabytes", "20"), timeout=600),
    Benchmark("pg_async", quick=("--requests", "1000", "--rounds", "1"), timeout=900),
)


@dataclass(frozen=True)
class Figure:
    """One row of the table.

    ``key`` is a figure name in a benchmark that prints a JSON list of
    ``{"figure", "value"}``, or a path of keys and indexes into one that
    prints a JSON object.  ``baseline`` is ``(label, key)`` in the same
    benchmark's output.  ``expect`` is ``(key, value)`` the output must hold
    for the figure to mean what its label says (e.g. the directory size it was measured at).
    """

    label: str
    benchmark: str
    key: object
    unit: str
    baseline: tuple = None
    at_least: float = None
    at_most: float = None
    ratio_at_least: float = None
    ratio_at_most: float = None
    expect: tuple = None

    @property
    def target(self):
        parts = []
        if self.at_least is not None:
            parts.append(f">= {format_value(self.at_least, self.unit)}")
        if self.at_most is not None:
            parts.append(f"<= {format_value(self.at_most, self.unit)}")
        if self.ratio_at_least is not None:
            parts.append(f">= {self.ratio_at_least:.2f} x baseline")
        if self.ratio_at_most is not None:
            parts.append(f"<= {self.ratio_at_most:.2f} x baseline")
        return ", ".join(parts)

    def met(self, value, ratio):
        """True or False against the target, None when there is none."""
        checks = []
        if self.at_least is not None:
            checks.append(value >= self.at_least)
        if self.at_most is not None:
            checks.append(value <= self.at_most)
        if self.ratio_at_least is not None:
            checks.append(ratio is not None and ratio >= self.ratio_at_least)
        if self.ratio_at_most is not None:
            checks.append(ratio is not None and ratio <= self.ratio_at_most)
        return all(checks) if checks else None


# The stream targets are judged against what daemon_stream calls the ceiling: 1024-byte payloads,
# a segment's size across a network.  Daemons on one host send 32 KiB segments, whose ceiling is
# far higher; the SDK's share of it is shown too.
CEILING = ("1 KiB ceiling", "raw encrypted UDP, one way (ceiling)")
LOCAL_CEILING = ("32 KiB ceiling", "raw encrypted UDP, one way, 32768-byte payloads")
INTERPRETER = ("python -c pass", "python -c pass (interpreter start), p50")
AT_100K = (("sizes", -1, "nodes"), 100_000)
SEARCH = "/api/nodes?tag=gpu&online=1&sort=polo-desc&page=100"
DIRECT_STREAM = ("direct SDK stream", "stream via SDK, one way (direct)")
AMP_ROUND_TRIP_P50 = ("in AMP boxes", "64-byte round trip on an open stream in AMP boxes, p50")
AMP_ROUND_TRIP_P99 = ("in AMP boxes", "64-byte round trip on an open stream in AMP boxes, p99")
IDLE_RSS = ("idle RSS", "daemon idle RSS (alpha)")
IMPORT_REACTOR = ("import reactor", "bare import twisted.internet.reactor, median")

PG_THREADS = ("threads (the store's way)", ("threads-group", "requests_per_second"))

FIGURES = (
    Figure("raw encrypted UDP one way, 1 KiB payloads", "daemon_stream", CEILING[1], "MB/s"),
    Figure("raw encrypted UDP one way, 32 KiB payloads", "daemon_stream", LOCAL_CEILING[1], "MB/s"),
    Figure("stream via SDK, one way", "daemon_stream", "stream via SDK, one way", "MB/s",
           baseline=CEILING, at_least=80, ratio_at_least=0.5),
    Figure("stream via SDK, share of 32 KiB ceiling", "daemon_stream", "stream via SDK, one way", "MB/s",
           baseline=LOCAL_CEILING),
    Figure("stream via SDK, 1 KiB segments", "daemon_stream", "stream via SDK, one way, 1024-byte segments", "MB/s",
           baseline=CEILING, at_least=80, ratio_at_least=0.6),
    Figure("stream via SDK, 1 KiB segments, 2% loss", "daemon_stream",
           "stream via SDK, one way, 1024-byte segments, 2% loss", "MB/s", baseline=CEILING, ratio_at_least=0.3),
    Figure("pilotctl bench, send rate", "daemon_stream", "pilotctl bench (echo), send rate", "MB/s",
           baseline=CEILING, at_least=80, ratio_at_least=0.5),
    Figure("pilotctl bench, echo round trip", "daemon_stream", "pilotctl bench (echo), round trip", "MB/s",
           baseline=CEILING),
    Figure("64 B round trip, open stream, p50", "daemon_stream", "64-byte round trip on an open stream, p50", "ms",
           baseline=AMP_ROUND_TRIP_P50, at_most=0.2),
    Figure("64 B round trip, open stream, p99", "daemon_stream", "64-byte round trip on an open stream, p99", "ms",
           baseline=AMP_ROUND_TRIP_P99, at_most=1),
    Figure("pilotctl ping (new connection), p50", "daemon_stream", "pilotctl ping (new connection each), p50", "ms",
           at_most=5),
    Figure("daemon idle RSS", "daemon_stream", "daemon idle RSS (alpha)", "MB", at_most=60),
    Figure("daemon RSS after the run", "daemon_stream", "daemon RSS after the run (alpha)", "MB",
           baseline=IDLE_RSS, ratio_at_most=1.15),
    Figure("daemon start to ready", "daemon_stream", "daemon start to ready, median", "s",
           baseline=IMPORT_REACTOR, at_most=1, ratio_at_most=1.3),
    Figure("events 64 B, 1 publisher -> 1 subscriber", "event_stream", "events delivered/s, 64 B to 1 subscriber",
           "ev/s", at_least=45_000),
    Figure("events 64 B, 1 -> 10 subscribers (sum)", "event_stream", "events delivered/s, 64 B to 10 subscribers",
           "ev/s"),
    Figure("events 1 KiB, 1 -> 1 subscriber", "event_stream", "events delivered/s, 1024 B to 1 subscriber", "ev/s"),
    Figure("event publish-to-deliver, p50", "event_stream", "publish-to-deliver latency, p50", "ms", at_most=0.5),
    Figure("event publish-to-deliver, p99", "event_stream", "publish-to-deliver latency, p99", "ms"),
    Figure("registry 100k nodes: lookups/s", "registry_load", ("sizes", -1, "lookup", "per_second"), "/s",
           at_least=20_000, expect=AT_100K),
    Figure("registry 100k nodes: heartbeats/s", "registry_load", ("sizes", -1, "heartbeat", "per_second"), "/s",
           at_least=5_000, expect=AT_100K),
    Figure("registry 100k nodes: registrations/s", "registry_load", ("sizes", -1, "register", "per_second"), "/s",
           expect=AT_100K),
    Figure("dashboard 100k nodes: tag search, first", "dashboard", f"GET {SEARCH}, first", "ms", at_most=50,
           expect=("directory size", 100_000)),
    Figure("dashboard 100k nodes: same search again", "dashboard", f"GET {SEARCH}, median", "ms",
           expect=("directory size", 100_000)),
    Figure("dashboard 100k nodes: search after a heartbeat, max", "dashboard",
           f"GET {SEARCH}, first after a heartbeat, max", "ms", at_most=50, expect=("directory size", 100_000)),
    Figure("dashboard 100k nodes: search after a registration, max", "dashboard",
           f"GET {SEARCH}, first after a registration, max", "ms", at_most=50,
           expect=("directory size", 100_000)),
    Figure("dashboard uncached query, indexed", "dashboard", "uncached directory query, indexed", "ms",
           baseline=("scan-and-sort", "uncached directory query, scan-and-sort")),
    Figure("registry 1M nodes (300k with --quick): lookups/s", "registry_million", ("sizes", -1, "lookup", "per_second"), "/s",
           baseline=("at 100k", ("sizes", 0, "lookup", "per_second")), at_least=60_000),
    Figure("registry 1M nodes (300k with --quick): heartbeats/s", "registry_million", ("sizes", -1, "heartbeat", "per_second"), "/s",
           baseline=("at 100k", ("sizes", 0, "heartbeat", "per_second")), at_least=60_000),
    Figure("registry 1M nodes (300k with --quick): registrations/s", "registry_million", ("sizes", -1, "register", "per_second"), "/s",
           baseline=("at 100k", ("sizes", 0, "register", "per_second"))),
    Figure("registry 1M nodes (300k with --quick): heartbeat p99 while registering", "registry_million",
           ("sizes", -1, "heartbeat_while_registering", "p99_ms"), "ms",
           baseline=("idle", ("heartbeat_idle", "p99_ms")), at_most=20),
    Figure("registry 1M nodes (300k with --quick): heartbeat max while registering", "registry_million",
           ("sizes", -1, "heartbeat_while_registering", "max_ms"), "ms",
           baseline=("idle", ("heartbeat_idle", "max_ms"))),
    Figure("registry 1M nodes (300k with --quick): RSS", "registry_million", ("sizes", -1, "rss_mib"), "MiB",
           baseline=("idle", ("rss_idle_mib",)), at_most=400),
    Figure("registry RSS per 100k nodes", "registry_million", ("rss_per_100k_nodes_mib",), "MiB", at_most=40),
    Figure("registry 1M nodes (300k with --quick): start from its store", "registry_million", ("restart", "seconds"), "s",
           baseline=("empty store", ("restart", "empty_store_seconds")), at_most=10),
    Figure("dashboard 1M nodes (300k with --quick): tag search, first", "dashboard_million", f"GET {SEARCH}, first", "ms", at_most=50),
    Figure("dashboard 1M nodes (300k with --quick): search after a heartbeat, max", "dashboard_million",
           f"GET {SEARCH}, first after a heartbeat, max", "ms", at_most=50),
    Figure("dashboard 1M nodes (300k with --quick): search after a registration, max", "dashboard_million",
           f"GET {SEARCH}, first after a registration, max", "ms", at_most=50),
    Figure("pilotctl info --json, p50", "cli_latency", "pilotctl info --json, p50", "ms",
           baseline=INTERPRETER, at_most=60, ratio_at_most=1.8),
    Figure("pilotctl slowest daemon command, p50", "cli_latency", "slowest daemon command, p50", "ms",
           baseline=INTERPRETER, at_most=100),
    Figure("pilotctl context --json, p50", "cli_latency", "pilotctl context --json (no daemon), p50", "ms",
           baseline=INTERPRETER),
    Figure("pilotctl info --json, CPU per start, p50", "cli_latency", "pilotctl info --json, CPU per start, p50",
           "ms", baseline=("python -c pass", "python -c pass (interpreter start), CPU per start, p50")),
    Figure("tunnel seal+open, 1234 B packet", "wire_crypto", "PILS seal+open, 1234 B packet", "us",
           baseline=("bare AES-GCM", "bare AESGCM seal+open, 1234 B (baseline)")),
    Figure("stream engine, no loss", "transport_engine", ("results", 0, "mb_per_cpu_second"), "MB/CPU s",
           expect=(("results", 0, "loss"), 0.0)),
    Figure("stream engine, 5% loss", "transport_engine", ("results", 1, "mb_per_cpu_second"), "MB/CPU s",
           expect=(("results", 1, "loss"), 0.05)),
    Figure("gateway: TCP client to an agent", "gateway", "TCP through the gateway to an agent", "MB/s",
           baseline=DIRECT_STREAM),
    Figure("gateway: agent to TCP client", "gateway", "agent through the gateway to TCP", "MB/s",
           baseline=DIRECT_STREAM),
    Figure("PostgreSQL writes/s, threads, group commit", "pg_async", PG_THREADS[1], "/s"),
    Figure("PostgreSQL writes/s, asyncio, group commit", "pg_async", ("asyncio-group", "requests_per_second"),
           "/s", baseline=PG_THREADS),
)


class FigureError(Exception):
    """A benchmark's output lacks a figure read here, or measured it under other conditions.

    Benchmarks are edited on their own; this names what changed instead of
    showing a wrong figure.
    """


def _where(key):
    return key if isinstance(key, str) else "/".join(map(str, key))


def lookup(document, key, benchmark):
    """The value under ``key`` (a figure name or a path) in a benchmark's output; FigureError otherwise."""
    if isinstance(key, str):
        for row in document if isinstance(document, list) else ():
            if isinstance(row, dict) and row.get("figure") == key:
                return row["value"]
        raise FigureError(f"{benchmark} printed no figure named {key!r}")
    value = document
    for part in key:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            raise FigureError(f"{benchmark} printed nothing at {_where(key)}") from None
    return value


@dataclass
class Row:
    """A figure as measured: what the table shows and the JSON copy keeps (``error`` instead of a value)."""

    figure: str
    unit: str
    value: float = None
    baseline: float = None
    baseline_label: str = None
    ratio: float = None
    target: str = ""
    met: bool = None
    error: str = None


def evaluate(figure, outcomes):
    """The row of ``figure`` given ``{benchmark: parsed output, or the Exception it failed with}``."""
    row = Row(figure.label, figure.unit, target=figure.target)
    outcome = outcomes.get(figure.benchmark)
    if outcome is None or isinstance(outcome, Exception):
        row.error = f"{figure.benchmark}: {outcome or 'not run'}"
        return row
    try:
        row.value = lookup(outcome, figure.key, figure.benchmark)
        if figure.baseline:
            row.baseline_label = figure.baseline[0]
            row.baseline = lookup(outcome, figure.baseline[1], figure.benchmark)
            row.ratio = row.value / row.baseline if row.baseline else None
        if figure.expect:
            key, wanted = figure.expect
            found = lookup(outcome, key, figure.benchmark)
            if found != wanted:
                raise FigureError(f"{figure.benchmark} printed {_where(key)} = {found}, not {wanted}")
    except FigureError as error:
        row.error = str(error)
        return row
    row.met = figure.met(row.value, row.ratio)
    return row


def format_value(value, unit):
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


HEADER = ("figure", "value", "baseline", "ratio", "target", "met?")


def cells(row):
    if row.error:
        return (row.figure, "ERROR", "", "", row.target, "error")
    baseline = f"{row.baseline_label} {format_value(row.baseline, row.unit)}" if row.baseline is not None else ""
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}" if row.ratio >= 0.1 else f"{row.ratio:.2g}"
    met = {True: "yes", False: "NO", None: ""}[row.met]
    return (row.figure, format_value(row.value, row.unit), baseline, ratio, row.target, met)


def render(rows):
    """The table, then one line per error."""
    lines = [HEADER] + [cells(row) for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(HEADER))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    errors = [row for row in rows if row.error]
    if errors:
        text.append("")
        text += [f"error: {row.figure}: {row.error}" for row in errors]
    return "\n".join(text)


def machine():
    """Cores, CPU model, Python, OS and the load average before the run: what the figures were measured on.

    The load average says whether something else was using the cores, which
    every absolute figure depends on.
    """
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model or "unknown CPU",
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "system": f"{platform.system()} {platform.machine()}", "load": round(os.getloadavg()[0], 2)}


def header_line(info, date, quick):
    return (f"pilotnet benchmarks, {date}: {info['cores']} cores ({info['cpu']}), {info['python']}, "
            f"{info['system']}, load average {info['load']:.2f}{', --quick' if quick else ''}")


def run_benchmark(benchmark, quick):
    """``(parsed --json output or the Exception it failed with, seconds taken)``.

    The benchmark gets its own process group, so a timeout also ends the
    daemons and load processes it started.
    """
    command = [sys.executable, "-m", f"benchmarks.{benchmark.module or benchmark.name}",
               *(benchmark.quick if quick else benchmark.full), "--json"]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=benchmark.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return RuntimeError(f"timed out after {benchmark.timeout:.0f} s"), time.monotonic() - started
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        last = (err.strip().splitlines() or ["no output on stderr"])[-1]
        return RuntimeError(f"exit status {process.returncode}: {last}"), elapsed
    try:
        return json.loads(out), elapsed
    except ValueError:
        return RuntimeError("its output is not JSON"), elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--quick", action="store_true", help="smaller runs: a few minutes in all")
    args = parser.parse_args()
    info = machine()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    outcomes, seconds = {}, {}
    for number, benchmark in enumerate(BENCHMARKS, 1):
        print(f"[{number}/{len(BENCHMARKS)}] {benchmark.name} ...", end=" ", file=sys.stderr, flush=True)
        outcomes[benchmark.name], seconds[benchmark.name] = run_benchmark(benchmark, args.quick)
        failed = isinstance(outcomes[benchmark.name], Exception)
        print(f"{'FAILED' if failed else 'done'} in {seconds[benchmark.name]:.0f} s", file=sys.stderr)
    rows = [evaluate(figure, outcomes) for figure in FIGURES]
    print(header_line(info, date, args.quick))
    print(render(rows))
    if args.json:
        document = {
            "date": date, "machine": info, "quick": args.quick, "rows": [asdict(row) for row in rows],
            "benchmarks": {name: {"seconds": round(seconds[name], 1),
                                  **({"error": str(outcome)} if isinstance(outcome, Exception) else
                                     {"output": outcome})}
                           for name, outcome in outcomes.items()},
        }
        with open(args.json, "w") as file:
            json.dump(document, file, indent=2)
            file.write("\n")
    sys.exit(1 if any(row.error for row in rows) else 0)


if __name__ == "__main__":
    main()
