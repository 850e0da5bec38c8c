"""Beacon messages: endpoint discovery, hole-punch coordination, relay, beacon sync.

Each message is one UDP datagram whose first byte is its type (always below
0x10, which is how a daemon tells beacon messages from tunnel frames on its one
socket).  Layouts after the type byte (big-endian)::

    0x01 Discover       node u32                       (extra bytes ignored)
    0x02 DiscoverReply  ip_len u8 (4|16) | ip | port u16
    0x03 PunchRequest   requester u32 | target u32
    0x04 PunchCommand   ip_len u8 (4|16) | ip | port u16
    0x05 Relay          sender u32 | destination u32 | tunnel frame
    0x06 RelayDeliver   sender u32 | tunnel frame
    0x07 Sync           beacon u32 | count u16 | count x node u32   (extra bytes ignored)

Beacons sharing a secret append an authentication trailer to their syncs
(see :mod:`pilotnet.beacon.peering`).
IP addresses travel as 4 bytes whenever they are IPv4 (including IPv4-mapped
IPv6), as the reference does.
"""

import ipaddress
import struct
from typing import NamedTuple

from pilotnet.errors import DecodeError
from pilotnet.wire.hostport import join_host_port

DISCOVER = 0x01
DISCOVER_REPLY = 0x02
PUNCH_REQUEST = 0x03
PUNCH_COMMAND = 0x04
RELAY = 0x05
RELAY_DELIVER = 0x06
SYNC = 0x07

TYPE_NAMES = {
    DISCOVER: "discover", DISCOVER_REPLY: "discover_reply", PUNCH_REQUEST: "punch_request",
    PUNCH_COMMAND: "punch_command", RELAY: "relay", RELAY_DELIVER: "relay_deliver", SYNC: "sync",
}

# First byte below this marks a beacon message on a daemon's tunnel socket.
BEACON_TYPE_LIMIT = 0x10
# The relay drops inner frames larger than the packet header allows.
MAX_RELAY_FRAME = 0xFFFF
# A sync datagram can list at most this many nodes (u16 count).
MAX_SYNC_NODES = 0xFFFF
# The largest discover reply (an IPv6 endpoint): our daemons pad their Discover
# to it (beacons ignore extra bytes), so no reply to them outgrows its request.
PADDED_DISCOVER_SIZE = 20

_U32 = struct.Struct(">I")
_TWO_U32 = struct.Struct(">II")
_SYNC_HEAD = struct.Struct(">IH")
_PORT = struct.Struct(">H")


def is_beacon_message(datagram: bytes) -> bool:
    """True when a datagram on the tunnel socket is for the beacon protocol."""
    return len(datagram) > 0 and datagram[0] < BEACON_TYPE_LIMIT


