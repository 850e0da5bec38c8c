"""A four-stage workflow over the event stream, with branching: ingest, analyse, handle, report.

::

    ingest    publishes pipeline.stage1.output          {"id", "value"} per item
    analyse   pipeline.stage1.output -> pipeline.stage2.result.normal | .anomaly
    handle    pipeline.stage2.result.* -> pipeline.<id>.complete (archived or escalated)
    report    pipeline.*.complete -> one line per finished item

Each stage is its own agent on any daemon of a trusted group (the daemons
carry the events; nothing else is deployed)::

    python examples/workflow_pipeline.py report --count 5
    python examples/workflow_pipeline.py handle
    python examples/workflow_pipeline.py analyse
    python examples/workflow_pipeline.py ingest --values 12,97,40,99,3

Start the subscribers first: events have no history.  ``--count N`` makes a
stage stop after N events; ``--threshold`` sets what ``analyse`` calls an
anomaly.
"""

import argparse
import json
import sys

from pilotnet.driver import blocking
from pilotnet.errors import PilotError


def ingest(events, options):
    for number, value in enumerate(options.values.split(","), 1):
        events.publish("pipeline.stage1.output", json.dumps({"id": f"item{number}", "value": float(value)}))
        print(f"ingested item{number} value={float(value):g}", flush=True)


def stage(events, pattern, name, options, handle):
    """Run ``handle(event)`` for each event matching ``pattern``, until ``--count`` events."""
    with events.subscribe(pattern) as subscription:
        print(f"{name} ready", flush=True)
        for seen, event in enumerate(subscription, 1):
            handle(event.topic, json.loads(event.data))
            if seen == options.count:
                return


def analyse(events, options):
    def classify(topic, item):
        branch = "anomaly" if item["value"] > options.threshold else "normal"
        events.publish(f"pipeline.stage2.result.{branch}", json.dumps(item))
        print(f"analysed {item['id']}: {branch}", flush=True)
    stage(events, "pipeline.stage1.output", "analyse", options, classify)


def handle(events, options):
    def act(topic, item):
        outcome = "escalated" if topic.endswith(".anomaly") else "archived"
        events.publish(f"pipeline.{item['id']}.complete", json.dumps(dict(item, outcome=outcome)))
        print(f"handled {item['id']}: {outcome}", flush=True)
    stage(events, "pipeline.stage2.result.*", "handle", options, act)


def report(events, options):
    def show(topic, item):
        print(f"REPORT {item['id']} value={item['value']:g} {item['outcome']}", flush=True)
    stage(events, "pipeline.*.complete", "report", options, show)


STAGES = {"ingest": ingest, "analyse": analyse, "handle": handle, "report": report}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
    parser.add_argument("--threshold", type=float, default=90.0, help="values above this are anomalies")
    parser.add_argument("--values", default="12,97,40,99,3", help="what ingest publishes")
    options = parser.parse_args(argv)
    with blocking.connect() as daemon:
        STAGES[options.stage](daemon.open_event_stream(), options)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except PilotError as error:
        sys.exit(f"error: {error.message}" + (f"\nhint:  {error.hint}" if error.hint else ""))
    except KeyboardInterrupt:
        pass
