"""The directory's sort orders, kept sorted as the directory changes.

Each order is a sorted list of packed integer keys, ``(sort value << 32) | node
ID`` (node IDs fit in 32 bits): ints compare far faster than tuples, the node ID
breaks ties by address, and ``key & ID_MASK`` gives the node back.  Sorting
100,000 of them takes about 10 ms once; after that a change moves only the keys
of the nodes it touched (a bisect each, or one merge-sort of a mostly sorted
list for a large batch), so no query pays for a full sort after a heartbeat or a
registration.
"""

from bisect import bisect_left, insort
from functools import partial
from itertools import filterfalse, islice
from operator import and_

ID_BITS = 32
ID_MASK = (1 << ID_BITS) - 1
# Up to this many keys moved in one batch are moved one by one (about 10 us
# each at 100,000 nodes); a larger batch filters and re-sorts the list (a few ms).
BISECT_LIMIT = 128

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

    def __init__(self, sort, rows):
        self.key = KEYS[sort]
        self.keys = sorted(map(self.key, rows))

    def __len__(self):
        return len(self.keys)

    def ids(self, start=0, stop=None):
        """Node IDs in order, lazily (``map`` over a slice: no Python loop).

        Without ``stop`` (a walk that stops at the first page's worth of
        matches) the keys are not copied: a copy of a million-key list touches
        every key's reference count, about 70 ms per 200,000 keys on a cold cache.
        """
        return map(node_id, self.keys[start:stop] if stop is not None
                   else islice(self.keys, start, None))

    def update(self, removed, added):
        """Drop the keys of the ``removed`` rows and put in those of the ``added`` rows."""
        gone = list(map(self.key, removed))
        new = list(map(self.key, added))
        keys = self.keys
        if len(gone) + len(new) <= BISECT_LIMIT:
            for key in gone:
                del keys[bisect_left(keys, key)]
            for key in new:
                insort(keys, key)
        else:
            kept = list(filterfalse(set(gone).__contains__, keys))
            kept += new
            kept.sort()
            self.keys = kept
