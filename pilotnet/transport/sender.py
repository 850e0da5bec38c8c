"""The send side: unsent bytes, segmentation, and the retransmission queue with its SACK scoreboard.

Segments keep the boundaries they were first sent with until they are
acknowledged, because Go receivers drop any segment that starts before the
next expected byte instead of trimming it: a retransmission must be the very
same segment.

The queue is a list with a moving head index rather than a deque so that SACK
blocks can be located by bisection; acknowledged entries are sliced off in
batches, which keeps the per-segment cost constant.
"""

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from operator import attrgetter

from pilotnet.transport.ranges import Ranges
from pilotnet.wire.sack import MAGIC as SACK_MAGIC
from pilotnet.wire.sack import looks_like_sack

# Compact the queue once this many acknowledged entries sit before the head.
_COMPACT_AFTER = 512
_segment_start = attrgetter("start")


class Segment:
    """One transmitted segment awaiting acknowledgment (``payload`` None for our FIN)."""

    __slots__ = ("start", "end", "payload", "sent_at", "transmissions", "sacked", "episode", "mark")

    def __init__(self, start: int, end: int, payload: bytes | None, sent_at: float) -> None:
        self.start = start
        self.end = end
        self.payload = payload
        self.sent_at = sent_at
        self.transmissions = 1
        self.sacked = False
        #: The recovery episode in which it was last resent (0: never).
        self.episode = 0
        #: Our next sequence number when it was last sent: if the peer SACKs
        #: anything at or beyond it, that transmission was lost.
        self.mark = end


