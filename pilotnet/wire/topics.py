"""Which event-stream subscriptions a published topic reaches.

Topics are dot-separated segments.  A subscription pattern matches a topic
when, segment by segment:

* a literal segment equals the topic's segment;
* a ``*`` segment that is *not* last matches exactly one segment
  (``pipeline.*.complete`` matches ``pipeline.build.complete``);
* a ``*`` segment that *is* last matches one or more remaining segments
  (``metrics.*`` matches ``metrics.cpu`` and ``metrics.cpu.load`` but not
  ``metrics``); so ``*`` alone matches every topic.

A segment that merely contains ``*`` (``cpu*``) is literal, and a pattern
without ``*`` matches only the identical topic.  Every topic matches a
pattern equal to it, so everything the reference delivers (exact equality and
``*``) we deliver too; the reference treats ``metrics.*`` as a plain string,
which is the behaviour its own documentation says it does not have.

:class:`SubscriptionIndex` answers "who gets this topic" for a broker with
many subscriptions: patterns live in a trie of segments, so a lookup costs a
walk over the topic's segments (branching only at ``*`` nodes) instead of a
test of every subscription.
"""

from collections.abc import Hashable

WILDCARD = "*"
SEPARATOR = "."


def topic_matches(pattern: str, topic: str) -> bool:
    """Does subscription ``pattern`` match published ``topic``?  (The rules above.)"""
    wanted = pattern.split(SEPARATOR)
    given = topic.split(SEPARATOR)
    *leading, last = wanted
    if last == WILDCARD:
        if len(given) < len(wanted):
            return False
    elif len(given) != len(wanted) or last != given[-1]:
        return False
    return all(w == WILDCARD or w == g for w, g in zip(leading, given))


class _Node:
    """One trie level: children by segment, and who subscribed to end here."""

    __slots__ = ("children", "exact", "tail")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.exact: set[Hashable] = set()  # patterns ending at this node
        self.tail: set[Hashable] = set()   # patterns ending with ".*" after this node (one or more segments)

    def is_empty(self) -> bool:
        return not (self.children or self.exact or self.tail)


class SubscriptionIndex:
    """Subscribers (any hashable) by topic pattern, matched by :meth:`match`."""

    __slots__ = ("_root", "_count")

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0

    def __len__(self) -> int:
        """The number of (pattern, subscriber) entries."""
        return self._count

    def _slot(self, node: _Node, pattern: str) -> set[Hashable]:
        # The trailing "*" is not stored as a node: it is the ``tail`` set of
        # the node before it.
        return node.tail if pattern.split(SEPARATOR)[-1] == WILDCARD else node.exact

    @staticmethod
    def _path(pattern: str) -> list[str]:
        segments = pattern.split(SEPARATOR)
        return segments[:-1] if segments[-1] == WILDCARD else segments

    def add(self, pattern: str, subscriber: Hashable) -> None:
        node = self._root
        for segment in self._path(pattern):
            node = node.children.setdefault(segment, _Node())
        slot = self._slot(node, pattern)
        if subscriber not in slot:
            slot.add(subscriber)
            self._count += 1

    def remove(self, pattern: str, subscriber: Hashable) -> None:
        """Forget one subscription (no error if absent); prunes emptied trie nodes."""
        trail = [self._root]
        for segment in self._path(pattern):
            child = trail[-1].children.get(segment)
            if child is None:
                return
            trail.append(child)
        slot = self._slot(trail[-1], pattern)
        if subscriber not in slot:
            return
        slot.discard(subscriber)
        self._count -= 1
        for segment, parent, child in zip(reversed(self._path(pattern)), reversed(trail[:-1]), reversed(trail[1:])):
            if not child.is_empty():
                break
            del parent.children[segment]

    def match(self, topic: str) -> set[Hashable]:
        """Every subscriber with a pattern matching ``topic`` (each once)."""
        segments = topic.split(SEPARATOR)
        depth = len(segments)
        found: set[Hashable] = set()
        pending = [(self._root, 0)]
        while pending:
            node, index = pending.pop()
            if index == depth:
                found |= node.exact
                continue
            found |= node.tail
            segment = segments[index]
            child = node.children.get(segment)
            if child is not None:
                pending.append((child, index + 1))
            if segment != WILDCARD:
                wildcard = node.children.get(WILDCARD)
                if wildcard is not None:
                    pending.append((wildcard, index + 1))
        return found
