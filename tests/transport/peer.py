"""A scripted peer for unit tests: builds the packets a remote end would send."""

from pilotnet.transport.config import StreamConfig
from pilotnet.transport.connection import StreamConnection
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_ACK, FLAG_SYN, PROTO_STREAM, Packet

LOCAL = Addr(1, 0x10)
REMOTE = Addr(1, 0x20)
LOCAL_PORT = 49200
REMOTE_PORT = 1001

QUIET = StreamConfig(keepalive_interval=None, idle_timeout=None)


def from_peer(flags, *, seq=0, ack=0, window=512, payload=b""):
    """A packet the remote end sends to our connection."""
    return Packet(PROTO_STREAM, REMOTE, LOCAL, REMOTE_PORT, LOCAL_PORT, flags=flags, seq=seq, ack=ack,
                  window=window, payload=payload)


def dialer(config=QUIET):
    return StreamConnection(LOCAL, LOCAL_PORT, REMOTE, REMOTE_PORT, config)


def established(config=QUIET, *, peer_window=512, now=0.0):
    """A dialer that completed its handshake at ``now`` (its outputs drained)."""
    conn = dialer(config)
    conn.open(now)
    conn.receive(from_peer(FLAG_SYN | FLAG_ACK, seq=0, ack=(config.initial_sequence + 1) & 0xFFFFFFFF,
                           window=peer_window), now)
    conn.take_packets()
    conn.take_events()
    return conn


def data(seq, payload, *, ack=1, window=512):
    return from_peer(FLAG_ACK, seq=seq, ack=ack, window=window, payload=payload)


def ack(number, *, seq=1, window=512, payload=b""):
    return from_peer(FLAG_ACK, seq=seq, ack=number, window=window, payload=payload)
