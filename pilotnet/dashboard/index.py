"""The dashboard's indexed view of the registry's directory, kept up to date change by change.

A realistic registry changes every few seconds (registrations, heartbeats,
trust, scores), so rebuilding indexes on each change would make the first
query after it pay a full scan and sort of 100,000 nodes.  Instead
:class:`DirectoryIndex` is built once and then told which nodes and trust
consents changed (from the registry's commits); :meth:`DirectoryIndex.refresh`
re-reads only those nodes and moves only their entries:

* node ID -> :class:`Row` (a new Row per change, so a page already handed
  out never changes under its reader);
* tag -> node IDs (a search scans the distinct tags, not the nodes);
* the online and task-executor sets, the client versions, the trust pairs;
* every sort order (:mod:`pilotnet.dashboard.order`).

Online status also follows the clock and heartbeats, which the registry does
not commit one by one: at most every ``ONLINE_CHECK`` seconds a refresh
compares ``last_seen`` with the cutoff for the next ``ONLINE_BUDGET`` nodes
of a sweep over the indexed nodes in address order (every node up to 100,000 nodes, a few ms; a
tenth of a million-node directory, so that no refresh holds the reactor for
the 100 ms a whole scan takes) and updates the nodes that crossed it.

A query is answered without building its set of matches (a set intersection
of hundreds of thousands of IDs at a million nodes, and gone at the next
change): each tag keeps how many of its nodes are online, task executors,
both or neither, so the total of a search naming one tag (or none) is a sum of
counters, and its page comes from a walk of the sort order that tests each key
against the filter sets (smallest first) and stops at the page, or, when the
walk would be longer, from sorting the smallest filter set alone.  A search
whose text is part of several tags, or that keeps one network's members,
builds its set of matches once and keeps it up to date change by change.

A large directory is indexed in steps (:meth:`DirectoryIndex.build_step`), so
that the registry keeps answering while a million nodes are indexed.

Nothing here exposes an IP, a key or an endpoint: :class:`Row` has no field
for them, and a hostname only for public nodes.
"""

import json
from collections import Counter
from dataclasses import dataclass
from heapq import nsmallest
from itertools import islice

from pilotnet.dashboard.order import ID_MASK, KEYS, SortOrder
from pilotnet.dashboard.query import PAGE_SIZE
from pilotnet.errors import NOT_RUNNING, PilotError
from pilotnet.registry.directory import BACKBONE, address_text

ONLINE_CHECK = 1.0
ONLINE_BUDGET = 100_000
# A page is taken from a walk of the sort order when the walk visits fewer keys
# than SORT_COST times the smallest filter set (sorting costs a key, a test
# and a comparison per candidate); otherwise that set is sorted on its own.
SORT_COST = 4
MAX_CACHED = 256
# Match sets kept up to date (searches matching several tags, or a network's).
MAX_MATCH_SETS = 16
# A row's filter flags: an index into each tag's counters.
ONLINE, TASKS = 1, 2
UNKNOWN_VERSION = "unknown"


class Indexing(PilotError):
    """The directory is still being indexed (after start, or a directory replaced wholesale)."""

    code = NOT_RUNNING


@dataclass(frozen=True, slots=True)
class Row:
    """One node as the dashboard may show it (``version`` feeds the version counts only)."""

    id: int
    hostname: str
    online: bool
    polo_score: int
    trust_links: int
    tags: tuple
    task_exec: bool
    version: str

    @property
    def address(self):
        return address_text(BACKBONE, self.id)

    @property
    def flags(self) -> int:
        return self.online * ONLINE | self.task_exec * TASKS

    def public(self):
        """The node as ``/api/nodes`` and ``/api/stats`` show it."""
        return {"address": self.address, "hostname": self.hostname, "online": self.online,
                "polo_score": self.polo_score, "trust_links": self.trust_links,
                "tags": list(self.tags), "task_exec": self.task_exec}


@dataclass(frozen=True, slots=True)
class Page:
    rows: list
    total: int
    number: int
    pages: int


def _version(text):
    """A bare release number gets a ``v`` (``1.2.0`` -> ``v1.2.0``); a named one stays as sent."""
    if not text:
        return UNKNOWN_VERSION
    return f"v{text}" if text[0].isdigit() else text


def consent_pair(key):
    """The ``(a, b)`` of a stored consent key ``"a:b"``."""
    a, b = key.split(":")
    return int(a), int(b)


