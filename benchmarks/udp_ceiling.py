"""The raw encrypted-UDP ceiling: how fast one Python process can seal and another open.

Two processes on loopback, like two daemons, but with nothing between the
socket and the cipher: the sender seals payloads of one segment's size
(1024 bytes unless told, what a stream sends across a network) into PILS frames
(our packet codec and tunnel crypto) and writes them as fast as it can; the
receiver opens and decodes every frame it gets, as a daemon's tunnel does (the
AEAD tag, not the packet's CRC, vouches for a sealed packet).  The payload rate the receiver
sees bounds what any stream between two daemons can reach on this machine.

    python -m benchmarks.udp_ceiling [--seconds 3] [--payload 1024]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from pilotnet.crypto.tunnel import TunnelSession
from pilotnet.errors import PilotError
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_ACK, PROTO_STREAM, Packet

DEFAULT_PAYLOAD = 1024
#: The largest payload whose sealed frame (packet header 34, sealing 36) fits one IPv4 UDP datagram.
MAX_PAYLOAD = 65507 - 34 - 36
#: How long the receiver waits for a first frame before reporting nothing.
FIRST_FRAME_TIMEOUT = 10.0
KEY = bytes(range(32))
SENDER_NODE = 1


def _receive(seconds, report):
    receiver = TunnelSession(KEY, 2)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(1.0)
    print(sock.getsockname()[1], flush=True)
    received = frames = 0
    started = None
    waiting_since = time.perf_counter()
    while True:
        try:
            data = sock.recv(65535)
        except socket.timeout:
            if started is not None or time.perf_counter() - waiting_since > FIRST_FRAME_TIMEOUT:
                break
            continue
        if started is None:
            started = time.perf_counter()
        try:
            packet = Packet.decode(receiver.open(data), verify_checksum=False)  # as the daemon's tunnel does
        except PilotError:
            continue
        frames += 1
        received += len(packet.payload)
        if time.perf_counter() - started >= seconds:
            break
    elapsed = time.perf_counter() - started if started is not None else seconds
    report.write(json.dumps({"bytes": received, "frames": frames, "seconds": elapsed}) + "\n")


def _send(port, seconds, size):
    sender = TunnelSession(KEY, SENDER_NODE, prefix=b"\x00\x00\x00\x01")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    packet = Packet(PROTO_STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, flags=FLAG_ACK, payload=os.urandom(size))
    deadline = time.perf_counter() + seconds + 1.0
    destination = ("127.0.0.1", port)
    while time.perf_counter() < deadline:
        packet.seq = (packet.seq + size) & 0xFFFFFFFF
        try:
            sock.sendto(sender.seal(packet.encode()), destination)
        except BlockingIOError:
            pass


def measure(seconds=3.0, payload=DEFAULT_PAYLOAD):
    """Payload MB/s received one way, sender and receiver in their own processes."""
    receiver = subprocess.Popen([sys.executable, "-m", "benchmarks.udp_ceiling", "--role", "receive",
                                 "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(receiver.stdout.readline())
        sender = subprocess.Popen([sys.executable, "-m", "benchmarks.udp_ceiling", "--role", "send",
                                   "--port", str(port), "--seconds", str(seconds),
                                   "--payload", str(payload)])
        result = json.loads(receiver.stdout.readline())
        sender.wait(timeout=seconds + 10)
    finally:
        receiver.kill()
        receiver.wait()
    if not result["frames"]:
        raise RuntimeError("the receiver got no frames: did the sender fail?")
    return result["bytes"] / result["seconds"] / 1e6, result["frames"] / result["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("measure", "send", "receive"), default="measure")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--port", type=int)
    parser.add_argument("--payload", type=int, default=DEFAULT_PAYLOAD, help="bytes of payload per frame")
    args = parser.parse_args()
    if not 1 <= args.payload <= MAX_PAYLOAD:
        parser.error(f"--payload must be 1-{MAX_PAYLOAD} bytes (one sealed frame per UDP datagram)")
    if args.role == "receive":
        _receive(args.seconds, sys.stdout)
    elif args.role == "send":
        _send(args.port, args.seconds, args.payload)
    else:
        mbps, frames = measure(args.seconds, args.payload)
        print(f"encrypted UDP one way, {args.payload}-byte payloads: {mbps:.1f} MB/s, {frames:,.0f} frames/s")


if __name__ == "__main__":
    main()
