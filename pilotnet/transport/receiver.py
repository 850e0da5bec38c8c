"""The receive side: in-order delivery, the out-of-order buffer, SACK blocks and the window.

Unlike the Go reference, overlapping segments are trimmed rather than dropped:
a segment that starts before the next expected byte but carries new bytes past
it delivers those bytes.  Out-of-order segments are kept under their start
position; overlaps among them are resolved when they are delivered, so storage
never copies.

The advertised window is in segments (reference rule), computed from the bytes
we really hold: delivered-but-unconsumed plus out-of-order.  A window field of
0 means "unlimited" to Go senders, so we never advertise less than 1; that
last slot is honoured with one segment of slack beyond the buffer.
"""

from bisect import insort

from pilotnet.transport.config import StreamConfig
from pilotnet.transport.ranges import Ranges
from pilotnet.transport.seqnum import SEQ_MASK
from pilotnet.wire.sack import MAX_BLOCKS

#: Outcomes of :meth:`ReceiveBuffer.accept`.
IN_ORDER = 0
OUT_OF_ORDER = 1
DUPLICATE = 2
NO_SPACE = 3

_MAX_WINDOW_FIELD = 0xFFFF


class ReceiveBuffer:
    def __init__(self, config: StreamConfig) -> None:
        #: The next expected position (absolute); set by the handshake.
        self.nxt = 0
        self.limit = config.receive_buffer
        #: Bytes per advertised window slot: our MSS, or the peer's largest
        #: segment if bigger (a Go peer with a 4096-byte MSS fills a slot with 4096).
        self.unit = config.mss
        self.max_out_of_order = config.max_out_of_order
        #: Delivered chunks the application has not taken yet.
        self.delivered: list[bytes] = []
        #: Delivered bytes the application has not reported as consumed.
        self.unconsumed = 0
        self.ooo_bytes = 0
        self._ooo: dict[int, bytes] = {}
        self._starts: list[int] = []
        #: The out-of-order data as merged ranges, kept up to date as segments come and go,
        #: so that an ACK's SACK blocks do not walk every segment held.
        self._ranges = Ranges()

    @property
    def out_of_order_count(self) -> int:
        return len(self._starts)

    def window(self) -> int:
        """The window field to advertise, in segments, 1-65535."""
        slots = (self.limit - self.unconsumed - self.ooo_bytes) // self.unit
        if slots < 1:
            return 1
        return slots if slots < _MAX_WINDOW_FIELD else _MAX_WINDOW_FIELD

    def note_segment_size(self, size: int) -> None:
        if size > self.unit:
            self.unit = size

    def accept(self, seq: int, payload: bytes) -> int:
        """File one data segment at absolute position ``seq``; return an outcome constant."""
        nxt = self.nxt
        if seq != nxt:
            end = seq + len(payload)
            if end <= nxt:
                return DUPLICATE
            if seq > nxt:
                return self._store_out_of_order(seq, payload)
            payload = payload[nxt - seq:]
        size = len(payload)
        if self.unconsumed + self.ooo_bytes + size > self.limit + self.unit:
            return NO_SPACE
        self.delivered.append(payload)
        self.unconsumed += size
        self.nxt = nxt + size
        if self._starts:
            self._drain()
        return IN_ORDER

    def _store_out_of_order(self, seq: int, payload: bytes) -> int:
        size = len(payload)
        held = self._ooo.get(seq)
        if held is not None:
            if len(held) >= size:
                return DUPLICATE
            growth = size - len(held)
        else:
            if len(self._starts) >= self.max_out_of_order:
                return NO_SPACE
            growth = size
        if self.unconsumed + self.ooo_bytes + growth > self.limit + self.unit:
            return NO_SPACE
        if held is None:
            insort(self._starts, seq)
        self._ooo[seq] = payload
        self.ooo_bytes += growth
        self._ranges.cover(seq, seq + size)
        return OUT_OF_ORDER

    def _drain(self) -> None:
        starts = self._starts
        ooo = self._ooo
        nxt = self.nxt
        while starts and starts[0] <= nxt:
            start = starts.pop(0)
            payload = ooo.pop(start)
            self.ooo_bytes -= len(payload)
            end = start + len(payload)
            if end > nxt:
                piece = payload[nxt - start:] if start < nxt else payload
                self.delivered.append(piece)
                self.unconsumed += len(piece)
                nxt = end
        self.nxt = nxt
        self._ranges.trim(nxt)  # what was delivered was the whole of the lowest ranges

    def sack_blocks(self) -> list[tuple[int, int]]:
        """Up to 4 merged (left, right) wire ranges of out-of-order data, lowest first."""
        ranges = self._ranges
        return [(left & SEQ_MASK, right & SEQ_MASK)
                for left, right in zip(ranges.lefts[:MAX_BLOCKS], ranges.rights[:MAX_BLOCKS])]

    def take(self) -> list[bytes]:
        """Hand the delivered chunks to the application."""
        chunks = self.delivered
        self.delivered = []
        return chunks

    def consume(self, count: int) -> None:
        self.unconsumed -= count if count < self.unconsumed else self.unconsumed
