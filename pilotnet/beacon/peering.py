"""Beacon-to-beacon sync authentication: a shared secret, an HMAC and a fresh timestamp.

The registry lists any beacon that registers, with any address, and a beacon
sends its Sync datagrams (up to 64 KiB each, every 10 s) to its peers: taking
that list on trust made every beacon a reflector at whatever address an
attacker registered.  Beacons that share a secret append to each Sync::

    stamp u64 (microseconds since the epoch) | HMAC-SHA256(secret, sync bytes + stamp)

and a beacon sends full syncs only to peers whose own authenticated sync came
in lately (or that the operator listed).  The stamp must be within
:data:`FRESHNESS` of our clock and above the last one accepted from that
beacon ID, so a captured sync replayed (from any address) is refused.  The
trailer sits after the node list, where a Go beacon's decoder stops reading.

Fed bytes and ``now`` like the core: no clock, no socket.
"""

import hashlib
import hmac
import struct

from pilotnet.errors import INVALID_ARGUMENT, PilotError

STAMP = struct.Struct(">Q")
TAG_SIZE = hashlib.sha256().digest_size
TRAILER_SIZE = STAMP.size + TAG_SIZE
#: How far a sync's stamp may be from our clock (either way).
FRESHNESS = 30.0
#: Shortest secret accepted, in bytes.
MIN_SECRET = 16


class PeerAuth:
    """Seals our syncs and checks theirs with one shared secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET:
            raise PilotError(f"the beacon peer secret must be at least {MIN_SECRET} bytes, not {len(secret)}",
                             code=INVALID_ARGUMENT, hint="e.g. head -c 32 /dev/urandom | base64 > secret")
        self._secret = secret
        self._last_sent = 0
        self._last_accepted: dict[int, int] = {}

    def seal(self, sync: bytes, now: float) -> bytes:
        """``sync`` with its stamp and tag; stamps strictly increase even within one clock tick."""
        stamp = max(int(now * 1_000_000), self._last_sent + 1)
        self._last_sent = stamp
        body = sync + STAMP.pack(stamp)
        return body + hmac.new(self._secret, body, hashlib.sha256).digest()

    def check(self, datagram: bytes, body_size: int, beacon_id: int, now: float) -> str | None:
        """None when ``datagram`` (a Sync whose message is ``body_size`` bytes) is genuine and fresh.

        Otherwise the reason it is refused, as a drop-counter name.
        """
        if len(datagram) != body_size + TRAILER_SIZE:
            return "sync_unauthenticated"
        body = bytes(datagram[:body_size + STAMP.size])
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, bytes(datagram[body_size + STAMP.size:])):
            return "sync_bad_tag"
        (stamp,) = STAMP.unpack_from(datagram, body_size)
        if abs(stamp / 1_000_000 - now) > FRESHNESS:
            return "sync_stale"
        if stamp <= self._last_accepted.get(beacon_id, 0):
            return "sync_replayed"
        self._last_accepted[beacon_id] = stamp
        return None
