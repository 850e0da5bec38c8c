"""The registry's own costs at a million nodes, in one process: CPU per request, bytes per node, stalls.

    python -m benchmarks.registry_inprocess [--nodes 1000000] [--memory] [--json]

``benchmarks.registry_load`` measures a registry process from client
processes: on a shared machine its rates and latencies move with everybody
else's load.  This one fills a directory through the handlers (unsigned
registrations of random keys, as a Go daemon sends them) and measures what
the machine's load changes least:

* CPU time per lookup and per heartbeat (a repeated legacy signature, as a
  Go daemon sends it) through :class:`~pilotnet.registry.server.RegistryProtocol`
  with 4 requests per read: framing, decoding, dispatch, the handler,
  encoding and the write (to a transport that keeps nothing), without the
  reactor and the socket calls;
* with ``--memory``, the bytes each node keeps (``tracemalloc``, about three
  times slower to fill), by the line that allocated them;
* the longest reactor turn spent acknowledging the registrations of one
  store transaction (960 registrations, as from the load benchmark's
  connections, committed together to a SQLite store).
"""

import argparse
import base64
import json
import os
import random
import struct
import sys
import tempfile
import time
import tracemalloc
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from pilotnet.crypto.identity import Identity
from pilotnet.ratelimit import RateLimiter, TokenBucket
from pilotnet.registry.challenges import sign_request
from pilotnet.registry.directory import Directory
from pilotnet.registry.handlers import Registry
from pilotnet.registry.server import RegistryFactory, RegistryProtocol, RegistryServer
from pilotnet.registry.store import RegistryStore

START = 1_700_000_000.0
DEPTH = 4
SAMPLE = 1000
REQUESTS = 200_000
CONNECTIONS = 960
_LENGTH = struct.Struct(">I")


