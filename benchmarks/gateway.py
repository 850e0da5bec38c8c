"""The gateway's throughput next to a direct SDK stream between the same two daemons, in one run.

    python -m benchmarks.gateway [--megabytes 40] [--json]

Starts a rendezvous and daemons alpha and beta (every port 0), and a real
``twistd pilot-gateway`` process on alpha mapping beta on a loopback subnet
(127.77.0.0/16: no aliases, no root).  Then, one way, the same amount each:

- the baseline: an SDK stream from alpha to beta (a client writes, another reads);
- through the gateway: a plain TCP client writes to beta's mapped IP, the
  gateway bridges it to a Pilot stream, and an SDK client on beta reads it;
- the other way: beta's SDK client writes, the TCP client reads.

The ratio of the gateway's figure to the direct one is what to compare
across runs: it is the cost of the extra hop (TCP in, a control socket each
way) on this machine.
"""

import argparse
import os
import socket
import time

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from benchmarks import positive_int
from benchmarks.daemon_stream import LocalNetwork, one_way_throughput, report, start_pair, write_all
from pilotnet.driver.client import connect
from pilotnet.gateway import control
from pilotnet.gateway.paths import control_path

SUBNET = "127.77.0.0/16"
MAPPED_IP = "127.77.0.1"
BENCH_PORT = 5002
CHUNK = 60 * 1024


def free_tcp_port(host):
    """A port free on ``host`` right now (the gateway binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Counting(Protocol):
    """The TCP end: counts what arrives; writes ``total`` bytes when asked, as a streaming producer would."""

    def __init__(self, total):
        self.total = total
        self.received = 0
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.received += len(data)
        if self.received >= self.total and not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.errback(RuntimeError(f"TCP connection ended after {self.received} bytes"))


async def start_gateway(network, tcp_port):
    alpha = network.daemons["alpha"]
    network.spawn("pilot-gateway", "--home", alpha["home"], "--socket", alpha["socket"], "--subnet", SUBNET,
                  "--ports", str(tcp_port), "beta", MAPPED_IP)
    path = control_path(alpha["socket"])

    async def mapped():
        try:
            status = (await control.call(network.reactor, path, control.Status))["status"]
        except Exception:
            return False
        return bool(status["mappings"])

    await network.wait_for(mapped, "the gateway to map beta")


async def through_gateway(reactor, network, tcp_port, megabytes, upload):
    """MB/s through the gateway: TCP -> beta (``upload``) or beta -> TCP."""
    total = megabytes * 1024 * 1024
    beta = await connect(reactor, network.daemons["beta"]["socket"])
    listener = await beta.listen(tcp_port)
    tcp = Counting(total if not upload else 0)
    await connectProtocol(TCP4ClientEndpoint(reactor, MAPPED_IP, tcp_port), tcp)
    incoming = await listener.accept()
    chunk = os.urandom(CHUNK)
    started = time.perf_counter()
    if upload:
        class Feed:
            sent = 0

            def resumeProducing(self):
                piece = chunk[: total - self.sent]
                if not piece:
                    tcp.transport.unregisterProducer()
                    return
                self.sent += len(piece)
                tcp.transport.write(piece)

            def stopProducing(self):
                pass

        tcp.transport.registerProducer(Feed(), False)
        received = 0
        while received < total:
            data = await incoming.read()
            if not data:
                raise RuntimeError(f"stream ended after {received} bytes")
            received += len(data)
    else:
        writing = defer.ensureDeferred(write_all(incoming, chunk, total))
        await tcp.done
        await writing
    elapsed = time.perf_counter() - started
    tcp.transport.loseConnection()
    await incoming.close()
    await listener.close()
    beta.close()
    return total / elapsed / 1e6


async def run(reactor, megabytes, as_json):
    rows = []
    network = LocalNetwork(reactor)
    try:
        await start_pair(network)
        tcp_port = free_tcp_port(MAPPED_IP)
        await start_gateway(network, tcp_port)
        direct = await one_way_throughput(reactor, network, megabytes)
        rows.append(("stream via SDK, one way (direct)", direct, "MB/s", None))
        upload = await through_gateway(reactor, network, tcp_port, megabytes, upload=True)
        rows.append(("TCP through the gateway to an agent", upload, "MB/s", ("ratio to direct", upload / direct)))
        download = await through_gateway(reactor, network, tcp_port, megabytes, upload=False)
        rows.append(("agent through the gateway to TCP", download, "MB/s", ("ratio to direct", download / direct)))
    finally:
        network.stop()
    report(rows, as_json)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=positive_int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args.megabytes, args.json)))


if __name__ == "__main__":
    main()