class SendQueue:
    """Bytes the application wrote, from unsent through unacknowledged to acknowledged.

    ``una`` is the oldest unacknowledged position, ``nxt`` the next new one;
    both are absolute (see :mod:`pilotnet.transport.seqnum`).
    """

    def __init__(self, mss: int, first_seq: int) -> None:
        self.mss = mss
        self.una = first_seq
        self.nxt = first_seq
        self.segments: list[Segment] = []
        self.head = 0
        #: Bytes of queued segments the peer reported by SACK.
        self.sacked_bytes = 0
        #: The highest position any SACK block reached.
        self.high_sacked = first_seq
        #: What SACK blocks covered, above ``una``: a new block walks only the segments
        #: in what it adds, and the search for lost segments only those outside it.
        self.sacked_ranges = Ranges()
        #: Send time and end of the most recently sent segment the peer confirmed (by
        #: SACK or cumulative ACK): whatever we sent before it and is still missing
        #: after a reordering allowance was lost (RACK, RFC 8985).
        self.delivered_sent_at = float("-inf")
        self.delivered_end = first_seq
        #: Bytes written and not yet segmented.
        self.unsent = 0
        self.fin_queued = False
        self.fin_sent = False
        self._chunks: deque[bytes] = deque()
        self._chunk_offset = 0

    # -- the application side -------------------------------------------------

    def write(self, data: bytes) -> None:
        self._chunks.append(bytes(data))
        self.unsent += len(data)

    @property
    def buffered(self) -> int:
        """Bytes written and not yet acknowledged: what backpressure should look at."""
        return self.unsent + (self.nxt - self.una)

    # -- cutting new segments -------------------------------------------------

    def cut(self, size: int, now: float) -> Segment:
        """Segment the next ``size`` unsent bytes (``size <= unsent``) and queue it."""
        payload = self._take(size)
        if payload.startswith(SACK_MAGIC) and looks_like_sack(payload):
            # A Go receiver would swallow this segment as a SACK blob; sending
            # "SACK" on its own makes the next segment start with the count byte.
            self._untake(payload[4:])
            payload = payload[:4]
        start = self.nxt
        end = self.nxt = start + len(payload)
        segment = Segment(start, end, payload, now)
        self.segments.append(segment)
        return segment

    def cut_fin(self, now: float) -> Segment:
        """Queue our FIN: it takes one sequence number and is retransmitted like data."""
        start = self.nxt
        self.nxt = start + 1
        self.fin_sent = True
        segment = Segment(start, start + 1, None, now)
        self.segments.append(segment)
        return segment

    def _take(self, size: int) -> bytes:
        chunks = self._chunks
        offset = self._chunk_offset
        first = chunks[0]
        available = len(first) - offset
        self.unsent -= size
        if available > size:
            self._chunk_offset = offset + size
            return first[offset:offset + size]
        if available == size:
            chunks.popleft()
            self._chunk_offset = 0
            return first[offset:] if offset else first
        parts = [first[offset:]]
        chunks.popleft()
        needed = size - available
        while needed:
            chunk = chunks[0]
            if len(chunk) > needed:
                parts.append(chunk[:needed])
                self._chunk_offset = needed
                break
            parts.append(chunks.popleft())
            needed -= len(chunk)
        else:
            self._chunk_offset = 0
        return b"".join(parts)

    def _untake(self, data: bytes) -> None:
        if self._chunk_offset:
            self._chunks[0] = self._chunks[0][self._chunk_offset:]
            self._chunk_offset = 0
        self._chunks.appendleft(data)
        self.unsent += len(data)

    # -- acknowledgments ------------------------------------------------------

    def first_unacked(self) -> Segment | None:
        return self.segments[self.head] if self.head < len(self.segments) else None

    def first_unsacked(self) -> Segment | None:
        segments = self.segments
        for index in range(self.head, len(segments)):
            if not segments[index].sacked:
                return segments[index]
        return None

    def acknowledge(self, ack: int, now: float) -> float | None:
        """Drop segments wholly below ``ack``; return a Karn-valid RTT sample or None."""
        segments = self.segments
        index = self.head
        count = len(segments)
        rtt: float | None = None
        while index < count:
            segment = segments[index]
            if segment.end > ack:
                break
            if segment.sacked:
                self.sacked_bytes -= segment.end - segment.start
            else:
                if segment.transmissions == 1:
                    rtt = now - segment.sent_at
                self._delivered(segment)
            index += 1
        if index > _COMPACT_AFTER and index * 2 > count:
            del segments[:index]
            index = 0
        self.head = index
        self.una = ack
        if self.high_sacked < ack:
            self.high_sacked = ack
        if self.sacked_ranges.lefts:
            self.sacked_ranges.trim(ack)
        return rtt

    def apply_sack(self, blocks: Iterable[tuple[int, int]]) -> int:
        """Mark segments lying wholly inside a block; return the bytes newly marked."""
        segments = self.segments
        count = len(segments)
        una = self.una
        nxt = self.nxt
        newly = 0
        for left, right in blocks:
            if left < una:
                left = una
            if right > nxt:
                right = nxt
            ranges = self.sacked_ranges
            if left >= right or ranges.covers(left, right):
                continue  # most blocks of an ACK repeat what the last one said
            walked = head = self.head
            for gap_left, gap_right in ranges.gaps(left, right):
                # From the segment holding the gap's start: one that began under an earlier block counts too.
                index = bisect_right(segments, gap_left, head, count, key=_segment_start) - 1
                index = index if index > walked else walked
                while index < count:
                    segment = segments[index]
                    if segment.start >= gap_right or segment.end > right:
                        break
                    if not segment.sacked and segment.start >= left:
                        segment.sacked = True
                        newly += segment.end - segment.start
                        self._delivered(segment)
                    index += 1
                walked = index
            # Record the whole segments inside the block (every one of them is marked now): a
            # segment the block's edge cuts is not SACKed, and must stay where lost_segments looks.
            first = bisect_right(segments, left - 1, head, count, key=_segment_start)
            last = bisect_right(segments, right - 1, first, count, key=_segment_start) - 1
            if last >= first and segments[last].end > right:
                last -= 1
            if last >= first:
                ranges.cover(segments[first].start, segments[last].end)
            if right > self.high_sacked:
                self.high_sacked = right
        self.sacked_bytes += newly
        return newly

    def _delivered(self, segment: Segment) -> None:
        sent_at = segment.sent_at
        if sent_at > self.delivered_sent_at or (sent_at == self.delivered_sent_at
                                                and segment.end > self.delivered_end):
            self.delivered_sent_at = sent_at
            self.delivered_end = segment.end

    def overtaken(self, segment: Segment, now: float, reorder_wait: float) -> bool:
        """RACK's verdict: a segment sent after ``segment`` arrived, and ``reorder_wait`` has passed since."""
        delivered = self.delivered_sent_at
        sent_at = segment.sent_at
        return ((sent_at < delivered or (sent_at == delivered and segment.end < self.delivered_end))
                and now - sent_at >= reorder_wait)

    def lost_segments(self, episode: int, limit: int, now: float, reorder_wait: float) -> list[Segment]:
        """Segments presumed lost in recovery ``episode``, oldest first.

        Every unSACKed segment below ``limit`` not yet resent in this episode,
        plus those resent in it whose resend was itself lost: overtaken by
        SACKed new data (sequence evidence), or by any segment sent after it,
        resends included, once ``reorder_wait`` has passed (time evidence).
        """
        lost: list[Segment] = []
        high = self.high_sacked
        segments = self.segments
        count = len(segments)
        walked = head = self.head
        for gap_left, gap_right in self.sacked_ranges.gaps(self.una, limit):
            index = bisect_right(segments, gap_left, head, count, key=_segment_start) - 1
            index = index if index > walked else walked
            while index < count:
                segment = segments[index]
                if segment.start >= gap_right:
                    break
                index += 1
                if segment.sacked or (segment.episode == episode and high <= segment.mark
                                      and not self.overtaken(segment, now, reorder_wait)):
                    continue
                lost.append(segment)
            walked = index
        return lost

    def last_unsacked(self) -> Segment | None:
        """The newest segment still unconfirmed: what a tail-loss probe resends."""
        segments = self.segments
        for index in range(len(segments) - 1, self.head - 1, -1):
            if not segments[index].sacked:
                return segments[index]
        return None

    def mark_resent(self, segment: Segment, episode: int, now: float) -> None:
        segment.transmissions += 1
        segment.episode = episode
        segment.mark = self.nxt
        segment.sent_at = now