def frame(request: dict) -> bytes:
    body = json.dumps(request, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


class _Sink:
    """A transport that counts what is written and keeps none of it."""

    connected = True

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def abortConnection(self) -> None:
        pass


class _Peer:
    host = "127.0.0.1"

    def __init__(self, port: int) -> None:
        self.port = port


def registry(clock: Clock, store: RegistryStore | None = None) -> RegistryServer:
    directory = Directory(started=clock.seconds())
    unlimited = RateLimiter(burst=1e12, window=60.0)
    return RegistryServer(Registry(directory, register_limiter=unlimited), clock, store)


def registration(rng: random.Random) -> dict:
    key = base64.b64encode(rng.randbytes(32)).decode()
    return {"type": "register", "public_key": key, "listen_addr": "127.0.0.1:4000"}


def fill(server: RegistryServer, count: int, now: float) -> None:
    """Register ``count`` nodes through the handlers, each at its own time (as a reactor's clock gives)."""
    handlers, directory = server.registry, server.registry.directory
    rng = random.Random(1)
    for number in range(count):
        handlers.handle(registration(rng), ("127.0.0.1", 5000), now + number * 1e-5)
        if number % 1000 == 999:
            directory.take_changes()
    directory.take_changes()


def connection(server: RegistryServer) -> tuple[RegistryProtocol, _Sink]:
    protocol = RegistryFactory(server, max_per_ip=10 ** 6).buildProtocol(_Peer(1))
    sink = _Sink()
    protocol.makeConnection(sink)
    # The per-connection rate limits are not what is measured.
    protocol._soft = TokenBucket(10 ** 12, 10 ** 12)
    protocol._hard = TokenBucket(10 ** 12, 10 ** 12)
    return protocol, sink


def requests(server: RegistryServer, kind: str) -> list[bytes]:
    """``SAMPLE`` lookups of random nodes, or heartbeats of random nodes given keys we hold."""
    rng = random.Random(kind)
    directory = server.registry.directory
    ids = rng.sample(list(directory.nodes), SAMPLE)
    if kind == "lookup":
        return [frame({"type": "lookup", "node_id": node_id}) for node_id in ids]
    frames = []
    for number, node_id in enumerate(ids):
        identity = Identity.from_seed(number.to_bytes(32, "big"))
        directory.rekey(directory.nodes[node_id], identity.public_key_b64)
        frames.append(frame(sign_request(identity, {"type": "heartbeat", "node_id": node_id})))
    directory.take_changes()
    return frames


def cpu_per_request(server: RegistryServer, kind: str, total: int = REQUESTS) -> float:
    """Microseconds of CPU per request of ``kind``, ``DEPTH`` requests per read."""
    frames = requests(server, kind)
    reads = [b"".join(frames[i:i + DEPTH]) for i in range(0, len(frames), DEPTH)]
    protocol, sink = connection(server)
    for read in reads:  # once untimed: the heartbeats' signatures are verified the first time
        protocol.dataReceived(read)
    rounds = max(1, total // len(frames))
    started = time.process_time()
    for _ in range(rounds):
        for read in reads:
            protocol.dataReceived(read)
    spent = time.process_time() - started
    server.registry.directory.take_seen()
    assert sink.writes >= rounds * len(reads), "replies missing"
    return spent * 1e6 / (rounds * len(frames))


def bytes_per_node(count: int) -> dict:
    """What ``count`` registered nodes keep, by ``tracemalloc``, and the lines that allocated most."""
    clock = Clock()
    clock.advance(START)
    server = registry(clock)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fill(server, count, START)
    kept = tracemalloc.get_traced_memory()[0] - before
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    top = [{"where": str(stat.traceback[0]), "bytes_per_node": round(stat.size / count, 1)}
           for stat in snapshot.statistics("lineno")[:6]]
    return {"bytes_per_node": round(kept / count, 1), "by_line": top}


class _HeldWriter:
    """Runs a store's commits only when told, as the writer thread would, later."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], object], Deferred]] = []

    def __call__(self, work: Callable[[], object]) -> Deferred:
        done: Deferred = Deferred()
        self.jobs.append((work, done))
        return done


def longest_acknowledgement_ms(rounds: int = 3) -> float:
    """The longest reactor turn acknowledging ``CONNECTIONS`` registrations committed together."""
    clock, writer = Clock(), _HeldWriter()
    clock.advance(START)
    path = os.path.join(tempfile.mkdtemp(prefix="pilotnet-inprocess-"), "registry.db")
    store = RegistryStore(path, run=writer, call_later=clock.callLater)
    server = registry(clock, store)
    factory = RegistryFactory(server, max_per_ip=10 ** 6)
    turns: list[float] = []
    acknowledge = store._acknowledge

    def timed() -> None:
        started = time.process_time()
        acknowledge()
        turns.append(time.process_time() - started)

    store._acknowledge = timed
    rng = random.Random(2)
    try:
        for _ in range(rounds):
            for port in range(CONNECTIONS):
                protocol = factory.buildProtocol(_Peer(port))
                protocol.makeConnection(_Sink())
                protocol.dataReceived(frame(registration(rng)))
            while writer.jobs:
                for _ in range(CONNECTIONS):  # the write turns queued the rest
                    clock.advance(0)
                work, done = writer.jobs.pop(0)
                done.callback(work())
            for _ in range(CONNECTIONS):
                clock.advance(0)
    finally:
        store.close()
    return max(turns) * 1000


def measure(count: int, memory: bool) -> dict:
    result: dict = {"nodes": count}
    clock = Clock()
    clock.advance(START)
    server = registry(clock)
    started = time.process_time()
    fill(server, count, START)
    result["register_cpu_us"] = round((time.process_time() - started) * 1e6 / count, 1)
    for kind in ("lookup", "heartbeat"):
        result[f"{kind}_cpu_us"] = round(min(cpu_per_request(server, kind) for _ in range(3)), 2)
    del server
    result["longest_acknowledgement_ms"] = round(longest_acknowledgement_ms(), 2)
    if memory:
        result.update(bytes_per_node(count))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--memory", action="store_true",
                        help="also fill again under tracemalloc for the bytes per node")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    result = measure(options.nodes, options.memory)
    if options.json:
        json.dump(result, sys.stdout)
        print()
        return
    print(f"{result['nodes']:,} nodes, in one process (CPU time; {DEPTH} requests per read)")
    print(f"  per request: register {result['register_cpu_us']} µs (the handler alone), "
          f"lookup {result['lookup_cpu_us']} µs, heartbeat {result['heartbeat_cpu_us']} µs")
    print(f"  longest turn acknowledging {CONNECTIONS} committed registrations: "
          f"{result['longest_acknowledgement_ms']} ms")
    if memory := result.get("bytes_per_node"):
        print(f"  bytes per node: {memory}")
        for line in result["by_line"]:
            print(f"    {line['bytes_per_node']:7.1f}  {line['where']}")


if __name__ == "__main__":
    main()
