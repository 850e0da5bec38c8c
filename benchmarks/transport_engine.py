"""Throughput of the stream engine itself: two engines joined in-process.

    python -m benchmarks.transport_engine [--megabytes 32] [--mss 1024] [--wire] [--json]

One engine sends, the other receives and consumes at once, over the simulated
link of :mod:`pilotnet.transport.simlink` (virtual clock, 5 ms one-way delay):
once perfect, once dropping 5% of packets each way.  Reported per CPU second
of this process (so the figures bound what the daemon can push through one
connection, before tunnel crypto and sockets): MB/s of payload delivered and
segments per second (data segments sent plus ACKs, both engines).  ``--wire``
also encodes and decodes every packet.  The machine is shared and noisy: each
figure is the best of a few repeats.
"""

import argparse
import json
import os
import time

from pilotnet.transport.config import StreamConfig
from pilotnet.transport.simlink import Impairment, SimLink
from pilotnet.transport.states import State

REPEATS = 3
CHUNK = 64 * 1024


def transfer(total, loss, mss, wire, seed):
    config = StreamConfig(mss=mss)
    link = SimLink(Impairment(loss=loss), config=config, seed=seed, wire=wire)
    link.open()
    link.run(lambda: link.a.state is State.ESTABLISHED and link.b is not None, 60)
    block = os.urandom(CHUNK)
    written = delivered = 0
    sink = link.received["b"]
    started = time.process_time()
    # Keep about 1 MiB queued, as a daemon draining a local socket would.
    while delivered < total:
        while written < total and link.a.send_buffered < 1 << 20:
            link.send("a", block)
            written += CHUNK
        if not link.step():
            raise RuntimeError("the transfer stalled")
        delivered += len(sink)
        sink.clear()
    cpu = time.process_time() - started
    segments = link.a.segments_sent + link.a.retransmissions + link.b.segments_received
    return cpu, segments, link.a.stats()


def measure(megabytes, loss, mss, wire):
    total = megabytes * 1 << 20
    best = None
    for repeat in range(REPEATS):
        cpu, segments, stats = transfer(total, loss, mss, wire, seed=repeat)
        if best is None or cpu < best[0]:
            best = (cpu, segments, stats)
    cpu, segments, stats = best
    return {
        "loss": loss,
        "megabytes": megabytes,
        "cpu_seconds": round(cpu, 3),
        "mb_per_cpu_second": round(megabytes / cpu, 1),
        "segments_per_cpu_second": round(segments / cpu),
        "retransmissions": stats["retransmissions"],
        "timeouts": stats["timeouts"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=32)
    parser.add_argument("--mss", type=int, default=1024)
    parser.add_argument("--wire", action="store_true", help="encode and decode every packet too")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(args.megabytes, loss, args.mss, args.wire) for loss in (0.0, 0.05)]
    if args.json:
        print(json.dumps({"mss": args.mss, "wire": args.wire, "results": results}, indent=2))
        return
    print(f"stream engine, MSS {args.mss}, {args.megabytes} MB per run{', with packet codec' if args.wire else ''}")
    for r in results:
        print(f"  link loss {r['loss']:4.0%}: {r['mb_per_cpu_second']:7.1f} MB/s of payload per CPU second, "
              f"{r['segments_per_cpu_second']:8d} segments/s  "
              f"({r['retransmissions']} retransmissions, {r['timeouts']} timeouts)")


if __name__ == "__main__":
    main()
