"""Registry load: requests per second at 10k and 100k nodes, memory, and reactor stalls.

    python -m benchmarks.registry_load [--nodes 10000,100000] [--seconds 3] [--json]

Starts ``twistd pilot-registry`` with a SQLite store (port 0, temporary
directory) and drives it from client *processes*, so the figures are the
server's, not a client's.  Every request is prepared (and signed) before its
phase starts.  Each connection keeps one request in flight and stays under the
registry's per-connection soft rate (100 requests/s), like many daemons do,
so throughput comes from many connections, not from pipelining.

For each directory size it measures registrations/s (each one committed to
SQLite before its reply), then lookups/s, heartbeats/s (signature checked) and
resolves/s (signature checked, visibility gate) for a few seconds each, and
the server's resident memory.  A probe process heartbeats at a steady pace
throughout the registrations: its latency percentiles, next to the idle ones,
show whether database work stalls the reactor.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import sign_request

TWISTD = "from twisted.scripts.twistd import run; run()"
PER_CONNECTION_RATE = 90.0
PUBLIC_PER_WORKER = 100
PRESIGNED = 1000
PACED_REGISTRATIONS = 3000
PACED_CONNECTIONS = 6
_LENGTH = struct.Struct(">I")


def _frame(request):
    body = json.dumps(request, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


def _identity(index):
    return Identity.from_seed(index.to_bytes(32, "big"))


async def _drive(address, frames, connections, seconds=None, keep_replies=False):
    """Send ``frames`` over ``connections`` paced connections: all of them once, or
    round and round for ``seconds``.  Returns (done, errors, elapsed, replies)."""
    position, done, errors = 0, 0, 0
    replies = [None] * len(frames) if keep_replies else None
    started = time.perf_counter()
    deadline = None if seconds is None else started + seconds
    interval = 1.0 / PER_CONNECTION_RATE

    async def connection():
        nonlocal position, done, errors
        reader, writer = await asyncio.open_connection(*address)
        try:
            while True:
                if deadline is None and position >= len(frames):
                    return
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                index, position = position % len(frames), position + 1
                sent = time.perf_counter()
                writer.write(frames[index])
                (length,) = _LENGTH.unpack(await reader.readexactly(4))
                body = await reader.readexactly(length)
                done += 1
                if b'"type":"error"' in body:
                    errors += 1
                if keep_replies:
                    replies[index] = json.loads(body)
                rest = interval - (time.perf_counter() - sent)
                if rest > 0:
                    await asyncio.sleep(rest)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return done, errors, time.perf_counter() - started, replies


async def _probe(address, seconds, until=None, rate=50.0):
    """Heartbeat latencies (ms) of one node heartbeating ``rate`` times a second,
    for ``seconds`` or until the event ``until`` is set."""
    who = _identity(10**9)
    reader, writer = await asyncio.open_connection(*address)
    writer.write(_frame({"type": "register", "public_key": who.public_key_b64}))
    node_id = json.loads(await _read(reader))["node_id"]
    beat = _frame(sign_request(who, {"type": "heartbeat", "node_id": node_id}))
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and not (until is not None and until.is_set()):
        sent = time.perf_counter()
        writer.write(beat)
        await _read(reader)
        latencies.append((time.perf_counter() - sent) * 1000)
        await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - sent)))
    writer.close()
    return latencies


async def _read(reader):
    (length,) = _LENGTH.unpack(await reader.readexactly(4))
    return await reader.readexactly(length)


class _Worker:
    """One client process's nodes and prepared requests."""

    def __init__(self, address, connections):
        self.address = address
        self.connections = connections
        self.nodes = []  # (identity, node_id)

    def register(self, indexes, connections=None):
        identities = [_identity(i) for i in indexes]
        frames = [_frame({"type": "register", "public_key": who.public_key_b64,
                          "listen_addr": "127.0.0.1:4000"}) for who in identities]
        done, errors, elapsed, replies = asyncio.run(
            _drive(self.address, frames, connections or self.connections, keep_replies=True))
        fresh = [(who, reply["node_id"]) for who, reply in zip(identities, replies)
                 if reply and "node_id" in reply]
        if not self.nodes:
            public = [sign_request(who, {"type": "set_visibility", "node_id": node_id,
                                         "public": True})
                      for who, node_id in fresh[:PUBLIC_PER_WORKER]]
            asyncio.run(_drive(self.address, [_frame(r) for r in public], 4))
        self.nodes += fresh
        return {"done": done, "errors": errors, "elapsed": elapsed,
                "public": [node_id for _, node_id in self.nodes[:PUBLIC_PER_WORKER]]}

    def load(self, kind, seconds, highest_id, public_ids):
        rng = random.Random(kind)
        # Few enough that each repeats, as a node's heartbeat does every minute.
        sample = rng.sample(self.nodes, min(PRESIGNED, len(self.nodes)))
        if kind == "lookup":
            requests = [{"type": "lookup", "node_id": rng.randint(1, highest_id)}
                        for _ in range(PRESIGNED)]
        elif kind == "heartbeat":
            requests = [sign_request(who, {"type": "heartbeat", "node_id": node_id})
                        for who, node_id in sample]
        else:
            requests = [sign_request(who, {"type": "resolve", "requester_id": node_id,
                                           "node_id": rng.choice(public_ids)})
                        for who, node_id in sample]
        frames = [_frame(r) for r in requests]
        done, errors, elapsed, _ = asyncio.run(
            _drive(self.address, frames, self.connections, seconds))
        return {"done": done, "errors": errors, "elapsed": elapsed}


