"""Merged ranges of sequence space (the SACK scoreboards), against a plain set of covered positions."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.transport.ranges import Ranges
from pilotnet.transport.sender import SendQueue

spans = st.tuples(st.integers(0, 120), st.integers(1, 25)).map(lambda span: (span[0], span[0] + span[1]))


def covered(ranges):
    return {position for left, right in zip(ranges.lefts, ranges.rights) for position in range(left, right)}


class RangesTests(SynchronousTestCase):
    @given(st.lists(st.one_of(spans.map(lambda span: ("cover", span)),
                              st.integers(0, 150).map(lambda below: ("trim", below))), max_size=40),
           spans)
    def test_cover_trim_and_gaps_agree_with_a_set(self, operations, window):
        ranges = Ranges()
        positions: set[int] = set()
        for operation, value in operations:
            if operation == "cover":
                ranges.cover(*value)
                positions |= set(range(*value))
            else:
                ranges.trim(value)
                positions = {position for position in positions if position >= value}
            self.assertEqual(covered(ranges), positions)
            # Lowest first, disjoint and not touching (touching ranges are merged).
            edges = [edge for pair in zip(ranges.lefts, ranges.rights) for edge in pair]
            self.assertTrue(all(a < b for a, b in zip(edges, edges[1:])), edges)
        self.assertEqual(ranges.covers(*window), set(range(*window)) <= positions)
        gaps = list(ranges.gaps(*window))
        self.assertEqual({p for left, right in gaps for p in range(left, right)}, set(range(*window)) - positions)
        self.assertTrue(all(left < right for left, right in gaps))


class SackScoreboardTests(SynchronousTestCase):
    @given(st.lists(st.integers(1, 6), min_size=1, max_size=30),
           st.lists(st.one_of(st.lists(spans, min_size=1, max_size=4).map(lambda blocks: ("sack", blocks)),
                              st.integers(0, 40).map(lambda step: ("ack", step))), max_size=12))
    def test_marks_and_lost_segments_as_a_walk_over_every_segment_finds_them(self, sizes, events):
        queue = SendQueue(8, 1)
        queue.write(bytes(sum(sizes)))
        segments = [queue.cut(size, 0.0) for size in sizes]
        seen: list[tuple[int, int]] = []
        for event, value in events:
            if event == "ack":
                # A cumulative ACK lands on a segment boundary at or below what was sent.
                boundaries = [s.end for s in segments if s.end <= queue.una + value] or [queue.una]
                queue.acknowledge(max(boundaries[-1], queue.una), 0.0)
            else:
                queue.apply_sack([(left + 1, right + 1) for left, right in value])
                seen += [(max(left + 1, queue.una), min(right + 1, queue.nxt)) for left, right in value]
            live = [s for s in segments if s.end > queue.una]
            expected_sacked = [any(left <= s.start and s.end <= right for left, right in seen) for s in live]
            self.assertEqual([s.sacked for s in live], expected_sacked)
            expected_lost = [s for s, sacked in zip(live, expected_sacked)
                             if not sacked and s.start < queue.high_sacked]
            self.assertEqual(queue.lost_segments(1, queue.high_sacked, 0.0, 1.0), expected_lost)
