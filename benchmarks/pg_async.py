"""psycopg's asyncio API against the threads the PostgreSQL store uses, measured in one run.

    python -m benchmarks.pg_async [--requests 4000] [--concurrency 64] [--rounds 2] [--json]

The registry's PostgreSQL store (pilotnet/registry/pg_store.py) runs psycopg's
blocking API in threads: one writer thread commits whatever requests are
queued as one pipelined transaction (group commit).  The alternative is
psycopg's asyncio API, which from Twisted means the asyncio reactor.  Here the
same transactions are written four ways, each in a process of its own (the
asyncio reactor must be installed before anything imports the reactor) on a
database of its own, by one throwaway PostgreSQL server:

- ``threads-group``: the store's way: one connection in one writer thread
  (``deferToThreadPool``), the queued requests in one pipelined transaction;
- ``asyncio-group``: the same batching on one ``AsyncConnection``, on
  Twisted's asyncio reactor;
- ``threads-each`` / ``asyncio-each``: one transaction per request, over a
  pool of 4 connections (4 threads, or an ``AsyncConnectionPool``).

Each request writes what a registration writes: a node row over the version
it expects; each transaction then checks the versions in one query, takes the
next change ID, logs the change and notifies.  ``concurrency`` requests are in
flight at all times (the registry's clients keep many).  Figures per variant:
requests/s, CPU per request of the benchmark process (all its threads) and of
the database server, and the ratios to ``threads-group``.  The best of
``rounds`` rounds counts (the machine is shared).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

# Deferreds and failures only: neither imports the reactor, which a child picks first.
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = ("threads-group", "asyncio-group", "threads-each", "asyncio-each")
POOL_SIZE = 4
ATTRIBUTES = json.dumps({"real_addr": "203.0.113.7:4000", "public": False, "tags": ["gpu", "eu"],
                         "lan_addrs": ["10.0.0.7:4000"], "version": "0.9"})

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bench_nodes (id BIGINT PRIMARY KEY, attributes TEXT NOT NULL, "
    "version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bench_changes (id BIGINT PRIMARY KEY, entities TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bench_position (singleton INT PRIMARY KEY, last BIGINT NOT NULL)",
    "INSERT INTO bench_position VALUES (1, 0) ON CONFLICT (singleton) DO NOTHING",
)
UPSERT = ("INSERT INTO bench_nodes (id, attributes, version) VALUES (%s, %s, %s) "
          "ON CONFLICT (id) DO UPDATE SET attributes = excluded.attributes, version = excluded.version "
          "WHERE bench_nodes.version = %s")
VERIFY = ("SELECT count(*) FROM bench_nodes AS t, unnest(%s::BIGINT[], %s::BIGINT[]) AS c(n, v) "
          "WHERE t.id = c.n AND t.version = c.v")
NEXT_CHANGE = "UPDATE bench_position SET last = last + 1 WHERE singleton = 1 RETURNING last"
LOG_CHANGE = "INSERT INTO bench_changes (id, entities) VALUES (%s, %s)"
NOTIFY = "SELECT pg_notify('bench_changes', %s)"


def _statements(batch):
    """The writes of one transaction for ``batch`` (node IDs), before its three queries."""
    return [(UPSERT, (node_id, ATTRIBUTES, node_id, -1)) for node_id in batch]


def write_sync(conn, batch):
    with conn.transaction(), conn.pipeline():
        for statement, values in _statements(batch):
            conn.execute(statement, values)
        assert conn.execute(VERIFY, (batch, batch)).fetchone()[0] == len(batch)
        change = conn.execute(NEXT_CHANGE).fetchone()[0]
        conn.execute(LOG_CHANGE, (change, json.dumps(batch)))
        conn.execute(NOTIFY, (str(change),))


async def write_async(conn, batch):
    async with conn.transaction():
        async with conn.pipeline():
            for statement, values in _statements(batch):
                await conn.execute(statement, values)
            verified = await (await conn.execute(VERIFY, (batch, batch))).fetchone()
            assert verified[0] == len(batch)
            change = (await (await conn.execute(NEXT_CHANGE)).fetchone())[0]
            await conn.execute(LOG_CHANGE, (change, json.dumps(batch)))
            await conn.execute(NOTIFY, (str(change),))


class GroupCommit:
    """Requests queued while a transaction runs go together in the next one (as the store does)."""

    def __init__(self, run):
        self._run = run  # list of node IDs -> Deferred
        self._queue = []
        self._busy = False

    def submit(self, node_id):
        done = Deferred()
        self._queue.append((node_id, done))
        if not self._busy:
            self._next()
        return done

    def _next(self):
        if not self._queue:
            self._busy = False
            return
        self._busy = True
        batch, self._queue = self._queue, []

        def finished(result):
            for _, done in batch:
                if isinstance(result, Failure):
                    done.errback(result)
                else:
                    done.callback(None)
            self._next()

        self._run([node_id for node_id, _ in batch]).addBoth(finished)


def _threads(reactor, url, group):
    """``(submit(node_id) -> Deferred, close)`` writing through blocking psycopg in threads."""
    import psycopg
    from psycopg_pool import ConnectionPool
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool
    threads = ThreadPool(minthreads=1, maxthreads=1 if group else POOL_SIZE)
    threads.start()
    reactor.addSystemEventTrigger("during", "shutdown", threads.stop)
    if group:
        conn = psycopg.connect(url, autocommit=True)
        return (GroupCommit(lambda batch: deferToThreadPool(reactor, threads, write_sync, conn, batch)).submit,
                conn.close)
    pool = ConnectionPool(url, min_size=POOL_SIZE, max_size=POOL_SIZE, open=True,
                          kwargs={"autocommit": True})

    def one(node_id):
        with pool.connection() as conn:
            write_sync(conn, [node_id])

    return lambda node_id: deferToThreadPool(reactor, threads, one, node_id), pool.close


async def _asyncio(url, group):
    """``(submit(node_id) -> Deferred, close coroutine)`` writing through psycopg's asyncio API."""
    import asyncio
    import psycopg
    from psycopg_pool import AsyncConnectionPool
    if group:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        return GroupCommit(lambda batch: Deferred.fromFuture(
            asyncio.ensure_future(write_async(conn, batch)))).submit, conn.close
    pool = AsyncConnectionPool(url, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False,
                               kwargs={"autocommit": True})
    await pool.open()

    async def one(node_id):
        async with pool.connection() as conn:
            await write_async(conn, [node_id])

    return lambda node_id: Deferred.fromFuture(asyncio.ensure_future(one(node_id))), pool.close