class Endpoint(NamedTuple):
    """A real (UDP) endpoint as the beacon reports it: IP text and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return join_host_port(self.host, self.port)


class Discover(NamedTuple):
    node: int


class DiscoverReply(NamedTuple):
    endpoint: Endpoint


class PunchRequest(NamedTuple):
    requester: int
    target: int


class PunchCommand(NamedTuple):
    endpoint: Endpoint


class Relay(NamedTuple):
    sender: int
    destination: int
    frame: bytes


class RelayDeliver(NamedTuple):
    sender: int
    frame: bytes


class Sync(NamedTuple):
    beacon: int
    nodes: tuple[int, ...]


#: Every message :func:`encode` writes and :func:`decode` returns.
Message = Discover | DiscoverReply | PunchRequest | PunchCommand | Relay | RelayDeliver | Sync


def _encode_endpoint(kind: int, endpoint: Endpoint) -> bytes:
    host, port = endpoint
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    packed = ip.packed
    return bytes((kind, len(packed))) + packed + _PORT.pack(port)


def _decode_endpoint(data: bytes, what: str) -> Endpoint:
    if len(data) < 2:
        raise DecodeError(f"{what} truncated: no IP length byte")
    ip_len = data[1]
    if ip_len not in (4, 16):
        raise DecodeError(f"{what}: IP length {ip_len} (must be 4 or 16)")
    if len(data) < 2 + ip_len + 2:
        raise DecodeError(f"{what} truncated: {len(data)} bytes, need {4 + ip_len}")
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(bytes(data[2:2 + ip_len]))
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    (port,) = _PORT.unpack_from(data, 2 + ip_len)
    return Endpoint(str(ip), port)


def encode(message: Message) -> bytes:
    """The datagram for one of the message tuples above."""
    if isinstance(message, Discover):
        return bytes((DISCOVER,)) + _U32.pack(message.node)
    if isinstance(message, DiscoverReply):
        return _encode_endpoint(DISCOVER_REPLY, message.endpoint)
    if isinstance(message, PunchRequest):
        return bytes((PUNCH_REQUEST,)) + _TWO_U32.pack(message.requester, message.target)
    if isinstance(message, PunchCommand):
        return _encode_endpoint(PUNCH_COMMAND, message.endpoint)
    if isinstance(message, Relay):
        return bytes((RELAY,)) + _TWO_U32.pack(message.sender, message.destination) + message.frame
    if isinstance(message, RelayDeliver):
        return bytes((RELAY_DELIVER,)) + _U32.pack(message.sender) + message.frame
    if isinstance(message, Sync):
        nodes = message.nodes
        if len(nodes) > MAX_SYNC_NODES:
            raise ValueError(f"a sync message lists at most {MAX_SYNC_NODES} nodes, not {len(nodes)}")
        return (bytes((SYNC,)) + _SYNC_HEAD.pack(message.beacon, len(nodes))
                + struct.pack(f">{len(nodes)}I", *nodes))
    raise TypeError(f"not a beacon message: {message!r}")


def padded_discover(node: int) -> bytes:
    """A Discover of :data:`PADDED_DISCOVER_SIZE` bytes (the reference's is 5)."""
    return encode(Discover(node)).ljust(PADDED_DISCOVER_SIZE, b"\0")


def sync_size(count: int) -> int:
    """Bytes of a Sync message listing ``count`` nodes (without any trailer)."""
    return _SYNC_HEAD.size + 1 + 4 * count


def relay_envelope(sender: int, destination: int, frame: bytes) -> bytes:
    """A Relay datagram, built without an intermediate tuple (the relay path is hot)."""
    return bytes((RELAY,)) + _TWO_U32.pack(sender, destination) + frame


def decode(datagram: bytes) -> Message:
    """Parse one beacon datagram into one of the message tuples."""
    if not datagram:
        raise DecodeError("empty beacon message")
    kind = datagram[0]
    size = len(datagram)
    if kind == DISCOVER:
        if size < 5:
            raise DecodeError(f"discover truncated: {size} bytes, need 5")
        return Discover(_U32.unpack_from(datagram, 1)[0])
    if kind == DISCOVER_REPLY:
        return DiscoverReply(_decode_endpoint(datagram, "discover reply"))
    if kind == PUNCH_REQUEST:
        if size < 9:
            raise DecodeError(f"punch request truncated: {size} bytes, need 9")
        return PunchRequest(*_TWO_U32.unpack_from(datagram, 1))
    if kind == PUNCH_COMMAND:
        return PunchCommand(_decode_endpoint(datagram, "punch command"))
    if kind == RELAY:
        if size < 13:
            raise DecodeError(f"relay truncated: {size} bytes, need 9 plus a 4-byte frame")
        sender, destination = _TWO_U32.unpack_from(datagram, 1)
        return Relay(sender, destination, bytes(datagram[9:]))
    if kind == RELAY_DELIVER:
        if size < 9:
            raise DecodeError(f"relay delivery truncated: {size} bytes, need 5 plus a 4-byte frame")
        return RelayDeliver(_U32.unpack_from(datagram, 1)[0], bytes(datagram[5:]))
    if kind == SYNC:
        if size < 7:
            raise DecodeError(f"sync truncated: {size} bytes, need 7")
        beacon, count = _SYNC_HEAD.unpack_from(datagram, 1)
        if size < 7 + 4 * count:
            raise DecodeError(f"sync truncated: announces {count} nodes, room for {(size - 7) // 4}")
        return Sync(beacon, struct.unpack_from(f">{count}I", datagram, 7))
    raise DecodeError(f"unknown beacon message type 0x{kind:02x}")
