"""Two real daemons on loopback: throughput, round trips, memory and start-up, next to the ceiling.

    python -m benchmarks.daemon_stream [--megabytes 40] [--json] [--network-only]

Starts a rendezvous and two daemons (every port 0, homes in a temporary
directory), then measures in one run:

- one-way stream throughput through the SDK (a client on alpha writes, a
  client on beta reads), and ``pilotctl bench`` (echo round trip); the same
  stream with network-sized (1 KiB) segments, and with those across a relay
  that drops 2% of the datagrams (``benchmarks.lossy_relay``, a process of
  its own standing for the network);
- the raw encrypted-UDP ceiling of this machine (benchmarks.udp_ceiling),
  and the ratio of the SDK figure to it;
- 64-byte round trips on an open stream (p50, p99), on the stream's data
  socket and, as the baseline, in AMP boxes on the control socket; and
  ``pilotctl ping``;
- each daemon's resident memory while idle and after everything above, and
  its start-up time (process spawn until its control socket answers with a
  registered node) next to the bare ``import twisted.internet.reactor``.

``--network-only`` measures just the ceiling and the two 1 KiB-segment
streams (without and with loss): the figures loss recovery moves, taken
close together so that the machine's load weighs on them alike.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer, task

from benchmarks import positive_int, udp_ceiling
from pilotnet.daemon.heap import CHECK_INTERVAL as HEAP_CHECK_INTERVAL
from pilotnet.driver.client import connect

TWISTD = "from twisted.scripts.twistd import run; run()"
#: The daemon's default --local-mss: the segment size between daemons on one host.
LOCAL_MSS = 32768
READY_TIMEOUT = 30.0
#: How often start-up is polled: a small part of the figure.
READY_POLL = 0.005
IMPORT_REACTOR = "import twisted.internet.reactor"
#: The share of datagrams the relay of the loss case drops.
LOSS = 0.02
#: Seconds a daemon is left alone before its RSS after the run is read: two heap checks and a margin.
SETTLE = 2.5 * HEAP_CHECK_INTERVAL


class LocalNetwork:
    """A rendezvous and named daemons as subprocesses, all on ephemeral ports."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.directory = tempfile.mkdtemp(prefix="pilotnet-bench-")
        self.processes = []
        self.daemons = {}

    def spawn(self, *args, env=None):
        process = subprocess.Popen([sys.executable, "-c", TWISTD, "-n", "--pidfile=", *args],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=dict(os.environ, **(env or {})))
        self.processes.append(process)
        return process

    async def wait_for(self, check, what, poll=0.02):
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            result = check()
            if isinstance(result, defer.Deferred) or hasattr(result, "__await__"):
                result = await result
            if result:
                return result
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await task.deferLater(self.reactor, poll)

    async def start_rendezvous(self):
        ports_file = os.path.join(self.directory, "ports.json")
        self.spawn("pilot-rendezvous", "--registry", "tcp:0:interface=127.0.0.1", "--beacon", "127.0.0.1:0",
                   "--ports-file", ports_file)
        await self.wait_for(lambda: os.path.exists(ports_file), "the rendezvous")
        with open(ports_file) as handle:
            self.ports = json.load(handle)

    async def start_daemon(self, name, *options):
        home = os.path.join(self.directory, name)
        socket_path = os.path.join(home, "pilot.sock")
        started = time.monotonic()
        process = self.spawn("pilot-daemon", "--home", home, "--hostname", name, "--public",
                             "--listen", "127.0.0.1:0",
                             "--registry", f"127.0.0.1:{self.ports['registry']['port']}",
                             "--beacon", f"127.0.0.1:{self.ports['beacon']['port']}", *options)

        async def registered():
            if not os.path.exists(socket_path):
                return None
            try:
                daemon = await connect(self.reactor, socket_path, timeout=2.0)
            except Exception:
                return None
            info = await daemon.info()
            daemon.close()
            return info if info.get("node_id") else None

        info = await self.wait_for(registered, f"daemon {name}", READY_POLL)
        self.daemons[name] = {"home": home, "socket": socket_path, "pid": process.pid, "info": info,
                              "startup": time.monotonic() - started}
        return self.daemons[name]

    def rss_megabytes(self, name):
        with open(f"/proc/{self.daemons[name]['pid']}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def pilotctl(self, name, *args):
        daemon = self.daemons[name]
        env = dict(os.environ, PILOT_HOME=daemon["home"], PILOT_SOCKET=daemon["socket"])
        done = subprocess.run([sys.executable, "-m", "pilotnet.cli.main", *args, "--json"],
                              capture_output=True, text=True, env=env, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"pilotctl {' '.join(args)} failed: {done.stderr}")
        return json.loads(done.stdout)["data"]

    def stop_daemon(self, name):
        pid = self.daemons.pop(name)["pid"]
        process = next(p for p in self.processes if p.pid == pid)
        process.terminate()
        process.wait(timeout=10)

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)



