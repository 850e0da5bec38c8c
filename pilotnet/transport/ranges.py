"""Disjoint ranges of sequence space, merged as they grow: what SACK blocks describe.

The receiver keeps the out-of-order data it holds this way, the sender what
the peer reported by SACK.  Each ACK then costs a few bisections rather than
a walk over every segment a large window holds while a hole is open.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Iterator


class Ranges:
    """Half-open [left, right) ranges, lowest first, none touching another."""

    __slots__ = ("lefts", "rights")

    def __init__(self) -> None:
        self.lefts: list[int] = []
        self.rights: list[int] = []

    def __len__(self) -> int:
        return len(self.lefts)

    def cover(self, left: int, right: int) -> None:
        """Add [left, right), merged with every range it touches or overlaps."""
        lefts, rights = self.lefts, self.rights
        first = bisect_left(rights, left)  # the first range ending at or after ``left``
        last = bisect_right(lefts, right)  # past the last range starting at or before ``right``
        if first < last:
            if lefts[first] < left:
                left = lefts[first]
            if rights[last - 1] > right:
                right = rights[last - 1]
        lefts[first:last] = [left]
        rights[first:last] = [right]

    def covers(self, left: int, right: int) -> bool:
        """Whether one range holds all of [left, right)."""
        index = bisect_right(self.lefts, left) - 1
        return index >= 0 and self.rights[index] >= right

    def trim(self, below: int) -> None:
        """Forget everything below ``below``."""
        lefts, rights = self.lefts, self.rights
        gone = bisect_right(rights, below)
        if gone:
            del lefts[:gone], rights[:gone]
        if lefts and lefts[0] < below:
            lefts[0] = below

    def gaps(self, left: int, right: int) -> Iterator[tuple[int, int]]:
        """The parts of [left, right) no range covers, lowest first."""
        lefts, rights = self.lefts, self.rights
        index = bisect_right(rights, left)  # the first range ending after ``left``
        count = len(lefts)
        while left < right:
            if index == count or lefts[index] >= right:
                yield left, right
                return
            if lefts[index] > left:
                yield left, lefts[index]
            left = rights[index]
            index += 1