def _load(submit, first, count, concurrency):
    """Keep ``concurrency`` writes in flight until ``count`` are done; a Deferred of the elapsed seconds."""
    finished = Deferred()
    state = {"next": first, "done": 0}
    started = time.perf_counter()

    def start_one():
        node_id = state["next"]
        state["next"] += 1
        submit(node_id).addCallbacks(completed, finished.errback)

    def completed(_):
        state["done"] += 1
        if state["done"] == count:
            finished.callback(time.perf_counter() - started)
        elif state["next"] < first + count:
            start_one()

    for _ in range(min(concurrency, count)):
        start_one()
    return finished


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_variant(variant, url, requests, concurrency, database_pid):
    """One variant in this process: its figures as a dict."""
    import asyncio
    if variant.startswith("asyncio"):
        from twisted.internet import asyncioreactor
        loop = asyncio.new_event_loop()
        # The reactor's loop must be the thread's current one too: psycopg's async
        # connect waits on the current loop, and would wait forever on another.
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    from twisted.internet import reactor
    from benchmarks.registry_load import database_cpu_seconds
    from twisted.internet.defer import ensureDeferred
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
    figures = {}

    async def measure():
        group = variant.endswith("group")
        if variant.startswith("asyncio"):
            submit, close = await Deferred.fromFuture(asyncio.ensure_future(_asyncio(url, group)))
        else:
            submit, close = _threads(reactor, url, group)
        await _load(submit, 1, concurrency * 4, concurrency)  # warm up
        cpu, database = _cpu(), database_cpu_seconds(database_pid)
        seconds = await _load(submit, concurrency * 4 + 1, requests, concurrency)
        figures.update(requests_per_second=requests / seconds,
                       cpu_us_per_request=(_cpu() - cpu) / requests * 1e6,
                       database_cpu_us_per_request=(database_cpu_seconds(database_pid) - database)
                       / requests * 1e6)
        closed = close()
        if closed is not None:  # the asyncio API's close is a coroutine
            await Deferred.fromFuture(asyncio.ensure_future(closed))

    def done(result):
        if isinstance(result, Failure):
            figures["error"] = str(result.value)
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(measure()).addBoth(done))
    reactor.run()
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="measured writes per variant")
    parser.add_argument("--concurrency", type=int, default=64, help="writes in flight at once")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the variants (best counts)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--database-pid", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.variant:  # a child: one variant, figures on stdout
        print(json.dumps(run_variant(arguments.variant, arguments.url, arguments.requests,
                                     arguments.concurrency, arguments.database_pid)))
        return
    from benchmarks.registry_load import _postgresql_runs

    def all_variants(url, _registries, database_pid):
        best = {}
        for number in range(arguments.rounds):
            for variant in VARIANTS:
                database = url.rsplit("/", 1)[0] + f"/{variant.replace('-', '_')}_{number}"
                _create_database(url, database.rsplit("/", 1)[1])
                output = subprocess.run(
                    [sys.executable, "-m", "benchmarks.pg_async", "--variant", variant, "--url", database,
                     "--requests", str(arguments.requests), "--concurrency", str(arguments.concurrency),
                     "--database-pid", str(database_pid)],
                    check=True, capture_output=True, text=True, cwd=ROOT).stdout
                figures = json.loads(output)
                if "error" in figures:
                    raise SystemExit(f"{variant}: {figures['error']}")
                if figures["requests_per_second"] > best.get(variant, {}).get("requests_per_second", 0):
                    best[variant] = figures
        return best

    runs = _postgresql_runs([1], all_variants)
    if not runs:
        raise SystemExit("no PostgreSQL server on this machine")
    results = runs[0]
    baseline = results["threads-group"]
    for figures in results.values():
        figures["ratio_requests_per_second"] = figures["requests_per_second"] / baseline["requests_per_second"]
        figures["ratio_cpu_per_request"] = figures["cpu_us_per_request"] / baseline["cpu_us_per_request"]
    if arguments.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'variant':<15} {'writes/s':>9} {'ratio':>6} {'CPU µs/write':>13} {'ratio':>6} {'database µs/write':>18}")
    for variant in VARIANTS:
        figures = results[variant]
        print(f"{variant:<15} {figures['requests_per_second']:>9,.0f} {figures['ratio_requests_per_second']:>6.2f} "
              f"{figures['cpu_us_per_request']:>13,.0f} {figures['ratio_cpu_per_request']:>6.2f} "
              f"{figures['database_cpu_us_per_request']:>18,.0f}")


def _create_database(url, name):
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