async def write_all(stream, chunk, total):
    """Write ``total`` bytes of ``chunk`` (repeated) to ``stream``, waiting for each write to be taken."""
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        await stream.write(piece)
        sent += len(piece)

async def one_way_throughput(reactor, network, megabytes, source="alpha", destination="beta"):
    sender = await connect(reactor, network.daemons[source]["socket"])
    receiver = await connect(reactor, network.daemons[destination]["socket"])
    listener = await receiver.listen(5001)
    total = megabytes * 1024 * 1024
    stream = await sender.dial(destination, 5001)
    incoming = await listener.accept()
    chunk = os.urandom(60 * 1024)
    started = time.perf_counter()

    writing = defer.ensureDeferred(write_all(stream, chunk, total))
    received = 0
    while received < total:
        data = await incoming.read()
        if not data:
            raise RuntimeError(f"stream ended after {received} bytes")
        received += len(data)
    elapsed = time.perf_counter() - started
    await writing
    await stream.close()
    sender.close()
    receiver.close()
    return total / elapsed / 1e6


async def round_trips(reactor, network, count=1000, data_sockets=True):
    client = await connect(reactor, network.daemons["alpha"]["socket"], data_sockets=data_sockets)
    stream = await client.dial("beta", 7)
    message = b"x" * 64
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await stream.write(message)
        await stream.read_exactly(len(message))
        samples.append((time.perf_counter() - started) * 1000)
    await stream.close()
    client.close()
    return median_and_p99(samples)