def _worker_main(pipe, address, connections, registering):
    worker = _Worker(address, connections)
    while True:
        command, *args = pipe.recv()
        if command == "stop":
            return
        if command == "probe":
            pipe.send(asyncio.run(_probe(address, *args)))
        elif command == "probe_registrations":
            pipe.send(asyncio.run(_probe(address, float("inf"), registering)))
        else:
            pipe.send(getattr(worker, command)(*args))


class Bench:
    def __init__(self, workers, connections):
        self.directory = tempfile.mkdtemp(prefix="pilotnet-registry-load-")
        self.workers_count = workers
        self.connections = connections
        self.server = None
        self.pipes = []
        self.processes = []

    def start(self):
        ports = os.path.join(self.directory, "ports.json")
        log = open(os.path.join(self.directory, "registry.log"), "wb")
        self.server = subprocess.Popen(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "pilot-registry",
             "--registry", "tcp:0:interface=127.0.0.1", "--store",
             os.path.join(self.directory, "registry.db"), "--registrations-per-minute",
             "1000000000", "--ports-file", ports], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while not os.path.exists(ports):
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"registry did not start; see {log.name}")
            time.sleep(0.05)
        with open(ports) as handle:
            bound = json.load(handle)["registry"]
        self.address = (bound["host"], bound["port"])
        context = multiprocessing.get_context("fork")
        self.registered = context.Event()
        for _ in range(self.workers_count + 1):  # the last one is the latency probe
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(
                child, self.address, self.connections, self.registered))
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def rss_mib(self):
        with open(f"/proc/{self.server.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def all_workers(self, *command):
        workers = self.pipes[:-1]
        for pipe in workers:
            pipe.send(command)
        return [pipe.recv() for pipe in workers]

    def probe(self, seconds):
        self.pipes[-1].send(("probe", seconds))
        return _latency(self.pipes[-1].recv())

    def register(self, indexes, workers=None, connections=None):
        """Registrations by the workers while the probe heartbeats; both results."""
        self.registered.clear()
        self.pipes[-1].send(("probe_registrations",))
        workers = self.pipes[:workers or -1]
        for pipe, part in zip(workers, [indexes[i::len(workers)] for i in range(len(workers))]):
            pipe.send(("register", part, connections))
        results = [pipe.recv() for pipe in workers]
        self.registered.set()
        return results, _latency(self.pipes[-1].recv())

    def stop(self):
        for pipe in self.pipes:
            pipe.send(("stop",))
        for process in self.processes:
            process.join(10)
        if self.server is not None:
            self.server.terminate()
            self.server.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _latency(samples):
    samples = sorted(samples)
    return {"samples": len(samples), "p50_ms": statistics.median(samples),
            "p99_ms": samples[int(len(samples) * 0.99) - 1], "max_ms": samples[-1]}


def _rate(results):
    done = sum(r["done"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    return {"per_second": done / elapsed, "requests": done,
            "errors": sum(r["errors"] for r in results)}


def run(sizes, seconds, workers, connections):
    bench = Bench(workers, connections)
    bench.start()
    try:
        figures = {"workers": workers, "connections": workers * connections,
                   "cpus": os.cpu_count(), "rss_idle_mib": bench.rss_mib(), "sizes": []}
        figures["heartbeat_idle"] = bench.probe(2.0)
        registered = 0
        for size in sizes:
            results, latency = bench.register(list(range(registered + 1, size + 1)))
            registered = size
            public_ids = sorted({i for r in results for i in r["public"]})
            row = {"nodes": size, "register": _rate(results),
                   "heartbeat_while_registering": latency}
            for kind in ("lookup", "heartbeat", "resolve"):
                row[kind] = _rate(bench.all_workers("load", kind, seconds, size, public_ids))
            row["rss_mib"] = bench.rss_mib()
            figures["sizes"].append(row)
        # Registrations well below capacity: any heartbeat delay now is the reactor
        # held up (by database or other blocking work), not requests queueing.
        results, latency = bench.register(
            list(range(registered + 1, registered + PACED_REGISTRATIONS + 1)), 1,
            PACED_CONNECTIONS)
        figures["paced_registrations"] = {"register": _rate(results),
                                          "heartbeat_while_registering": latency}
        biggest = figures["sizes"][-1]
        figures["rss_per_100k_nodes_mib"] = ((biggest["rss_mib"] - figures["rss_idle_mib"])
                                            * 100_000 / biggest["nodes"])
        return figures
    finally:
        bench.stop()


def _table(figures):
    lines = [f"registry load: {figures['workers']} client processes, "
             f"{figures['connections']} connections, {figures['cpus']} CPUs shared with the server",
             f"{'nodes':>8} {'register/s':>11} {'lookup/s':>9} {'heartbeat/s':>12} "
             f"{'resolve/s':>10} {'RSS MiB':>8}  heartbeat p50/p99/max ms while registering"]
    for row in figures["sizes"]:
        stall = row["heartbeat_while_registering"]
        lines.append(
            f"{row['nodes']:>8,} {row['register']['per_second']:>11,.0f} "
            f"{row['lookup']['per_second']:>9,.0f} {row['heartbeat']['per_second']:>12,.0f} "
            f"{row['resolve']['per_second']:>10,.0f} {row['rss_mib']:>8.0f}  "
            f"{stall['p50_ms']:.2f} / {stall['p99_ms']:.2f} / {stall['max_ms']:.1f}")
    idle = figures["heartbeat_idle"]
    lines.append(f"heartbeat latency idle p50/p99/max: {idle['p50_ms']:.2f} / "
                 f"{idle['p99_ms']:.2f} / {idle['max_ms']:.1f} ms")
    paced = figures["paced_registrations"]
    stall = paced["heartbeat_while_registering"]
    lines.append(f"heartbeat latency while {paced['register']['per_second']:,.0f} registrations/s "
                 f"commit (below capacity) p50/p99/max: {stall['p50_ms']:.2f} / "
                 f"{stall['p99_ms']:.2f} / {stall['max_ms']:.1f} ms")
    lines.append(f"RSS idle {figures['rss_idle_mib']:.0f} MiB; per 100k registered nodes "
                 f"{figures['rss_per_100k_nodes_mib']:.0f} MiB")
    errors = sum(row[k]["errors"] for row in figures["sizes"]
                 for k in ("register", "lookup", "heartbeat", "resolve"))
    if errors:
        lines.append(f"error replies: {errors}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="10000,100000",
                        help="directory sizes to measure at, ascending (comma separated)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each load phase")
    parser.add_argument("--workers", type=int, default=3, help="client processes")
    parser.add_argument("--connections", type=int, default=80,
                        help="connections per client process")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.nodes.split(",")]
    figures = run(sizes, arguments.seconds, arguments.workers, arguments.connections)
    print(json.dumps(figures, indent=2) if arguments.json else _table(figures))


if __name__ == "__main__":
    main()
