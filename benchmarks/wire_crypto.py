"""Per-packet costs of the codecs and tunnel crypto, next to the bare cipher.

    python -m benchmarks.wire_crypto [--json]

The machine is shared and noisy, so absolute figures drift; the ratio of
PILS seal+open to a bare AES-GCM seal+open of the same bytes, measured in the
same run, is the figure to watch: it is what our framing adds on top of the
cipher.  Each figure is the best of several repeats (the least disturbed).
"""

import argparse
import json
import timeit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilotnet.crypto.tunnel import TunnelKeyPair, TunnelSession
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_ACK, PROTO_STREAM, Packet

REPEATS = 5


def microseconds_per_call(function, number):
    return min(timeit.repeat(function, number=number, repeat=REPEATS)) / number * 1e6


def stream_packet(size):
    return Packet(PROTO_STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, flags=FLAG_ACK,
                  seq=1, ack=1, window=512, payload=b"x" * size)


def measure():
    rows = []
    ours = TunnelKeyPair.generate()
    theirs = TunnelKeyPair.generate()
    for size in (64, 1200):
        packet = stream_packet(size)
        wire = packet.encode()
        rows.append((f"header encode, {size} B payload", microseconds_per_call(packet.encode, 20000)))
        rows.append((f"header decode, {size} B payload",
                     microseconds_per_call(lambda: Packet.decode(wire), 20000)))

        sender = TunnelSession.with_peer(ours, 1, theirs.public_key)
        receiver = TunnelSession.with_peer(theirs, 2, ours.public_key)

        def pils_round():
            receiver.open(sender.seal(wire))

        aead = AESGCM(bytes(32))
        aad = b"\x00\x00\x00\x01"
        counter = iter(range(1, 1 << 62))

        def bare_round():
            # A fresh nonce per packet, as any real use needs (the cipher is
            # measurably faster when handed the same nonce object again).
            nonce = bytes(4) + next(counter).to_bytes(8, "big")
            aead.decrypt(nonce, aead.encrypt(nonce, wire, aad), aad)

        pils = microseconds_per_call(pils_round, 20000)
        bare = microseconds_per_call(bare_round, 20000)
        rows.append((f"PILS seal+open, {len(wire)} B packet", pils))
        rows.append((f"bare AESGCM seal+open, {len(wire)} B (baseline)", bare))
        rows.append((f"ratio PILS / bare AESGCM, {len(wire)} B", pils / bare))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows = measure()
    if args.json:
        print(json.dumps([{"figure": name, "value": round(value, 3)} for name, value in rows], indent=2))
        return
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        unit = "x" if name.startswith("ratio") else "us"
        print(f"{name:<{width}}  {value:8.2f} {unit}")


if __name__ == "__main__":
    main()