async def lossy_throughput(reactor, network, megabytes, loss=LOSS, names=("epsilon", "zeta")):
    """One-way SDK throughput between two new daemons, 1 KiB segments, every datagram via a lossy relay.

    ``names``: the receiver, reached only through the relay, and the sender.
    Returns the MB/s, the share of datagrams the relay dropped on purpose and
    the datagrams the kernel dropped for want of buffer at the relay or at
    either daemon during the transfer (loss beyond what was asked; None
    where ``/proc/net/udp`` does not say).
    """
    receiver_name, sender_name = names
    relay = subprocess.Popen([sys.executable, "-m", "benchmarks.lossy_relay", "--loss", str(loss)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    network.processes.append(relay)
    relay_port = int(relay.stdout.readline())
    no_beacon = ("--local-mss", "0", "--beacon", "")
    receiver = await network.start_daemon(receiver_name, *no_beacon, "--endpoint", f"127.0.0.1:{relay_port}")
    relay.stdin.write(f"127.0.0.1 {receiver['info']['tunnel_port']}\n")
    relay.stdin.flush()
    sender = await network.start_daemon(sender_name, *no_beacon)
    ports = (relay_port, receiver["info"]["tunnel_port"], sender["info"]["tunnel_port"])
    drops_before = kernel_receive_drops(ports)
    rate = await one_way_throughput(reactor, network, megabytes, sender_name, receiver_name)
    drops_after = kernel_receive_drops(ports)
    relay.stdin.write("counts\n")
    relay.stdin.flush()
    counts = json.loads(relay.stdout.readline())
    dropped_share = counts["dropped"] / max(1, counts["dropped"] + counts["forwarded"])
    kernel_drops = None if drops_before is None else drops_after - drops_before + counts["send_failures"]
    return rate, dropped_share, kernel_drops


def kernel_receive_drops(ports):
    """Datagrams the kernel has dropped so far at the 127.0.0.1 UDP sockets bound to ``ports``, or None (not Linux)."""
    try:
        with open("/proc/net/udp") as table:
            lines = table.readlines()[1:]
    except OSError:
        return None
    wanted = {f"0100007F:{port:04X}" for port in ports}
    # Columns: slot, local address, remote address, ..., drops (the last).
    return sum(int(fields[-1]) for fields in map(str.split, lines) if fields[1] in wanted)


async def start_up_times(network, runs=5):
    """Medians of a daemon's start to ready and of the bare reactor import (spawn to exit), taking turns.

    One start is one sample of a figure that the machine's load moves a
    lot; alternating the two, each ``runs`` times, puts both under the same
    load.  Each daemon measured is stopped before the next import.
    """
    starts, imports = [], []
    for run in range(runs):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", IMPORT_REACTOR], check=True)
        imports.append(time.monotonic() - started)
        daemon = await network.start_daemon(f"start{run}")
        starts.append(daemon["startup"])
        network.stop_daemon(f"start{run}")
    return statistics.median(starts), statistics.median(imports)


def median_and_p99(samples):
    samples = sorted(samples)
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def start_pair(network, *options):
    """A rendezvous and daemons alpha and beta (``options``: extra pilot-daemon flags for both)."""
    await network.start_rendezvous()
    for name in ("alpha", "beta"):
        await network.start_daemon(name, *options)


async def network_streams(reactor, network, megabytes, rows, ceiling):
    """The 1 KiB-segment stream without and with loss, as ratios to the 1 KiB ``ceiling``."""
    # The segments a network path gets (--local-mss 0).
    for name in ("gamma", "delta"):
        await network.start_daemon(name, "--local-mss", "0")
    networked = await one_way_throughput(reactor, network, megabytes, "gamma", "delta")
    rows.append(("stream via SDK, one way, 1024-byte segments", networked, "MB/s",
                 ("ratio to ceiling", networked / ceiling)))
    # The same across a lossy network: epsilon is reached only through the relay (no beacon
    # tells anyone its real address), zeta has no beacon to fall back to either.
    lossy, dropped_share, lossy_kernel_drops = await lossy_throughput(reactor, network, max(1, megabytes // 2))
    # The relay is a hop of its own (a Python process on the same cores): the same path
    # without loss is what loss recovery can at best reach.
    relayed, _, relayed_kernel_drops = await lossy_throughput(reactor, network, max(1, megabytes // 2), 0.0,
                                                              ("eta", "theta"))
    rows.append(("stream via SDK, one way, 1024-byte segments, via the relay, no loss", relayed, "MB/s",
                 ("ratio to ceiling", relayed / ceiling)))
    rows.append((f"stream via SDK, one way, 1024-byte segments, {LOSS:.0%} loss", lossy, "MB/s",
                 ("ratio to ceiling", lossy / ceiling)))
    rows.append((f"{LOSS:.0%} loss stream, share of the same relay without loss", lossy / relayed, "", None))
    # The loss the figures carry: what the relay dropped on purpose, and what the kernel dropped besides.
    rows.append((f"{LOSS:.0%} loss relay, share of datagrams it dropped", dropped_share * 100, "%", None))
    for label, drops in (("no loss", relayed_kernel_drops), (f"{LOSS:.0%} loss", lossy_kernel_drops)):
        if drops is not None:
            rows.append((f"via the relay, {label}: datagrams dropped by the kernel", drops, "", None))


async def run(reactor, megabytes, as_json, network_only=False):
    rows = []
    network = LocalNetwork(reactor)
    try:
        if network_only:
            await network.start_rendezvous()
            ceiling, _ = udp_ceiling.measure(3.0)
            rows.append(("raw encrypted UDP, one way (ceiling)", ceiling, "MB/s", None))
            await network_streams(reactor, network, megabytes, rows, ceiling)
        else:
            await full_run(reactor, network, megabytes, rows)
    finally:
        network.stop()
    report(rows, as_json)


async def full_run(reactor, network, megabytes, rows):
    """Every figure of the module docstring."""
    await start_pair(network)
    await task.deferLater(reactor, 1.0)
    rows.append(("daemon idle RSS (alpha)", network.rss_megabytes("alpha"), "MB", None))
    startup, floor = await start_up_times(network)
    rows.append(("daemon start to ready, median", startup, "s", None))
    rows.append((f"bare {IMPORT_REACTOR}, median", floor, "s", None))

    # Two ceilings: 1024-byte payloads are what a stream sends across a network;
    # daemons on one host send LOCAL_MSS segments (pilotnet.daemon.paths).
    ceiling, _ = udp_ceiling.measure(3.0)
    local_ceiling, _ = udp_ceiling.measure(3.0, payload=LOCAL_MSS)
    sdk = await one_way_throughput(reactor, network, megabytes)
    rows.append(("raw encrypted UDP, one way (ceiling)", ceiling, "MB/s", None))
    rows.append((f"raw encrypted UDP, one way, {LOCAL_MSS}-byte payloads", local_ceiling, "MB/s", None))
    rows.append(("stream via SDK, one way", sdk, "MB/s", ("ratio to ceiling", sdk / ceiling)))
    rows.append(("stream via SDK, one way, share of the same-size ceiling", sdk / local_ceiling, "", None))
    bench = network.pilotctl("alpha", "bench", "beta", str(min(megabytes, 20)))
    rows.append(("pilotctl bench (echo), send rate", bench["send_mbps"], "MB/s", None))
    rows.append(("pilotctl bench (echo), round trip", bench["total_mbps"], "MB/s", None))
    p50, p99 = await round_trips(reactor, network)
    amp_p50, amp_p99 = await round_trips(reactor, network, data_sockets=False)
    rows.append(("64-byte round trip on an open stream, p50", p50, "ms", None))
    rows.append(("64-byte round trip on an open stream, p99", p99, "ms", None))
    rows.append(("64-byte round trip on an open stream in AMP boxes, p50", amp_p50, "ms", None))
    rows.append(("64-byte round trip on an open stream in AMP boxes, p99", amp_p99, "ms", None))
    ping = network.pilotctl("alpha", "ping", "beta", "--count", "10")
    rtts = sorted(r["rtt_ms"] for r in ping["results"] if "rtt_ms" in r)
    rows.append(("pilotctl ping (new connection each), p50", statistics.median(rtts), "ms", None))
    alpha_done = time.monotonic()
    await network_streams(reactor, network, megabytes, rows, ceiling)
    # Alpha's part ended with the ping; once it has been quiet for a while it has trimmed its heap.
    await task.deferLater(reactor, max(0.0, alpha_done + SETTLE - time.monotonic()))
    rows.append(("daemon RSS after the run (alpha)", network.rss_megabytes("alpha"), "MB", None))


def report(rows, as_json):
    if as_json:
        print(json.dumps([{"figure": name, "value": round(value, 3), "unit": unit,
                           **({"ratio_name": ratio[0], "ratio": round(ratio[1], 3)} if ratio else {})}
                          for name, value, unit, ratio in rows], indent=2))
        return
    width = max(len(name) for name, *_ in rows)
    for name, value, unit, ratio in rows:
        extra = f"   ({ratio[0]}: {ratio[1]:.2f})" if ratio else ""
        print(f"{name:<{width}}  {value:9.2f} {unit}{extra}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=positive_int, default=40)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--network-only", action="store_true",
                        help="only the 1 KiB ceiling and the 1 KiB-segment streams without and with loss")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args.megabytes, args.json, args.network_only)))


if __name__ == "__main__":
    main()