class DirectoryIndex:
    """Indexes over ``registry``'s directory as of the last :meth:`refresh`.

    With ``build=False`` the index starts empty and :meth:`build_step` indexes
    the directory a step at a time; until it is done (``building``) the index
    must not be queried or refreshed, only told of changes (:meth:`note`).
    """

    def __init__(self, registry, now: float, build: bool = True) -> None:
        self._registry = registry
        self._directory = registry.directory
        self.nodes = self._directory.nodes
        self.rows: dict[int, Row] = {}
        self.online: set[int] = set()
        self.executors: set[int] = set()
        self.tag_index: dict[str, set[int]] = {}
        # Tag -> how many of its nodes have each combination of flags (Row.flags).
        self._tag_counts: dict[str, list[int]] = {}
        self._flag_counts = [0, 0, 0, 0]
        self.pairs: set[tuple[int, int]] = set()
        self._links: Counter[int] = Counter()
        self._versions: Counter[str] = Counter()
        self._orders = {sort: SortOrder(sort) for sort in KEYS}
        self._cache: dict[str, object] = {}
        # Search text -> the tags containing it; dropped when a tag appears or goes.
        self._names: dict[str, tuple[str, ...]] = {}
        # (tag, flags, network) -> the IDs matching it, kept up to date.
        self._match_sets: dict[tuple[str, int, int], set[int]] = {}
        self._checked = now
        self._cutoff = now - registry.offline_after
        # How far the online sweep got (a position in the address order).
        self._sweep_at = 0
        self._changed_nodes: set[int] = set()
        self._changed_pairs: set[tuple[int, int]] = set()
        # What a build has yet to index (taken from the end of each list).
        self._unbuilt_nodes = list(self.nodes)
        self._unbuilt_pairs = list(self._directory.consents)
        if build:
            self.build_step(len(self._unbuilt_nodes) + len(self._unbuilt_pairs))

    @property
    def building(self) -> bool:
        return bool(self._unbuilt_nodes or self._unbuilt_pairs)

    @property
    def progress(self) -> tuple[int, int]:
        """``(nodes indexed, nodes to index)`` of a build."""
        return len(self.rows), len(self.rows) + len(self._unbuilt_nodes)

    def build_step(self, budget: int) -> bool:
        """Index up to ``budget`` more of the directory's consents, then of its nodes; done yet?

        Consents go first: while no row exists, a mutual pair only counts a
        link and adds its nodes' rows, where later it would move each node's
        key in every sort order.
        """
        if self._unbuilt_pairs:
            chunk = self._unbuilt_pairs[-budget:]
            del self._unbuilt_pairs[-len(chunk):]
            self._changed_pairs.update(chunk)
            self._update_rows(self._update_pairs())
            budget -= len(chunk)
        if budget > 0 and self._unbuilt_nodes:
            chunk = self._unbuilt_nodes[-budget:]
            del self._unbuilt_nodes[-budget:]
            self._update_rows(chunk)
        return not self.building

    # -- keeping up ------------------------------------------------------------

    def note(self, changes):
        """Remember which nodes and consents a commit's ``(kind, key, value)`` changes touched."""
        for kind, key, _ in changes:
            if kind == "node":
                self._changed_nodes.add(int(key))
            elif kind == "consent":
                self._changed_pairs.add(consent_pair(key))
            elif kind == "network":
                # A membership filter's results.
                for key in [key for key in self._match_sets if key[2]]:
                    del self._match_sets[key]

    def refresh(self, now):
        """Bring the indexes up to date with the noted changes and, now and then, the clock."""
        changed, self._changed_nodes = self._changed_nodes, set()
        if now - self._checked >= ONLINE_CHECK:
            self._checked = now
            self._cutoff = now - self._registry.offline_after
            changed |= self._crossed(self._cutoff)
        changed |= self._update_pairs()
        self._update_rows(changed)

    def _crossed(self, cutoff):
        """IDs, among the sweep's next ``ONLINE_BUDGET`` nodes, whose online status changed."""
        addresses = self._orders["address"]
        if self._sweep_at >= len(addresses):
            self._sweep_at = 0
        start, self._sweep_at = self._sweep_at, self._sweep_at + ONLINE_BUDGET
        nodes, online = self.nodes, self.online
        crossed = set()
        # By position in the address order rather than over a copy of the node IDs (8 MB
        # at a million): a node added or gone during a sweep may shift the others by one.
        for node_id in addresses.ids(start, self._sweep_at):
            node = nodes.get(node_id)
            if node is not None and (node.last_seen >= cutoff) != (node_id in online):
                crossed.add(node_id)
        return crossed

    def _update_pairs(self):
        """Apply noted consents to the mutual-trust pairs; the IDs whose link count moved."""
        consents = self._directory.consents
        moved = set()
        pairs, self._changed_pairs = self._changed_pairs, set()
        for a, b in pairs:
            pair = (min(a, b), max(a, b))
            mutual = (a, b) in consents and (b, a) in consents
            if mutual == (pair in self.pairs):
                continue
            step = 1 if mutual else -1
            if mutual:
                self.pairs.add(pair)
            else:
                self.pairs.discard(pair)
            for node_id in pair:
                self._links[node_id] += step
                moved.add(node_id)
        return moved

    def _row(self, node):
        return Row(node.id, node.hostname if node.public else "", node.last_seen >= self._cutoff,
                   node.polo_score, self._links.get(node.id, 0), tuple(node.tags),
                   node.task_exec, node.version)

    def _update_rows(self, changed):
        removed, added = [], []
        for node_id in changed:
            old = self.rows.get(node_id)
            node = self.nodes.get(node_id)
            new = None if node is None else self._row(node)
            if new == old:
                continue
            if old is not None:
                self._forget(old)
                removed.append(old)
            if new is not None:
                self._remember(new)
                added.append(new)
        if removed or added:
            for order in self._orders.values():
                order.update(removed, added)
            for key, ids in self._match_sets.items():
                ids.difference_update(row.id for row in removed)
                ids.update(row.id for row in added if self._passes(row, *key))
            self._cache.clear()

    def _remember(self, row):
        self.rows[row.id] = row
        if row.online:
            self.online.add(row.id)
        if row.task_exec:
            self.executors.add(row.id)
        flags = row.flags
        self._flag_counts[flags] += 1
        for tag in row.tags:
            ids = self.tag_index.get(tag)
            if ids is None:
                ids = self.tag_index[tag] = set()
                self._tag_counts[tag] = [0, 0, 0, 0]
                self._names.clear()
            ids.add(row.id)
            self._tag_counts[tag][flags] += 1
        self._versions[row.version] += 1

    def _forget(self, row):
        del self.rows[row.id]
        self.online.discard(row.id)
        self.executors.discard(row.id)
        flags = row.flags
        self._flag_counts[flags] -= 1
        for tag in row.tags:
            ids = self.tag_index[tag]
            ids.discard(row.id)
            self._tag_counts[tag][flags] -= 1
            if not ids:
                del self.tag_index[tag], self._tag_counts[tag]
                self._names.clear()
        self._versions[row.version] -= 1
        if not self._versions[row.version]:
            del self._versions[row.version]

    def _cached(self, key, make):
        """``make()``, kept until the next change."""
        if key not in self._cache:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[key] = make()
        return self._cache[key]

    # -- figures ---------------------------------------------------------------

    def counts(self):
        return {"total_nodes": len(self.rows), "active_nodes": len(self.online),
                "total_trust_links": len(self.pairs), "unique_tags": len(self.tag_index),
                "task_executors": len(self.executors)}

    @property
    def versions(self):
        """Client versions (bare numbers ``v``-prefixed, empty as ``unknown``), most used first."""
        def make():
            merged = Counter()
            for version, count in self._versions.items():
                merged[_version(version)] += count
            return dict(sorted(merged.items(), key=lambda item: (-item[1], item[0])))
        return self._cached("versions", make)

    @property
    def networks(self):
        """The backbone and every network, with members online/total and join rule (no token, ever)."""
        networks = [{"id": BACKBONE, "name": "backbone", "members": len(self.rows),
                     "online_members": len(self.online), "join_rule": ""}]
        for network in sorted(self._directory.networks.values(), key=lambda n: n.id):
            networks.append({
                "id": network.id, "name": network.name, "members": len(network.members),
                "online_members": len(self.online.intersection(network.members)),
                "join_rule": network.join_rule or "open"})
        return networks

    def network_name(self, network_id):
        """The name of network ``network_id`` (``None`` when there is no such network)."""
        network = self._directory.networks.get(network_id)
        return None if network is None else network.name

    @property
    def edges(self):
        """Mutual trust pairs between nodes in the directory, in order."""
        return self._cached("edges", lambda: sorted(
            pair for pair in self.pairs if pair[0] in self.rows and pair[1] in self.rows))

    def lists_json(self):
        """``"nodes":[...],"edges":[...]`` of ``/api/stats`` (the reference's long form)."""
        def make():
            nodes = [self.rows[i].public() for i in self.order("address").ids()]
            edges = [{"source": self.rows[a].address, "target": self.rows[b].address}
                     for a, b in self.edges]
            return (f'"nodes":{json.dumps(nodes, separators=(",", ":"))},'
                    f'"edges":{json.dumps(edges, separators=(",", ":"))}')
        return self._cached("lists", make)

    # -- the directory query ---------------------------------------------------

    def order(self, sort):
        """The :class:`~pilotnet.dashboard.order.SortOrder` of ``sort``."""
        return self._orders[sort]

    def _tag_names(self, tag: str) -> tuple[str, ...]:
        """The tags containing ``tag`` (the distinct tags are scanned, not the nodes)."""
        names = self._names.get(tag)
        if names is None:
            if len(self._names) >= MAX_CACHED:
                self._names.clear()
            names = self._names[tag] = tuple(name for name in self.tag_index if tag in name)
        return names

    def _passes(self, row: Row, tag: str, flags: int, network: int) -> bool:
        """Whether ``row`` matches a search (the test a kept match set applies to changed rows)."""
        if tag and not any(tag in name for name in row.tags):
            return False
        if row.flags & flags != flags:
            return False
        if network:
            record = self._directory.networks.get(network)
            return record is not None and row.id in record.members
        return True

    def _match_set(self, tag: str, flags: int, network: int) -> set[int]:
        """The IDs matching a search, built once and then kept up to date by :meth:`_update_rows`."""
        key = (tag, flags, network)
        kept = self._match_sets.get(key)
        if kept is not None:
            return kept
        record = self._directory.networks.get(network) if network else None
        members = record.members if record is not None else set()
        if tag:
            found = set().union(*(self.tag_index[name] for name in self._tag_names(tag)))
            if network:
                found.intersection_update(members)
        else:  # a network's members (only a tag or a network search keeps a set)
            found = {i for i in members if i in self.rows}
        for flag, chosen in ((ONLINE, self.online), (TASKS, self.executors)):
            if flags & flag:
                found &= chosen
        if len(self._match_sets) >= MAX_MATCH_SETS:
            del self._match_sets[next(iter(self._match_sets))]
        self._match_sets[key] = found
        return found

    def _filter(self, tag: str, flags: int, network: int) -> tuple[int, list[set[int]]]:
        """``(total, sets)``: how many nodes match, and sets whose intersection they are,
        smallest first (empty for no filter)."""
        names = self._tag_names(tag) if tag else ()
        if network or len(names) > 1:
            found = self._match_set(tag, flags, network)
            return len(found), [found]
        if tag and not names:
            return 0, [set()]
        sets = [self.tag_index[name] for name in names]
        sets += [chosen for flag, chosen in ((ONLINE, self.online), (TASKS, self.executors))
                 if flags & flag]
        if not sets:
            return len(self.rows), []
        counts = self._tag_counts[names[0]] if names else self._flag_counts
        total = sum(count for combination, count in enumerate(counts)
                    if combination & flags == flags)
        return total, sorted(sets, key=len)

    def _page_ids(self, sort: str, start: int, total: int, sets: list[set[int]]) -> list[int]:
        """The IDs of one page: a slice, a walk of the order, or a sort of the smallest set."""
        stop = start + PAGE_SIZE
        order = self.order(sort)
        if not sets:
            return list(order.ids(start, stop))
        if not total:
            return []
        smallest, *others = sets
        if stop * len(order) <= SORT_COST * len(smallest) * total:
            ids = order.ids()
            for chosen in sets:
                ids = filter(chosen.__contains__, ids)
            return list(islice(ids, start, stop))
        ids = iter(smallest)
        for chosen in others:
            ids = filter(chosen.__contains__, ids)
        keys = nsmallest(stop, map(KEYS[sort], map(self.rows.__getitem__, ids)))
        return [key & ID_MASK for key in keys[start:]]

    def select(self, query):
        """The page of rows ``query`` asks for (a page past the end shows the last one)."""
        flags = query.online * ONLINE | query.tasks * TASKS
        total, sets = self._filter(query.tag, flags, query.network)
        pages = max(1, -(-total // PAGE_SIZE))
        number = min(query.page, pages)
        ids = self._page_ids(query.sort, (number - 1) * PAGE_SIZE, total, sets)
        return Page([self.rows[i] for i in ids], total, number, pages)
