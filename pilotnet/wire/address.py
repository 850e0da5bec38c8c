"""Virtual addresses (48 bits) and socket addresses (address + 16-bit port).

Text form: ``<network decimal>:<network hex>.<node high hex>.<node low hex>``
with upper-case, zero-padded 4-digit groups, e.g. ``1:0001.F291.0004``.
Binary form: network u16 then node u32, big-endian (6 bytes).
"""

import struct
from typing import NamedTuple, Self

from pilotnet.errors import DecodeError

ADDRESS_SIZE = 6
MAX_NETWORK = 0xFFFF
MAX_NODE = 0xFFFFFFFF
MAX_PORT = 0xFFFF
BROADCAST_NODE = 0xFFFFFFFF

# Port ranges and well-known ports (reference dataplane section 1.4).
EPHEMERAL_PORT_MIN = 49152
PORT_PING = 0
PORT_ECHO = 7
PORT_SECURE = 443
PORT_HANDSHAKE = 444
PORT_STDIO = 1000
PORT_DATA_EXCHANGE = 1001
PORT_EVENT_STREAM = 1002
PORT_TASK_SUBMIT = 1003

_ADDRESS = struct.Struct(">HI")
_DECIMAL = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")


def _parse_decimal(text: str, limit: int, what: str) -> int:
    # int() alone would also take "+1", "1_0", " 1" and non-ASCII digits.
    if not text or not set(text) <= _DECIMAL:
        raise DecodeError(f"invalid {what}: {text!r} (expected a decimal number)")
    value = int(text)
    if value > limit:
        raise DecodeError(f"invalid {what}: {text!r} (must be at most {limit})")
    return value


def _parse_hex_group(group: str) -> int:
    # int(x, 16) would also take "0x1f"; groups are exactly four hex digits.
    if len(group) != 4 or not set(group) <= _HEX:
        raise DecodeError(f"invalid hex group: {group!r} (expected 4 hex digits)")
    return int(group, 16)


class Addr(NamedTuple):
    """A virtual address: a 16-bit network and a 32-bit node ID."""

    network: int
    node: int

    @classmethod
    def parse(cls, text: object) -> Self:
        """Parse the text form; raises :class:`DecodeError` saying what is wrong."""
        if not isinstance(text, str):
            raise DecodeError(f"invalid address: expected text, got {type(text).__name__}")
        network_text, colon, groups_text = text.partition(":")
        if not colon:
            raise DecodeError(f"invalid address: {text!r} (expected N:XXXX.YYYY.YYYY)")
        network = _parse_decimal(network_text, MAX_NETWORK, "network ID")
        groups = groups_text.split(".")
        if len(groups) != 3:
            raise DecodeError(
                f"invalid address: {groups_text!r} (expected 3 dot-separated hex groups)"
            )
        hex_network, node_high, node_low = (_parse_hex_group(g) for g in groups)
        if hex_network != network:
            raise DecodeError(
                f"network mismatch in {text!r}: decimal {network} != hex 0x{hex_network:04X}"
            )
        return cls(network, (node_high << 16) | node_low)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> Self:
        if len(data) < offset + ADDRESS_SIZE:
            raise DecodeError(
                f"address truncated: need {ADDRESS_SIZE} bytes at offset {offset}, "
                f"have {max(0, len(data) - offset)}"
            )
        return cls._make(_ADDRESS.unpack_from(data, offset))

    def to_bytes(self) -> bytes:
        return _ADDRESS.pack(self.network, self.node)

    @property
    def is_zero(self) -> bool:
        return self.network == 0 and self.node == 0

    @property
    def is_broadcast(self) -> bool:
        return self.node == BROADCAST_NODE

    def __str__(self) -> str:
        node = self.node
        return f"{self.network}:{self.network:04X}.{node >> 16:04X}.{node & 0xFFFF:04X}"


ZERO = Addr(0, 0)
REGISTRY = Addr(0, 1)
BEACON = Addr(0, 2)
NAMESERVER = Addr(0, 3)


def broadcast(network: int) -> Addr:
    """The broadcast address of ``network``."""
    return Addr(network, BROADCAST_NODE)


class SocketAddr(NamedTuple):
    """A virtual address and a port: ``0:0000.0000.0001:1000``."""

    addr: Addr
    port: int

    @classmethod
    def parse(cls, text: object) -> Self:
        if not isinstance(text, str):
            raise DecodeError(f"invalid socket address: expected text, got {type(text).__name__}")
        addr_text, colon, port_text = text.rpartition(":")
        if not colon:
            raise DecodeError(f"invalid socket address: {text!r} (expected ADDRESS:PORT)")
        return cls(Addr.parse(addr_text), _parse_decimal(port_text, MAX_PORT, "port"))

    def __str__(self) -> str:
        return f"{self.addr}:{self.port}"
