"""The directory's sort orders, kept sorted as the directory changes.

Each order holds packed integer keys, ``(sort value << 32) | node ID`` (node
IDs fit in 32 bits): ints compare far faster than tuples, the node ID breaks
ties by address, and ``key & ID_MASK`` gives the node back.

The keys live in a :class:`sortedcontainers.SortedList` (sublists of about a
thousand keys with an index of their positions) rather than one flat list: at
a million nodes an insert into a flat list moves up to 8 MB of pointers (about
1 ms, five orders per changed node), and a batch of changes had to re-sort the
whole list; here a key moves in a few microseconds whatever the size, and a
walk from any position finds its sublist through the index without copying
keys.  The memory is the flat list's: a pointer and an int per key.
"""

from functools import partial
from operator import and_

from sortedcontainers import SortedList

ID_BITS = 32
ID_MASK = (1 << ID_BITS) - 1

# Sort name (see ``query.SORTS``) -> packed key of a row.
KEYS = {
    "address": lambda row: row.id,
    "polo-desc": lambda row: (-row.polo_score << ID_BITS) | row.id,
    "polo-asc": lambda row: (row.polo_score << ID_BITS) | row.id,
    "trust-desc": lambda row: (-row.trust_links << ID_BITS) | row.id,
    "status": lambda row: (int(not row.online) << ID_BITS) | row.id,
}

node_id = partial(and_, ID_MASK)


class SortOrder:
    """Every row's key for one sort, in order."""

    def __init__(self, sort: str, rows=()) -> None:
        self.key = KEYS[sort]
        self.keys = SortedList(map(self.key, rows))

    def __len__(self) -> int:
        return len(self.keys)

    def ids(self, start: int = 0, stop: int | None = None):
        """Node IDs in order from position ``start``, lazily (no copy of the keys)."""
        return map(node_id, self.keys.islice(start, stop))

    def update(self, removed, added) -> None:
        """Drop the keys of the ``removed`` rows and put in those of the ``added`` rows."""
        keys = self.keys
        for key in map(self.key, removed):
            keys.remove(key)
        keys.update(map(self.key, added))
