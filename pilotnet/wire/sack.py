"""The in-band SACK blob carried as the payload of a stream ACK.

``"SACK"`` | count u8 (1-4) | count x (left u32, right u32), where ``left`` is
the first byte of a received range and ``right`` the first byte after it.

Go peers treat *any* stream payload that parses as a SACK blob as SACK and
never as data, so a sender must not emit a data segment that
:func:`looks_like_sack` (the transport engine splits such segments).
"""

import struct
from collections.abc import Sequence

from pilotnet.errors import DecodeError

MAGIC = b"SACK"
MAX_BLOCKS = 4
_HEAD_SIZE = 5
_BLOCK = struct.Struct(">II")
_BLOCK_STRUCTS = {n: struct.Struct(">" + "II" * n) for n in range(1, MAX_BLOCKS + 1)}


def encode_sack(blocks: Sequence[tuple[int, int]]) -> bytes:
    """Encode 1-4 ``(left, right)`` blocks."""
    count = len(blocks)
    if not 1 <= count <= MAX_BLOCKS:
        raise ValueError(f"a SACK blob carries 1 to {MAX_BLOCKS} blocks, not {count}")
    flat = [edge for block in blocks for edge in block]
    return MAGIC + bytes((count,)) + _BLOCK_STRUCTS[count].pack(*flat)


def looks_like_sack(payload: bytes) -> bool:
    """True when a Go receiver would read ``payload`` as a SACK blob.

    The reference's rule: at least 5 bytes, starts with ``SACK``, a count of
    1-4, and room for that many blocks (extra bytes are ignored).
    """
    if len(payload) < _HEAD_SIZE or payload[:4] != MAGIC:
        return False
    count = payload[4]
    return 1 <= count <= MAX_BLOCKS and len(payload) >= _HEAD_SIZE + _BLOCK.size * count


def decode_sack(payload: bytes) -> list[tuple[int, int]]:
    """The list of ``(left, right)`` blocks; :class:`DecodeError` if not a SACK blob."""
    if not looks_like_sack(payload):
        raise DecodeError(
            f"not a SACK blob: {len(payload)} bytes starting {bytes(payload[:5])!r} "
            f"(need 'SACK', a count of 1-{MAX_BLOCKS} and that many 8-byte blocks)"
        )
    count = payload[4]
    flat = _BLOCK_STRUCTS[count].unpack_from(payload, _HEAD_SIZE)
    return [(flat[i], flat[i + 1]) for i in range(0, 2 * count, 2)]
