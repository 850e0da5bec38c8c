"""``ping``, ``traceroute``, ``bench``: reachability, latency and throughput through the echo port (7)."""

from random import Random

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from pilotnet.cli.args import invalid
from pilotnet.cli.context import DIAGNOSED
from pilotnet.cli.output import Output, Progress, format_bytes, go_duration
from pilotnet.errors import CONNECTION_FAILED, NOT_RUNNING, PilotError
from pilotnet.wire.address import PORT_ECHO

PING_INTERVAL = 1.0
TRACE_SAMPLES = 3
BENCH_BLOCK = 1024 * 1024
BENCH_WRITES_IN_FLIGHT = 2
# The bench pattern repeats with a prime period, so a chunk delivered twice,
# dropped or out of order never lines up with the expected bytes by accident.
BENCH_PATTERN = Random(7).randbytes(65521)
MEGABYTE = 1024 * 1024


async def _echo_round_trip(context, stream, payload):
    await stream.write(payload)
    return await stream.read_exactly(len(payload))


async def _probe(context, address, payload):
    stream = await context.dial(address, PORT_ECHO)
    try:
        reply = await _echo_round_trip(context, stream, payload)
    finally:
        await stream.close()
    if reply != payload:
        raise PilotError(f"echo reply differs from the probe ({len(reply)} bytes)", code=CONNECTION_FAILED)
    return reply


async def ping(context, args):
    count = args.integer("count", 4, minimum=1)
    timeout = args.duration("timeout", 30.0)
    address = await context.resolve(args.positional[0])
    now = context.reactor.seconds
    deadline = now() + timeout
    context.say(f"PING {address}")
    results, timed_out = [], False
    for seq in range(count):
        remaining = deadline - now()
        if remaining <= 0:
            timed_out = True
            break
        started = now()
        try:
            probing = Deferred.fromCoroutine(_probe(context, address, f"ping-{seq}".encode()))
            reply = await context.within(probing, remaining, f"no echo from {address} within {go_duration(timeout)}")
        except PilotError as error:
            if error.code == NOT_RUNNING or error.code in DIAGNOSED:
                raise  # more probes would only wait to learn the same
            results.append({"seq": seq, "error": error.message})
            context.say(f"seq={seq} error: {error.message}")
            continue
        rtt = now() - started
        results.append({"seq": seq, "rtt_ms": round(rtt * 1000, 3), "bytes": len(reply)})
        context.say(f"{len(reply)} bytes from {address}: seq={seq} time={rtt * 1000:.2f} ms")
        if seq + 1 < count:
            await deferLater(context.clock, min(PING_INTERVAL, max(0.0, deadline - now())), lambda: None)
    data = {"target": str(address), "results": results, "timeout": timed_out}
    summary = ping_summary(address, count, results, timed_out, timeout)
    if not any("rtt_ms" in result for result in results):
        context.say(summary)  # as ping(8), the statistics on total loss too, before the error
        sent = len(results)
        if sent == count:
            what = "the probe failed" if count == 1 else f"all {count} probes failed"
        else:
            what = f"{sent} of {_probes(count)} sent within {go_duration(timeout)}, none answered"
        raise PilotError(f"no reply from {address}: {what}", code=CONNECTION_FAILED,
                         hint=f"check the path and trust: pilotctl peers --search {address.node}")
    return Output(data, summary)


def _probes(count):
    """``1 probe``, ``4 probes``."""
    return f"{count} probe{'s' * (count != 1)}"


def ping_summary(address, count, results, timed_out, timeout):
    """ping(8)'s closing lines: probes sent, received and lost, then min/avg/max round trip."""
    times = [result["rtt_ms"] for result in results if "rtt_ms" in result]
    sent = len(results)
    loss = 100 * (count - len(times)) // count
    lines = ["", f"--- {address} ping statistics ---",
             f"{_probes(sent)} sent, {len(times)} received, {loss}% probe loss"]
    if sent < count:
        lines[-1] += f", {count - sent} not sent within {go_duration(timeout)}" if timed_out else ""
    if times:
        lines.append(f"rtt min/avg/max = {min(times):.2f}/{sum(times) / len(times):.2f}/{max(times):.2f} ms")
    return "\n".join(lines)


