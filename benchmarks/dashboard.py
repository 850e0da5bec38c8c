"""Dashboard latency with a large directory: /api/stats and /api/nodes?tag=... at 100,000 nodes.

    python -m benchmarks.dashboard [--nodes 100000] [--repeat 50] [--json]

Fills a registry through its own request handlers (registrations, then tags,
visibility and task flags set with the admin token), then serves the Klein app
through treq's in-memory transport: the full twisted.web + Klein + Jinja2 path
of one request, without socket noise.  Each path is timed the first time it is
asked and as the median (and p95) of ``--repeat`` repeats, once the dashboard
and its directory index are built and, as the twistd plugins do then, the
loaded state is frozen out of garbage collections; the index build itself (once,
at start-up; the figure keeps its old name "snapshot build") is printed
separately.  Then the tag search is timed as
the first request after each of ``--repeat`` directory changes (a registration;
a heartbeat that moves the node's address, one clock second later so online
status is re-checked too), as a busy registry sees it, and next to the indexed
directory query the same query done as a scan-and-sort over every node,
measured in the same run.  First requests and those after changes also
show their CPU time (on a shared machine the wall time is mostly waiting for a
core).  ``--json`` prints the same figures as a JSON list of
``{"figure", "value", "unit"}`` instead (times in ms).
"""

import argparse
import base64
import gc
import json
import os
import statistics
import time

from treq.testing import StubTreq
from twisted.internet.task import Clock

from pilotnet.dashboard.query import PAGE_SIZE, NodeQuery
from pilotnet.dashboard.service import Dashboard
from pilotnet.registry.handlers import Registry
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.server import RegistryServer
from pilotnet.registry.tap import freeze_loaded_state

ADMIN = "benchmark-admin"
PEER = ("192.0.2.1", 4000)
SEARCH = "/api/nodes?tag=gpu&online=1&sort=polo-desc&page=100"
QUERIES = [
    "/api/stats?summary=1",
    "/api/stats",
    "/api/nodes",
    "/api/nodes?tag=gpu",
    "/api/nodes?tag=%23team-42",
    SEARCH,
    "/api/nodes?tag=nothing-has-this",
    "/api/nodes?tasks=1&sort=trust-desc",
    "/",
]


def register(registry, i, now):
    """Register one more node; its ID."""
    key = base64.b64encode(os.urandom(32)).decode()
    reply = registry.handle({"type": "register", "public_key": key,
                             "listen_addr": "192.0.2.1:4000",
                             "version": "1.9.0" if i % 3 else "1.8.2"}, PEER, now)
    return reply["node_id"]


def fill(registry, count, now):
    for i in range(count):
        node_id = register(registry, i, now)
        admin = {"node_id": node_id, "admin_token": ADMIN}
        registry.handle({"type": "set_tags", "tags": [f"fleet-{i % 10}",
                         "gpu" if i % 3 == 0 else "cpu", f"team-{i % 1000}"], **admin}, PEER, now)
        registry.handle({"type": "set_visibility", "public": i % 2 == 0, **admin}, PEER, now)
        if i % 17 == 0:
            registry.handle({"type": "set_task_exec", "enabled": True, **admin}, PEER, now)
        node = registry.directory.nodes[node_id]
        node.polo_score = (i * 7919) % 200 - 50
    for i in range(1, count, 50):
        registry.directory.consent(i, i + 1)
        registry.directory.consent(i + 1, i)


def timed(action, repeat):
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def fetch(client, path):
    response = client.get("http://polo.test" + path)
    client.flush()
    body = response.result.content()
    client.flush()
    assert response.result.code == 200, path
    return body.result


def first_after_changes(client, server, clock, repeat):
    """Median and worst time of the tag search asked first after each of ``repeat`` changes."""
    registry = server.registry
    nodes = registry.directory.nodes

    def registration(n):
        register(registry, n, clock.seconds())

    def heartbeat(n):
        clock.advance(1)
        node = nodes[1 + n * 7919 % len(nodes)]
        node.real_addr = f"192.0.2.{n % 250 + 1}:4000"
        registry.directory.save_node(node)
        registry.directory.touch(node, clock.seconds())

    figures = {}
    for name, change in (("registration", registration), ("heartbeat", heartbeat)):
        samples, cpu = [], []
        for n in range(repeat):
            change(n)
            server.commit()
            started, started_cpu = time.perf_counter(), time.process_time()
            fetch(client, SEARCH)
            samples.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        figures[name] = (statistics.median(samples), max(samples), statistics.median(cpu), max(cpu))
    return figures


