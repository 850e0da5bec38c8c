"""A monitoring pipeline with nothing to deploy but pilot daemons: publishers, an aggregator, an alerter.

Each role is its own agent, talking only to its own daemon; the daemons carry
events between trusted peers (``pilotctl handshake`` / ``approve``)::

    python examples/monitoring_pipeline.py cpu                 # publishes metrics.cpu
    python examples/monitoring_pipeline.py memory              # publishes metrics.memory
    python examples/monitoring_pipeline.py aggregator          # metrics.* -> averages, alerts.<metric>
    python examples/monitoring_pipeline.py alerter             # prints alerts.*

Run them against ``tools/start-local-network`` (set ``PILOT_HOME`` or
``PILOT_SOCKET`` to pick a daemon).  ``--values 10,95`` replaces the measured
samples (the load average, the share of memory in use) with fixed ones, and
``--count N`` makes a role stop after N events.
"""

import argparse
import json
import os
import sys
import threading

from pilotnet.driver import blocking
from pilotnet.errors import PilotError

THRESHOLD = {"cpu": 80.0, "memory": 90.0}


def cpu_percent():
    """The one-minute load average as a share of the CPUs, in percent."""
    return round(100.0 * os.getloadavg()[0] / (os.cpu_count() or 1), 1)


def memory_percent():
    fields = {}
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0])
    return round(100.0 * (1 - fields["MemAvailable"] / fields["MemTotal"]), 1)


def publish(daemon, metric, measure, options):
    events = daemon.open_event_stream()
    values = [float(v) for v in options.values.split(",")] if options.values else None
    count = len(values) if values else options.count
    stop = threading.Event()
    for n in range(count):
        value = values[n] if values else measure()
        events.publish(f"metrics.{metric}", json.dumps({"metric": metric, "value": value}))
        print(f"published metrics.{metric} {value}", flush=True)
        if not values and n + 1 < count:
            stop.wait(options.interval)


def aggregate(daemon, options):
    """Running averages per metric; an ``alerts.<metric>`` event whenever a sample crosses its threshold."""
    events = daemon.open_event_stream()
    totals = {}
    with events.subscribe("metrics.*") as samples:
        print("aggregator ready", flush=True)
        for seen, event in enumerate(samples, 1):
            sample = json.loads(event.data)
            metric, value = sample["metric"], float(sample["value"])
            count, total = totals.get(metric, (0, 0.0))
            totals[metric] = count + 1, total + value
            print(f"{event.topic} value={value:g} avg={(total + value) / (count + 1):.1f}", flush=True)
            if value > THRESHOLD.get(metric, 100.0):
                events.publish(f"alerts.{metric}", json.dumps({"metric": metric, "value": value,
                                                               "threshold": THRESHOLD[metric]}))
            if seen == options.count:
                return


def alert(daemon, options):
    with daemon.open_event_stream().subscribe("alerts.*") as alerts:
        print("alerter ready", flush=True)
        for seen, event in enumerate(alerts, 1):
            detail = json.loads(event.data)
            print(f"ALERT {detail['metric']} at {detail['value']:g} (threshold {detail['threshold']:g})", flush=True)
            if seen == options.count:
                return


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["cpu", "memory", "aggregator", "alerter"])
    parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--values", help="comma-separated samples to publish instead of measuring")
    options = parser.parse_args(argv)
    if options.role in ("cpu", "memory") and not options.count and not options.values:
        options.count = sys.maxsize
    with blocking.connect() as daemon:
        if options.role == "cpu":
            publish(daemon, "cpu", cpu_percent, options)
        elif options.role == "memory":
            publish(daemon, "memory", memory_percent, options)
        elif options.role == "aggregator":
            aggregate(daemon, options)
        else:
            alert(daemon, options)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except PilotError as error:
        sys.exit(f"error: {error.message}" + (f"\nhint:  {error.hint}" if error.hint else ""))
    except KeyboardInterrupt:
        pass
