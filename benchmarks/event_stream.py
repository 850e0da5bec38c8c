"""Events across two real daemons: events/s from one publisher to 1 and 10 subscribers, and latency.

    python -m benchmarks.event_stream [--events 20000] [--json]

Starts a rendezvous and two daemons that trust each other (every port 0).
Subscribers are SDK clients of beta, the publisher an SDK client of alpha, so
each event goes publisher → alpha's broker → the federation link → beta's
broker → each subscriber, the path agents use.  Measured in one run:

- delivered events/s (sum over subscribers) and published events/s, for 64 B
  and 1 KiB payloads, with one and with ten subscribers; the publisher does
  not wait for each event's answer, as a busy agent would not: it waits when
  the SDK's flow control says so (``EventStream.drain``) and when it is a
  subscriber queue's worth ahead of its slowest subscriber (see :class:`Progress`);
- publish-to-deliver latency (one event at a time), p50 and p99.

All clients share this process and its reactor, so the figures include the
SDK's own cost on both ends.  Events a broker dropped (a subscriber too slow
for its bounded queue) are reported, not hidden.
"""

import argparse
import struct
import time

from twisted.internet import defer, task

from benchmarks import positive_int
from benchmarks.daemon_stream import LocalNetwork, median_and_p99, report, start_pair
from pilotnet.driver.client import connect
from pilotnet.services.eventstream import SUBSCRIBER_QUEUE_LIMIT
from pilotnet.wire.eventstream import encode_event

LATENCY_SAMPLES = 500
_STAMP = struct.Struct(">d")


async def trust(network, reactor):
    clients = {name: await connect(reactor, network.daemons[name]["socket"]) for name in ("alpha", "beta")}
    await clients["alpha"].handshake(str(network.daemons["beta"]["info"]["node_id"]), "benchmark")
    await clients["beta"].handshake(str(network.daemons["alpha"]["info"]["node_id"]), "benchmark")

    async def mutual():
        counts = [len(await client.trusted()) for client in clients.values()]
        return counts == [1, 1]

    await network.wait_for(mutual, "mutual trust")
    return clients


async def subscribers(network, reactor, publisher_client, pattern, count):
    """``count`` clients of beta subscribed to ``pattern``, once alpha holds beta's link for it."""
    subscriptions = []
    for _ in range(count):
        client = await connect(reactor, network.daemons["beta"]["socket"])
        subscriptions.append((client, await client.open_event_stream().subscribe(pattern).ready))

    async def linked():
        stats = await publisher_client.event_stats()
        return any(s["pattern"] == pattern and s["subscriber"].startswith("stream ") for s in stats["subscribers"])

    await network.wait_for(linked, f"the federation link for {pattern}")
    return subscriptions


class Progress:
    """Events each subscriber has taken, so the publisher can stay a bounded distance ahead of the slowest.

    A broker drops events for a subscriber that falls too far behind (its
    bounded queue), and a publisher in this process competes with the
    subscribers for the CPU; unpaced, the figure would be how fast events can
    be dropped rather than delivered.
    """

    def __init__(self, reactor, count, idle):
        self.reactor = reactor
        self.idle = idle
        self.taken = [0] * count
        self.last = time.perf_counter()
        self._target = None
        self._short = 0
        self._caught_up = None

    def took(self, index):
        self.taken[index] = taken = self.taken[index] + 1
        self.last = time.perf_counter()
        if taken == self._target:
            self._short -= 1
            if not self._short:
                self._target = None
                self._caught_up.callback(None)

    def wait_for(self, target):
        """Fires once every subscriber took ``target`` events, or none progressed for ``idle`` s."""
        self._short = sum(1 for taken in self.taken if taken < target)
        if not self._short:
            return defer.succeed(None)
        self._target = target
        self._caught_up = defer.Deferred().addTimeout(self.idle, self.reactor)
        return self._caught_up.addErrback(lambda failure: failure.trap(defer.TimeoutError) and None)


