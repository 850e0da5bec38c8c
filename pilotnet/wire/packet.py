"""The Pilot packet: a 34-byte header with a CRC-32, then the payload.

Layout (big-endian)::

    0   u8   version << 4 | flags       version is always 1
    1   u8   protocol                   1 stream, 2 datagram, 3 control
    2   u16  payload length
    4   6    source address             network u16, node u32
    10  6    destination address
    16  u16  source port
    18  u16  destination port
    20  u32  sequence number            byte offset (streams)
    24  u32  acknowledgment number      next expected byte (streams)
    28  u16  window                     free receive slots, in segments; 0 = no limit
    30  u32  checksum                   CRC-32 (IEEE) of header-with-zero-checksum + payload

Bytes after ``34 + payload length`` are ignored, as the reference does.
This is the per-packet path: one ``struct`` call and two ``crc32`` calls each way.
"""

import struct
import zlib
from typing import Any, Self

from pilotnet.errors import DecodeError
from pilotnet.wire.address import Addr

VERSION = 1
HEADER_SIZE = 34
MAX_PAYLOAD = 0xFFFF

FLAG_SYN = 0x1
FLAG_ACK = 0x2
FLAG_FIN = 0x4
FLAG_RST = 0x8

PROTO_STREAM = 0x01
PROTO_DATAGRAM = 0x02
PROTO_CONTROL = 0x03
PROTOCOL_NAMES = {PROTO_STREAM: "stream", PROTO_DATAGRAM: "datagram", PROTO_CONTROL: "control"}

# Everything up to the checksum, then the checksum on its own.
_HEAD = struct.Struct(">BBHHIHIHHIIH")
_CHECKSUM = struct.Struct(">I")
_ZERO_CHECKSUM = b"\x00\x00\x00\x00"
_CHECKSUM_OFFSET = 30
# Building the two addresses through the NamedTuple constructor costs twice as
# much as tuple.__new__, which is what it does underneath.
_new_tuple = tuple.__new__


def flag_names(flags: int) -> str:
    """``"SYN|ACK"`` style text for logs and ``pilotctl`` output."""
    names = [n for bit, n in ((FLAG_SYN, "SYN"), (FLAG_ACK, "ACK"), (FLAG_FIN, "FIN"), (FLAG_RST, "RST")) if flags & bit]
    return "|".join(names) or "-"


class Packet:
    """One Pilot packet, decoded.

    A plain slotted object rather than a dataclass: it is built and read once
    per packet on the hot path, and attribute access on slots is the cheapest
    Python offers.
    """

    __slots__ = ("flags", "protocol", "src", "dst", "src_port", "dst_port", "seq", "ack", "window", "payload")
    flags: int
    protocol: int
    src: Addr
    dst: Addr
    src_port: int
    dst_port: int
    seq: int
    ack: int
    window: int
    payload: bytes

    def __init__(self, protocol: int, src: Addr, dst: Addr, src_port: int, dst_port: int, *, flags: int = 0,
                 seq: int = 0, ack: int = 0, window: int = 0, payload: bytes = b"") -> None:
        self.protocol = protocol
        self.src = src
        self.dst = dst
        self.src_port = src_port
        self.dst_port = dst_port
        self.flags = flags
        self.seq = seq
        self.ack = ack
        self.window = window
        self.payload = payload

    def encode(self) -> bytes:
        """The packet's bytes, checksum included."""
        payload = self.payload
        length = len(payload)
        if length > MAX_PAYLOAD:
            raise ValueError(f"payload of {length} bytes exceeds the maximum of {MAX_PAYLOAD}")
        src = self.src
        dst = self.dst
        try:
            head = _HEAD.pack(
                (VERSION << 4) | self.flags, self.protocol, length,
                src[0], src[1], dst[0], dst[1],
                self.src_port, self.dst_port, self.seq, self.ack, self.window,
            )
        except struct.error as exc:
            raise ValueError(f"packet field out of range: {exc}") from None
        checksum = zlib.crc32(payload, zlib.crc32(_ZERO_CHECKSUM, zlib.crc32(head)))
        return b"".join((head, _CHECKSUM.pack(checksum), payload))

    @classmethod
    def decode(cls, data: bytes, offset: int = 0, *, verify_checksum: bool = True) -> Self:
        """Decode the packet that starts at ``offset`` of ``data``.

        Raises :class:`DecodeError` for a short buffer, a truncated payload,
        a checksum mismatch or a version other than 1.  ``verify_checksum=False``
        is for bytes a tunnel frame's AEAD tag has authenticated: they are the
        very bytes the peer sealed, so the CRC (a third of this call's cost
        for a 1 KiB segment) can tell nothing more.
        """
        available = len(data) - offset
        if available < HEADER_SIZE:
            raise DecodeError(f"packet too short: {available} bytes, the header alone is {HEADER_SIZE}")
        (vf, protocol, length, src_net, src_node, dst_net, dst_node,
         src_port, dst_port, seq, ack, window) = _HEAD.unpack_from(data, offset)
        end = offset + HEADER_SIZE + length
        if len(data) < end:
            raise DecodeError(
                f"packet truncated: header announces {length} payload bytes, "
                f"{available - HEADER_SIZE} present"
            )
        if verify_checksum:
            view = memoryview(data)
            checksum_at = offset + _CHECKSUM_OFFSET
            computed = zlib.crc32(
                view[checksum_at + 4:end],
                zlib.crc32(_ZERO_CHECKSUM, zlib.crc32(view[offset:checksum_at])),
            )
            (stored,) = _CHECKSUM.unpack_from(data, checksum_at)
            if computed != stored:
                raise DecodeError(f"packet checksum mismatch: header says {stored:08x}, content gives {computed:08x}")
        if vf >> 4 != VERSION:
            raise DecodeError(f"unsupported packet version {vf >> 4} (only version {VERSION} exists)")
        packet = cls.__new__(cls)
        packet.flags = vf & 0x0F
        packet.protocol = protocol
        packet.src = _new_tuple(Addr, (src_net, src_node))
        packet.dst = _new_tuple(Addr, (dst_net, dst_node))
        packet.src_port = src_port
        packet.dst_port = dst_port
        packet.seq = seq
        packet.ack = ack
        packet.window = window
        packet.payload = bytes(data[end - length:end])  # bytes of bytes is the slice itself: one copy
        return packet

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        proto = PROTOCOL_NAMES.get(self.protocol, f"0x{self.protocol:02x}")
        return (
            f"<Packet {proto} {flag_names(self.flags)} {self.src}:{self.src_port} -> "
            f"{self.dst}:{self.dst_port} seq={self.seq} ack={self.ack} win={self.window} "
            f"len={len(self.payload)}>"
        )
