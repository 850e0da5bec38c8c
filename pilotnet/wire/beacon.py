"""Beacon messages: endpoint discovery, hole-punch coordination, relay, beacon sync.

Each message is one UDP datagram whose first byte is its type (always below
0x10, which is how a daemon tells beacon messages from tunnel frames on its one
socket).  Layouts after the type byte (big-endian)::

    0x01 Discover       node u32 [| cookie 16]         (extra bytes ignored)
    0x02 DiscoverReply  ip_len u8 (4|16) | ip | port u16 [| cookie 16]
    0x03 PunchRequest   requester u32 | target u32     (extra bytes ignored)
    0x04 PunchCommand   ip_len u8 (4|16) | ip | port u16 [| cookie 16]
    0x05 Relay          sender u32 | destination u32 | tunnel frame
    0x06 RelayDeliver   sender u32 | tunnel frame
    0x07 Sync           beacon u32 | count u16 | count x node u32   (extra bytes ignored)

The cookie is ours, not the reference's: a daemon puts a random one in the
padding of its Discover, and our beacon echoes it in its replies and in the
punch commands it sends that node, so the daemon can tell them from forgeries
(a UDP source address proves nothing).  The reference ignores the extra bytes
both ways, and a Discover whose cookie bytes are all zero carries none.

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
#: Bytes of the cookie that binds a beacon's replies and punch commands to a daemon's Discover.
COOKIE_SIZE = 16
#: The largest answer (an IPv6 endpoint and a cookie): our daemons pad their
#: Discovers and punch requests to it (beacons ignore extra bytes), so no answer
#: to them outgrows its request.
PADDED_REQUEST_SIZE = 2 + 16 + 2 + COOKIE_SIZE
_NO_COOKIE = bytes(COOKIE_SIZE)

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
    cookie: bytes = b""


class DiscoverReply(NamedTuple):
    endpoint: Endpoint
    cookie: bytes = b""


class PunchRequest(NamedTuple):
    requester: int
    target: int


class PunchCommand(NamedTuple):
    endpoint: Endpoint
    cookie: bytes = b""


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


def _encode_endpoint(kind: int, endpoint: Endpoint, cookie: bytes = b"") -> bytes:
    host, port = endpoint
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    packed = ip.packed
    return bytes((kind, len(packed))) + packed + _PORT.pack(port) + _checked_cookie(cookie)


def _checked_cookie(cookie: bytes) -> bytes:
    if cookie and len(cookie) != COOKIE_SIZE:
        raise ValueError(f"a beacon cookie is {COOKIE_SIZE} bytes, not {len(cookie)}")
    return cookie


def _cookie_at(data: bytes, offset: int, *, exact: bool) -> bytes:
    """The cookie at ``offset`` (b"" if there is none, or it is all zeros).

    After an endpoint the cookie must end the datagram (other trailing bytes
    are ignored, as the reference ignores ours); after a Discover's node it is
    the start of the padding.
    """
    cookie = bytes(data[offset:offset + COOKIE_SIZE])
    if len(cookie) < COOKIE_SIZE or (exact and len(data) != offset + COOKIE_SIZE) or cookie == _NO_COOKIE:
        return b""
    return cookie


def _endpoint_size(data: bytes) -> int:
    return 4 + data[1]


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
        return bytes((DISCOVER,)) + _U32.pack(message.node) + _checked_cookie(message.cookie)
    if isinstance(message, DiscoverReply):
        return _encode_endpoint(DISCOVER_REPLY, message.endpoint, message.cookie)
    if isinstance(message, PunchRequest):
        return bytes((PUNCH_REQUEST,)) + _TWO_U32.pack(message.requester, message.target)
    if isinstance(message, PunchCommand):
        return _encode_endpoint(PUNCH_COMMAND, message.endpoint, message.cookie)
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


def padded(message: Discover | PunchRequest) -> bytes:
    """A request of :data:`PADDED_REQUEST_SIZE` bytes (the reference's are 5 and 9)."""
    return encode(message).ljust(PADDED_REQUEST_SIZE, b"\0")


def padded_discover(node: int, cookie: bytes = b"") -> bytes:
    """A padded :class:`Discover` (see :func:`padded`)."""
    return padded(Discover(node, cookie))


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
        return Discover(_U32.unpack_from(datagram, 1)[0], _cookie_at(datagram, 5, exact=False))
    if kind == DISCOVER_REPLY:
        endpoint = _decode_endpoint(datagram, "discover reply")
        return DiscoverReply(endpoint, _cookie_at(datagram, _endpoint_size(datagram), exact=True))
    if kind == PUNCH_REQUEST:
        if size < 9:
            raise DecodeError(f"punch request truncated: {size} bytes, need 9")
        return PunchRequest(*_TWO_U32.unpack_from(datagram, 1))
    if kind == PUNCH_COMMAND:
        endpoint = _decode_endpoint(datagram, "punch command")
        return PunchCommand(endpoint, _cookie_at(datagram, _endpoint_size(datagram), exact=True))
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
