"""What every scenario proves: a stream and datagrams both ways, and how long the first byte took.

Time to first byte runs from the dial request (before the peer is even
resolved) to the first byte arriving at the far end, so it covers resolution,
punching or relay fallback, the key exchange and the stream handshake.  It is
printed, never asserted: CI logs show regressions without wall-time flakiness.
"""

import hashlib

from twisted.internet import reactor

from tests.integration.processes import wait_until

STREAM_PORT = 1000
DATAGRAM_PORT = 4000
DIAL_TIMEOUT = 60
DATAGRAM_TIMEOUT = 20


def report(test, label, text):
    print(f"\n[netlab] {type(test).__name__}.{test._testMethodName}: {label} {text}", flush=True)


async def open_stream(test, dialer, listener_daemon):
    """Dial from ``dialer`` to a listener on ``listener_daemon``; returns (outgoing, incoming, ttfb)."""
    client = await dialer.connect()
    server = await listener_daemon.connect()
    listener = await server.listen(STREAM_PORT)
    started = reactor.seconds()
    outgoing = await client.dial(listener_daemon.address, STREAM_PORT, timeout=DIAL_TIMEOUT)
    incoming = await listener.accept()
    await outgoing.write(b"!")
    test.assertEqual(await incoming.read_exactly(1), b"!")
    return outgoing, incoming, reactor.seconds() - started


async def stream_both_ways(test, outgoing, incoming, label=b""):
    await outgoing.write(b"forth " + label)
    test.assertEqual(await incoming.read_exactly(6 + len(label)), b"forth " + label)
    await incoming.write(b"back " + label)
    test.assertEqual(await outgoing.read_exactly(5 + len(label)), b"back " + label)


async def datagram_arrives(sender, receiver, payload):
    """Send ``payload`` from ``sender`` to ``receiver`` until it arrives (datagrams may be lost)."""
    listener = await (await receiver.connect()).listen(DATAGRAM_PORT)
    client = await sender.connect()
    arrived = listener.receive_datagram()

    async def delivered():
        if not arrived.called:
            await client.send_datagram(receiver.address, DATAGRAM_PORT, payload)
        return arrived.called

    await wait_until(delivered, f"a datagram from {sender.hostname} to {receiver.hostname}",
                     timeout=DATAGRAM_TIMEOUT, interval=0.5)
    datagram = await arrived
    await listener.close()
    return datagram


async def prove_both_ways(test, a, b):
    """A stream from ``a`` to ``b`` carrying data each way, then datagrams each way; prints TTFB."""
    outgoing, incoming, ttfb = await open_stream(test, a, b)
    report(test, "time to first byte", f"{ttfb * 1000:.0f} ms")
    await stream_both_ways(test, outgoing, incoming)
    for sender, receiver in ((a, b), (b, a)):
        payload = f"datagram {sender.hostname}->{receiver.hostname}".encode()
        datagram = await datagram_arrives(sender, receiver, payload)
        test.assertEqual((datagram.data, str(datagram.src_address)), (payload, sender.address))
    return outgoing, incoming


def pattern(size):
    block = hashlib.sha256(b"netlab").digest() * 64
    return (block * (size // len(block) + 1))[:size]