async def traceroute(context, args):
    timeout = args.duration("timeout", 30.0)
    address = await context.resolve(args.positional[0])
    now = context.reactor.seconds
    started = now()
    message = f"traceroute to {address} did not finish within {go_duration(timeout)}"
    stream = await context.within(Deferred.fromCoroutine(context.dial(address, PORT_ECHO)), timeout, message)
    setup = now() - started
    samples = []
    try:
        for index in range(TRACE_SAMPLES):
            sent_at = now()
            payload = f"trace-{index}".encode()
            remaining = max(0.001, timeout - (sent_at - started))
            reply = await context.within(
                Deferred.fromCoroutine(_echo_round_trip(context, stream, payload)), remaining, message
            )
            samples.append({"rtt_ms": round((now() - sent_at) * 1000, 3), "bytes": len(reply)})
    finally:
        await stream.close()
    lines = [f"TRACEROUTE {address}", f"  1  {address}  setup={go_duration(setup)}"]
    lines += [f"     rtt={go_duration(s['rtt_ms'] / 1000)} bytes={s['bytes']}" for s in samples]
    lines += [
        "  one overlay hop: the tunnel to the peer is direct or relayed by the beacon (see: pilotctl peers)",
        "  setup = stream handshake time; rtt = echo round trip on the open stream",
    ]
    data = {"target": str(address), "setup_ms": round(setup * 1000, 3), "rtt_samples": samples}
    return Output(data, "\n".join(lines))


def _pattern(offset, size):
    """``size`` bytes of the bench pattern starting at stream ``offset``."""
    pattern = bytearray()
    start = offset % len(BENCH_PATTERN)
    while len(pattern) < size:
        pattern += BENCH_PATTERN[start:start + size - len(pattern)]
        start = 0
    return bytes(pattern)


def _size_bytes(text):
    try:
        size_mb = float(text)
    except ValueError:
        size_mb = -1
    if not 0 < size_mb <= 10_000:
        raise invalid(f'invalid size "{text}": expected megabytes, a number above 0 and at most 10000')
    return max(1, int(size_mb * MEGABYTE))


async def _receive_echo(stream, total, progress):
    received = 0
    while received < total:
        chunk = await stream.read(total - received)
        if not chunk:
            raise PilotError(f"the echo stream ended after {received} of {total} bytes", code=CONNECTION_FAILED)
        if chunk != _pattern(received, len(chunk)):
            raise PilotError(f"echoed data differs from what was sent near byte {received}", code=CONNECTION_FAILED)
        received += len(chunk)
        progress.update(received)
    return received


async def _send_pattern(stream, total):
    in_flight = []
    for offset in range(0, total, BENCH_BLOCK):
        in_flight.append(stream.write(_pattern(offset, min(BENCH_BLOCK, total - offset))))
        if len(in_flight) >= BENCH_WRITES_IN_FLIGHT:
            await in_flight.pop(0)
    for writing in in_flight:
        await writing


async def _bench_run(context, stream, total, progress):
    now = context.reactor.seconds
    started = now()
    receiving = Deferred.fromCoroutine(_receive_echo(stream, total, progress))
    try:
        await _send_pattern(stream, total)
    except BaseException:
        receiving.cancel()
        receiving.addErrback(lambda _: None)
        raise
    sent = now() - started
    received = await receiving
    return sent, now() - started, received


async def bench(context, args):
    total = _size_bytes(args.positional[1] if len(args.positional) > 1 else "1")
    timeout = args.duration("timeout", 120.0)
    address = await context.resolve(args.positional[0])
    context.say(f"BENCH {address} — sending {total / MEGABYTE:.1f} MB via echo port")
    stream = await context.dial(address, PORT_ECHO)
    progress = Progress(context, total)
    try:
        running = Deferred.fromCoroutine(_bench_run(context, stream, total, progress))
        sent, elapsed, received = await context.within(
            running, timeout, f"bench did not finish within {go_duration(timeout)}"
        )
    finally:
        progress.finish()
        await stream.close()
    megabytes = total / MEGABYTE
    data = {
        "target": str(address), "sent_bytes": total, "recv_bytes": received,
        "send_duration_ms": round(sent * 1000, 3), "total_duration_ms": round(elapsed * 1000, 3),
        "send_mbps": round(megabytes / max(sent, 1e-9), 3), "total_mbps": round(megabytes / max(elapsed, 1e-9), 3),
    }
    text = "\n".join([
        f"  Sent:     {format_bytes(total)} in {go_duration(sent)} ({data['send_mbps']:.1f} MB/s)",
        f"  Echoed:   {format_bytes(received)} in {go_duration(elapsed)} ({data['total_mbps']:.1f} MB/s round-trip)",
    ])
    return Output(data, text)
