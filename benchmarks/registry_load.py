"""Registry load: requests per second at 10k and 100k nodes, memory, and reactor stalls.

    python -m benchmarks.registry_load [--nodes 10000,100000] [--seconds 3] [--depth 4] [--json]

Starts ``twistd pilot-registry`` with a SQLite store (port 0, temporary
directory) and drives it from client *processes*, so the figures are the
server's, not a client's.  Every request is prepared (and signed) before its
phase starts, and the clients are plain asyncio protocols (no coroutine per
request), so they use a fraction of the CPU the server does; each phase
reports the CPU time per request of both sides.  Every connection stays under
the registry's per-connection soft rate (100 requests/s), so throughput comes
from many connections (960 by default, offering about 86,000 requests/s, more
than the server can answer).  In the load phases each connection sends
``--depth`` requests at once and waits for their replies (4 by default, as if
4 daemons shared a connection): the server then reads and writes once per 4
requests.  ``--depth 1`` keeps one request in flight per connection, like the
Go daemon's client, and measures the server with one read and one write per
request.

For each directory size it measures registrations/s (each one committed to
SQLite before its reply), then lookups/s, heartbeats/s (signature checked) and
resolves/s (signature checked, visibility gate) for a few seconds each, and
the server's resident memory.  A probe process heartbeats at a steady pace
throughout the registrations: its latency percentiles, next to the idle ones,
show whether database work stalls the reactor.  Last, the first registry is
stopped and started again on its store: the seconds from spawning it until it
answers (next to the same start from the empty store at the beginning of the
run) and its resident memory then.  ``--nodes 100000,1000000`` measures a
million nodes (about 15 minutes on 2 shared cores).
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
from pilotnet.registry.challenges import sign_fresh_request, sign_request

TWISTD = "from twisted.scripts.twistd import run; run()"
PER_CONNECTION_RATE = 90.0
PUBLIC_PER_WORKER = 100
PRESIGNED = 1000
PACED_REGISTRATIONS = 3000
PACED_CONNECTIONS = 6
CONNECTIONS = 320
DEPTH = 4
_LENGTH = struct.Struct(">I")


def _frame(request):
    body = json.dumps(request, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


def _identity(index):
    return Identity.from_seed(index.to_bytes(32, "big"))


class _Connection(asyncio.Protocol):
    """One client connection of a load phase, driven by callbacks (no coroutine per
    request, no ``readexactly``) so that the client processes stay cheap.

    It writes ``depth`` prepared frames at once, waits for their replies, and
    starts the next burst no sooner than its share of the per-connection rate
    allows.
    """

    def __init__(self, load):
        self.load = load
        self.buffer = bytearray()
        self.in_flight = []
        self.sent = 0.0

    def connection_made(self, transport):
        self.transport = transport

    def send(self):
        load = self.load
        indexes = load.take()
        if not indexes:
            self.transport.close()
            return
        self.in_flight = indexes
        self.sent = load.loop.time()
        frames = load.frames
        self.transport.write(b"".join([frames[i] for i in indexes]))

    def data_received(self, data):
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 4:
            (length,) = _LENGTH.unpack_from(buffer)
            if len(buffer) < 4 + length:
                break
            self.load.answered(self.in_flight.pop(0), buffer[4:4 + length])
            del buffer[:4 + length]
        if not self.in_flight:
            load = self.load
            due = self.sent + load.interval * load.depth
            if due > load.loop.time():
                load.loop.call_at(due, self.send)
            else:
                self.send()

    def connection_lost(self, exc):
        self.load.closed()


class _Load:
    """One phase on one client process: the prepared frames, who sends which, the counts."""

    def __init__(self, loop, frames, connections, seconds, keep_replies, depth):
        self.loop = loop
        self.frames = frames
        self.depth = depth
        self.seconds = seconds
        self.interval = 1.0 / PER_CONNECTION_RATE
        self.position = self.done = self.errors = 0
        self.replies = [None] * len(frames) if keep_replies else None
        self.deadline = None
        self.open = connections
        self.finished = loop.create_future()

    def start(self):
        if self.seconds is not None:
            self.deadline = self.loop.time() + self.seconds

    def take(self):
        """The frame indexes of the next burst; none once the phase is over."""
        if self.seconds is None:
            count = min(self.depth, len(self.frames) - self.position)
        else:
            count = self.depth if self.loop.time() < self.deadline else 0
        start, self.position = self.position, self.position + count
        return [i % len(self.frames) for i in range(start, start + count)]

    def answered(self, index, body):
        self.done += 1
        if b'"type":"error"' in body:
            self.errors += 1
        if self.replies is not None:
            self.replies[index] = json.loads(body)

    def closed(self):
        self.open -= 1
        if not self.open and not self.finished.done():
            self.finished.set_result(None)


async def _drive(addresses, frames, connections, seconds=None, keep_replies=False, depth=1,
                 together=None):
    """Send ``frames`` over ``connections`` paced connections, ``depth`` requests in
    flight on each: all of them once, or round and round for ``seconds``.  The
    connections go to the registries at ``addresses`` in turn.

    The clock starts once every connection is open and, with a ``together``
    barrier, once every client process is ready, so that their phases overlap.
    Returns (done, errors, started, ended, replies), the times from
    ``time.perf_counter`` (the same clock in every process on Linux)."""
    loop = asyncio.get_running_loop()
    load = _Load(loop, frames, connections, seconds, keep_replies, depth)
    # One at a time: hundreds of simultaneous connects overflow the server's accept
    # queue, and a connection caught in that stalls for seconds of TCP retransmission.
    opened = [(await loop.create_connection(lambda: _Connection(load),
                                            *addresses[number % len(addresses)]))[1]
              for number in range(connections)]
    if together is not None:
        together.wait()
    started = time.perf_counter()
    load.start()
    for connection in opened:
        connection.send()
    await load.finished
    return load.done, load.errors, started, time.perf_counter(), load.replies


async def _probe(address, seconds, until=None, rate=50.0):
    """Heartbeat latencies (ms) of one node heartbeating ``rate`` times a second,
    for ``seconds`` or until the event ``until`` is set."""
    who = _identity(10**9)
    reader, writer = await asyncio.open_connection(*address)
    # Signed, as our daemon registers: each phase's probe is a new connection, and the registry
    # refuses an unsigned re-registration of an online node's key from another address.
    writer.write(_frame(sign_fresh_request(who, {"type": "register", "public_key": who.public_key_b64},
                                           time.time())))
    reply = json.loads(await _read(reader))
    if "node_id" not in reply:
        raise RuntimeError(f"the probe's registration was refused: {reply}")
    node_id = reply["node_id"]
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

    def __init__(self, addresses, connections, together):
        self.addresses = addresses
        self.connections = connections
        self.together = together
        self.nodes = []  # (identity, node_id)

    def register(self, indexes, connections=None):
        identities = [_identity(i) for i in indexes]
        frames = [_frame({"type": "register", "public_key": who.public_key_b64,
                          "listen_addr": "127.0.0.1:4000"}) for who in identities]
        # Paced registrations (their own connection count) run on one process alone,
        # so only the full registrations wait for the others.
        done, errors, started, ended, replies = asyncio.run(_drive(
            self.addresses, frames, connections or self.connections, keep_replies=True,
            together=None if connections else self.together))
        fresh = [(who, reply["node_id"]) for who, reply in zip(identities, replies)
                 if reply and "node_id" in reply]
        if not self.nodes:
            public = [sign_fresh_request(who, {"type": "set_visibility", "node_id": node_id,
                                               "public": True}, time.time())
                      for who, node_id in fresh[:PUBLIC_PER_WORKER]]
            asyncio.run(_drive(self.addresses[:1], [_frame(r) for r in public], 4))
        self.nodes += fresh
        return {"done": done, "errors": errors, "started": started, "ended": ended,
                "public": [node_id for _, node_id in self.nodes[:PUBLIC_PER_WORKER]],
                "newest": [node_id for _, node_id in fresh[-1:]]}

    def load(self, kind, seconds, highest_id, public_ids, depth):
        rng = random.Random(kind)
        # Few enough that each repeats, as a node's heartbeat does every minute.
        sample = rng.sample(self.nodes, min(PRESIGNED, len(self.nodes)))
        if kind == "lookup":
            # Registered nodes (IDs from a shared database come in blocks, not 1..N),
            # asked of every registry, whichever one registered them.
            requests = [{"type": "lookup", "node_id": rng.choice(self.nodes)[1]}
                        for _ in range(PRESIGNED)]
        elif kind == "heartbeat":
            requests = [sign_request(who, {"type": "heartbeat", "node_id": node_id})
                        for who, node_id in sample]
        else:
            requests = [sign_request(who, {"type": "resolve", "requester_id": node_id,
                                           "node_id": rng.choice(public_ids)})
                        for who, node_id in sample]
        frames = [_frame(r) for r in requests]
        cpu = time.process_time()
        done, errors, started, ended, _ = asyncio.run(_drive(
            self.addresses, frames, self.connections, seconds, depth=depth,
            together=self.together))
        return {"done": done, "errors": errors, "started": started, "ended": ended,
                "cpu": time.process_time() - cpu}


def _worker_main(pipe, addresses, connections, registering, together):
    worker = _Worker(addresses, connections, together)
    address = addresses[0]
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
    """``registries`` registry processes on one store, client worker processes, a probe.

    ``store`` is ``None`` for a SQLite file in the temporary directory, else a
    PostgreSQL URL every registry shares; ``database_pid`` is that server's
    postmaster, whose CPU time (its backends' included) is reported too.
    """

    def __init__(self, workers, connections, store=None, registries=1, database_pid=None):
        self.directory = tempfile.mkdtemp(prefix="pilotnet-registry-load-")
        self.workers_count = workers
        self.connections = connections
        self.store = store or os.path.join(self.directory, "registry.db")
        self.registries = registries
        self.database_pid = database_pid
        self.servers = []
        self.pipes = []
        self.processes = []

    def _start_registry(self, number, append=True):
        ports = os.path.join(self.directory, f"ports-{number}.json")
        log = open(os.path.join(self.directory, f"registry-{number}.log"), "wb")
        server = subprocess.Popen(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "pilot-registry",
             "--registry", "tcp:0:interface=127.0.0.1", "--store", self.store,
             "--registrations-per-minute", "1000000000",
             "--max-connections-per-ip", str(self.workers_count * self.connections + 64),
             "--ports-file", ports], stdout=log, stderr=log)
        if append:
            self.servers.append(server)
        else:
            self.servers.insert(number, server)
        deadline = time.monotonic() + 300
        while not os.path.exists(ports):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"registry did not start; see {log.name}")
            time.sleep(0.05)
        with open(ports) as handle:
            bound = json.load(handle)["registry"]
        return bound["host"], bound["port"]

    def start(self):
        started = time.monotonic()
        self.addresses = [self._start_registry(0)]
        asyncio.run(_known(self.addresses[0], 1))
        # The baseline of the start from a full store: the same start from an empty one.
        self.empty_start_seconds = time.monotonic() - started
        self.addresses += [self._start_registry(number) for number in range(1, self.registries)]
        self._start_workers()

    def restart(self, node_id):
        """Stop the first registry and start it again on its store: seconds until it
        answers ``lookup`` for ``node_id``, and its resident memory then.

        The workers keep the old address, so this is the run's last phase.
        """
        server = self.servers.pop(0)
        server.terminate()
        server.wait(120)
        os.unlink(os.path.join(self.directory, "ports-0.json"))
        started = time.monotonic()
        address = self._start_registry(0, append=False)
        while not asyncio.run(_known(address, node_id)):
            time.sleep(0.01)
        return {"seconds": time.monotonic() - started, "rss_mib": self.rss_mib(),
                "empty_store_seconds": self.empty_start_seconds}

    def _start_workers(self):
        context = multiprocessing.get_context("fork")
        self.registered = context.Event()
        together = context.Barrier(self.workers_count)
        for _ in range(self.workers_count + 1):  # the last one is the latency probe
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(
                child, self.addresses, self.connections, self.registered, together))
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def rss_mib(self):
        """Resident memory of one registry process (each holds the whole directory)."""
        with open(f"/proc/{self.servers[0].pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self):
        """CPU time the registry processes have used (all their threads, user and system)."""
        return sum(_cpu_seconds(server.pid) for server in self.servers)

    def database_cpu_seconds(self):
        """CPU time of the database server and its backends (0 without one)."""
        if self.database_pid is None:
            return 0.0
        return database_cpu_seconds(self.database_pid)

    def converge(self, node_ids, timeout=120.0):
        """Seconds until every registry answers ``lookup`` for each of ``node_ids``."""
        started = time.monotonic()
        for address in self.addresses:
            for node_id in node_ids:
                while not asyncio.run(_known(address, node_id)):
                    if time.monotonic() - started > timeout:
                        raise SystemExit(f"registry {address} did not learn node {node_id}")
                    time.sleep(0.05)
        return time.monotonic() - started

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
        """Workers, then registries, then their directory: all of them, also after a worker has died."""
        try:
            for pipe in self.pipes:
                try:
                    pipe.send(("stop",))
                except (BrokenPipeError, EOFError):
                    pass  # that worker has failed already; its error is the run's error
            for process in self.processes:
                process.join(10)
                if process.is_alive():
                    process.terminate()
        finally:
            for server in self.servers:
                server.terminate()
                server.wait(10)
            shutil.rmtree(self.directory, ignore_errors=True)


def database_cpu_seconds(postmaster):
    """CPU time of a PostgreSQL server: the postmaster, its live backends and those it reaped."""
    total = _cpu_seconds(postmaster, children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                total += _cpu_seconds(int(entry))
    return total


def _cpu_seconds(pid, children=False):
    """User + system CPU of ``pid`` (and of its children it waited for, if asked)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


async def _known(address, node_id):
    reader, writer = await asyncio.open_connection(*address)
    writer.write(_frame({"type": "lookup", "node_id": node_id}))
    reply = json.loads(await _read(reader))
    writer.close()
    return reply.get("type") == "lookup_ok"


def _latency(samples):
    samples = sorted(samples)
    return {"samples": len(samples), "p50_ms": statistics.median(samples),
            "p99_ms": samples[int(len(samples) * 0.99) - 1], "max_ms": samples[-1]}


def _rate(results):
    done = sum(r["done"] for r in results)
    elapsed = max(r["ended"] for r in results) - min(r["started"] for r in results)
    figures = {"per_second": done / elapsed, "requests": done,
               "errors": sum(r["errors"] for r in results)}
    if all("cpu" in r for r in results):
        figures["client_cpu_us"] = sum(r["cpu"] for r in results) * 1e6 / max(1, done)
    return figures


def _costs(bench, row, measured):
    """Add the registries' and the database's CPU per request of ``row`` since ``measured``."""
    cpu, database = measured
    requests = max(1, row["requests"])
    row["server_cpu_us"] = (bench.cpu_seconds() - cpu) * 1e6 / requests
    row["database_cpu_us"] = (bench.database_cpu_seconds() - database) * 1e6 / requests


def run(sizes, seconds, workers, connections, depth=DEPTH, store=None, registries=1,
        database_pid=None):
    bench = Bench(workers, connections, store, registries, database_pid)
    bench.start()
    try:
        figures = {"workers": workers, "connections": workers * connections, "depth": depth,
                   "registries": registries, "cpus": os.cpu_count(),
                   "rss_idle_mib": bench.rss_mib(), "sizes": []}
        figures["heartbeat_idle"] = bench.probe(2.0)
        registered = 0
        for size in sizes:
            measured = bench.cpu_seconds(), bench.database_cpu_seconds()
            results, latency = bench.register(list(range(registered + 1, size + 1)))
            registered = size
            public_ids = sorted({i for r in results for i in r["public"]})
            row = {"nodes": size, "register": _rate(results),
                   "heartbeat_while_registering": latency}
            _costs(bench, row["register"], measured)
            # Every registry answers for the last registrations: how far the feed lagged.
            row["converged_seconds"] = bench.converge([i for r in results for i in r["newest"]])
            for kind in ("lookup", "heartbeat", "resolve"):
                measured = bench.cpu_seconds(), bench.database_cpu_seconds()
                row[kind] = _rate(bench.all_workers("load", kind, seconds, size, public_ids,
                                                       depth))
                _costs(bench, row[kind], measured)
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
        figures["restart"] = bench.restart(public_ids[0])
        figures["rss_per_100k_nodes_mib"] = ((biggest["rss_mib"] - figures["rss_idle_mib"])
                                            * 100_000 / biggest["nodes"])
        return figures
    finally:
        bench.stop()


def _table(figures):
    lines = [f"registry load: {figures['workers']} client processes, "
             f"{figures['connections']} connections, {figures['depth']} requests in flight on each, "
             f"{figures['cpus']} CPUs shared with the server",
             f"{'nodes':>8} {'register/s':>11} {'lookup/s':>9} {'heartbeat/s':>12} "
             f"{'resolve/s':>10} {'RSS MiB':>8}  heartbeat p50/p99/max ms while registering"]
    for row in figures["sizes"]:
        stall = row["heartbeat_while_registering"]
        lines.append(
            f"{row['nodes']:>8,} {row['register']['per_second']:>11,.0f} "
            f"{row['lookup']['per_second']:>9,.0f} {row['heartbeat']['per_second']:>12,.0f} "
            f"{row['resolve']['per_second']:>10,.0f} {row['rss_mib']:>8.0f}  "
            f"{stall['p50_ms']:.2f} / {stall['p99_ms']:.2f} / {stall['max_ms']:.1f}")
    biggest = figures["sizes"][-1]
    lines.append(f"CPU per request at {biggest['nodes']:,} nodes, server / clients: " + ", ".join(
        f"{kind} {biggest[kind]['server_cpu_us']:.0f} / {biggest[kind]['client_cpu_us']:.0f} µs"
        for kind in ("lookup", "heartbeat", "resolve")))
    idle = figures["heartbeat_idle"]
    lines.append(f"heartbeat latency idle p50/p99/max: {idle['p50_ms']:.2f} / "
                 f"{idle['p99_ms']:.2f} / {idle['max_ms']:.1f} ms")
    paced = figures["paced_registrations"]
    stall = paced["heartbeat_while_registering"]
    lines.append(f"heartbeat latency while {paced['register']['per_second']:,.0f} registrations/s "
                 f"commit (below capacity) p50/p99/max: {stall['p50_ms']:.2f} / "
                 f"{stall['p99_ms']:.2f} / {stall['max_ms']:.1f} ms")
    restart = figures["restart"]
    lines.append(f"start from the store to the first answer: {restart['seconds']:.2f} s "
                 f"(RSS then {restart['rss_mib']:.0f} MiB; from an empty store "
                 f"{restart['empty_store_seconds']:.2f} s)")
    lines.append(f"RSS idle {figures['rss_idle_mib']:.0f} MiB; per 100k registered nodes "
                 f"{figures['rss_per_100k_nodes_mib']:.0f} MiB")
    errors = sum(row[k]["errors"] for row in figures["sizes"]
                 for k in ("register", "lookup", "heartbeat", "resolve"))
    if errors:
        lines.append(f"error replies: {errors}")
    return "\n".join(lines)


def _summary(runs):
    """One line per store and registry count: rates and CPU per request, registries / database."""
    lines = ["", "store       regs  register/s  lookup/s  heartbeat/s  "
                 "CPU µs per request (registries + database): register, lookup, heartbeat; "
                 "feed caught up after registrations"]
    for name, figures in runs:
        row = figures["sizes"][-1]
        costs = ", ".join(f"{row[kind]['server_cpu_us']:.0f}+{row[kind]['database_cpu_us']:.0f}"
                          for kind in ("register", "lookup", "heartbeat"))
        lines.append(f"{name:<11} {figures['registries']:>4} {row['register']['per_second']:>11,.0f} "
                     f"{row['lookup']['per_second']:>9,.0f} {row['heartbeat']['per_second']:>12,.0f}  "
                     f"{costs}; {row['converged_seconds']:.2f} s")
    return "\n".join(lines)


def _postgresql_runs(counts, run_one):
    """``run_one(url, registries, pid)`` for each count, each on a new database of one server."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.registry.postgres import PostgresMissing, PostgresServer
    try:
        server = PostgresServer(max_connections=100)
    except PostgresMissing as missing:
        print(f"skipping PostgreSQL: {missing}", file=sys.stderr)
        return []
    try:
        _start_postgresql(server)
        return [run_one(server.create_database(f"load{count}"), count, server.process.pid)
                for count in counts]
    finally:
        _stop_postgresql(server)
        server.remove()


def _start_postgresql(server, timeout=30.0):
    """Start ``server`` and wait (this script has no reactor) until it accepts queries."""
    from tests.registry.postgres import START_ATTEMPTS, free_port
    for attempt in range(START_ATTEMPTS):
        server.spawn(server.port or free_port())
        deadline = time.monotonic() + timeout
        try:
            while not server.ready():
                if time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not accept connections in time")
                time.sleep(0.05)
            return
        except RuntimeError:
            _stop_postgresql(server)
            if attempt == START_ATTEMPTS - 1:
                raise
            server.port = 0


def _stop_postgresql(server):
    from tests.registry.postgres import STOP_GRACE, STOP_SIGNALS
    for name in STOP_SIGNALS:
        server.signal(name)
        try:
            server.process.wait(STOP_GRACE)
            return
        except (subprocess.TimeoutExpired, AttributeError):
            continue


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="10000,100000",
                        help="directory sizes to measure at, ascending (comma separated)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each load phase")
    parser.add_argument("--quick", action="store_true",
                        help="10,000 nodes and 1-second phases (overrides --nodes, --seconds)")
    parser.add_argument("--workers", type=int, default=3, help="client processes")
    parser.add_argument("--connections", type=int, default=CONNECTIONS,
                        help="connections per client process")
    parser.add_argument("--depth", type=int, default=DEPTH,
                        help="requests each connection sends at once in the load phases")
    parser.add_argument("--postgresql", default="1,2,3",
                        help="numbers of registries to run on one PostgreSQL database after the "
                             "SQLite run (comma separated; empty: SQLite only)")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.nodes, arguments.seconds = "10000", 1.0
    sizes = [int(size) for size in arguments.nodes.split(",")]

    def run_one(store=None, registries=1, database_pid=None):
        return run(sizes, arguments.seconds, arguments.workers, arguments.connections,
                   arguments.depth, store, registries, database_pid)

    figures = run_one()
    counts = [int(count) for count in arguments.postgresql.split(",") if count]
    figures["postgresql"] = _postgresql_runs(counts, run_one) if counts else []
    if arguments.json:
        print(json.dumps(figures, indent=2))
        return
    print(_table(figures))
    for shared in figures["postgresql"]:
        print(f"\n-- {shared['registries']} registries on one PostgreSQL database --")
        print(_table(shared))
    print(_summary([("sqlite", figures)] + [("postgresql", shared)
                                             for shared in figures["postgresql"]]))


if __name__ == "__main__":
    main()