async def drain(reactor, subscription, index, progress, expected):
    """Take events until ``expected`` arrived or none came for ``progress.idle`` s (some were dropped).

    Iterates as a consumer would (``async for``); a watchdog, not a timeout
    per event, ends a subscription that went quiet.
    """
    seen = -1

    def watch():
        nonlocal seen
        if progress.taken[index] == seen:
            subscription.close()  # ends the iteration below
        seen = progress.taken[index]

    watchdog = task.LoopingCall(watch)
    watchdog.clock = reactor
    watchdog.start(progress.idle, now=False)
    try:
        async for _ in subscription:
            progress.took(index)
            if progress.taken[index] == expected:
                break
    finally:
        watchdog.stop()


async def throughput(network, reactor, publisher_client, size, fan_out, events, idle=2.0):
    """Publish ``events`` as fast as they are delivered; returns published/s, delivered/s and drops.

    The publisher does not wait for each event's answer: it publishes, awaits
    the SDK's flow control (``EventStream.drain``), and stays at most
    a broker's queue for one subscriber (``SUBSCRIBER_QUEUE_LIMIT``) ahead of
    the slowest subscriber, which no broker then has reason to drop.
    Delivered events/s counts until the last event arrived, so a run where
    some were dropped is not charged the idle wait that detects it.
    """
    pattern = f"bench.rate.{size}.{fan_out}"
    subscriptions = await subscribers(network, reactor, publisher_client, pattern, fan_out)
    stream = publisher_client.open_event_stream()
    payload = b"x" * size
    progress = Progress(reactor, fan_out, idle)
    draining = [defer.ensureDeferred(drain(reactor, s, index, progress, events))
                for index, (_, s) in enumerate(subscriptions)]
    step = max(1, SUBSCRIBER_QUEUE_LIMIT // len(encode_event(pattern, payload)) // 2)
    started = time.perf_counter()
    for published in range(1, events):
        stream.publish(pattern, payload)
        await stream.drain()
        if published % step == 0:
            await progress.wait_for(published - step)
    await stream.publish(pattern, payload)  # answered last: every event was published
    published = time.perf_counter() - started
    await defer.gatherResults(draining)
    delivered = sum(progress.taken)
    for client, subscription in subscriptions:
        await subscription.close()
        client.close()
    return events / published, delivered / (progress.last - started), fan_out * events - delivered


async def latency(network, reactor, publisher_client):
    pattern = "bench.latency"
    [(client, subscription)] = await subscribers(network, reactor, publisher_client, pattern, 1)
    stream = publisher_client.open_event_stream()
    samples = []
    for _ in range(LATENCY_SAMPLES):
        sent = time.perf_counter()
        await stream.publish(pattern, _STAMP.pack(sent) + b"x" * 56)
        event = await subscription.get()
        samples.append((time.perf_counter() - _STAMP.unpack_from(event.data)[0]) * 1000)
    await subscription.close()
    client.close()
    return median_and_p99(samples)


async def run(reactor, events, as_json):
    rows = []
    network = LocalNetwork(reactor)
    try:
        await start_pair(network)
        clients = await trust(network, reactor)
        for size in (64, 1024):
            for fan_out in (1, 10):
                published, delivered, dropped = await throughput(network, reactor, clients["alpha"], size,
                                                                 fan_out, events)
                label = f"{size} B to {fan_out} subscriber{'s' if fan_out > 1 else ''}"
                rows.append((f"events delivered/s, {label}", delivered, "ev/s",
                             ("dropped", dropped) if dropped else None))
                rows.append((f"events published/s, {label}", published, "ev/s", None))
        p50, p99 = await latency(network, reactor, clients["alpha"])
        rows.append(("publish-to-deliver latency, p50", p50, "ms", None))
        rows.append(("publish-to-deliver latency, p99", p99, "ms", None))
        for client in clients.values():
            client.close()
    finally:
        network.stop()
    report(rows, as_json)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive_int, default=20000, help="events per measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args.events, args.json)))


if __name__ == "__main__":
    main()