def scan_and_sort(index, query):
    """The directory query without indexes: filter every row, sort the matches."""
    rows = [r for r in index.rows.values()
            if (not query.tag or any(query.tag in t for t in r.tags))
            and (not query.online or r.online) and (not query.tasks or r.task_exec)]
    rows.sort(key=lambda r: (-r.polo_score, r.id))
    return rows[(query.page - 1) * PAGE_SIZE:query.page * PAGE_SIZE]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    figures = []

    def figure(name, seconds):
        figures.append({"figure": name, "value": round(1000 * seconds, 3), "unit": "ms"})

    def say(text):
        if not options.json:
            print(text)

    clock = Clock()
    clock.advance(1_800_000_000)
    registry = Registry(admin_token=ADMIN, register_limiter=RateLimiter(burst=10**9, window=60.0))
    started = time.perf_counter()
    fill(registry, options.nodes, clock.seconds())
    figures.append({"figure": "directory size", "value": options.nodes, "unit": "nodes"})
    say(f"filled {options.nodes} nodes in {time.perf_counter() - started:.1f} s")
    server = RegistryServer(registry, clock)
    server.commit()  # the fill's changes, as the registry commits them while serving
    steps = []

    def step_done():
        gc.freeze()  # as under twistd (pilotnet.dashboard.service.serve_dashboard)
        steps.append(time.perf_counter())

    started = time.perf_counter()
    dashboard = Dashboard(server, clock, freeze=step_done)
    steps.append(time.perf_counter())
    freeze_loaded_state()  # as the twistd plugins do once the service is built
    steps.append(time.perf_counter())
    dashboard.startService()
    clock.advance(0)  # every step of the build, as reactor turns would run them
    build = steps[-1] - started - (steps[1] - steps[0])
    longest = max(b - a for a, b in zip(steps[1:], steps[2:]))
    client = StubTreq(dashboard.site().resource)

    index = dashboard.index()
    figure("snapshot build", build)
    figure("index build, longest step", longest)
    say(f"index build (once, at start-up): {1000 * build:.0f} ms in {len(steps) - 2} steps, "
        f"longest {1000 * longest:.1f} ms")
    for path in QUERIES:
        first, first_cpu = time.perf_counter(), time.process_time()
        size = len(fetch(client, path))
        first, first_cpu = time.perf_counter() - first, time.process_time() - first_cpu
        median, p95 = timed(lambda: fetch(client, path), options.repeat)
        figure(f"GET {path}, first", first)
        figure(f"GET {path}, first, CPU", first_cpu)
        figure(f"GET {path}, median", median)
        figure(f"GET {path}, p95", p95)
        say(f"{path:55s} first {1000 * first:7.2f} ms (CPU {1000 * first_cpu:7.2f})  "
            f"median {1000 * median:7.2f} ms  "
            f"p95 {1000 * p95:7.2f} ms  ({size} bytes)")

    for name, (median, worst, cpu_median, cpu_worst) in first_after_changes(
            client, server, clock, options.repeat).items():
        figure(f"GET {SEARCH}, first after a {name}, median", median)
        figure(f"GET {SEARCH}, first after a {name}, max", worst)
        figure(f"GET {SEARCH}, first after a {name}, CPU median", cpu_median)
        figure(f"GET {SEARCH}, first after a {name}, CPU max", cpu_worst)
        say(f"{SEARCH} first after a {name}: median {1000 * median:.2f} ms, "
            f"max {1000 * worst:.2f} ms (CPU median {1000 * cpu_median:.2f} ms, "
            f"max {1000 * cpu_worst:.2f} ms)")

    # Uncached: a different tag each time (sort orders already built, as after any first view).
    queries = iter([NodeQuery(tag=f"team-{n}", online=True, sort="polo-desc")
                    for n in range(100, 100 + options.repeat)])
    indexed, _ = timed(lambda: index.select(next(queries)), options.repeat)
    query = NodeQuery(tag="team-7", online=True, sort="polo-desc")
    naive, _ = timed(lambda: scan_and_sort(index, query), max(3, options.repeat // 10))
    assert [r.id for r in index.select(query).rows] == [r.id for r in scan_and_sort(index, query)]
    figure("uncached directory query, indexed", indexed)
    figure("uncached directory query, scan-and-sort", naive)
    say(f"uncached directory query tag=team-N&online=1&sort=polo-desc: indexed "
        f"{1000 * indexed:.2f} ms, scan-and-sort {1000 * naive:.1f} ms ({naive / indexed:.0f}x)")
    if options.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
