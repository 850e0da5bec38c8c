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
compares every node's ``last_seen`` with the cutoff (a few ms at 100,000
nodes) and updates the nodes that crossed it.

A query then costs a look-up, a set intersection and a walk of the sort order
that stops at the requested page.  Nothing here exposes an IP, a key or an
endpoint: :class:`Row` has no field for them, and a hostname only for public
nodes.
"""

import json
from collections import Counter
from dataclasses import dataclass
from itertools import islice

from pilotnet.dashboard.order import ID_MASK, KEYS, SortOrder
from pilotnet.dashboard.query import PAGE_SIZE
from pilotnet.registry.directory import BACKBONE, address_text

ONLINE_CHECK = 1.0
# A result smaller than 1/SMALL_RESULT of the directory is sorted on its own;
# a larger one is taken by walking the maintained order.
SMALL_RESULT = 8
MAX_CACHED = 256
UNKNOWN_VERSION = "unknown"


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
    """Indexes over ``registry``'s directory as of the last :meth:`refresh`."""

    def __init__(self, registry, now):
        self._registry = registry
        self._directory = registry.directory
        self.nodes = self._directory.nodes
        self.rows = {}
        self.online = set()
        self.executors = set()
        self.tag_index = {}
        self.pairs = set()
        self._links = Counter()
        self._versions = Counter()
        self._orders = {}
        self._cache = {}
        self._checked = None
        self._cutoff = None
        self._changed_nodes = set(self.nodes)
        self._changed_pairs = set(self._directory.consents)
        self.refresh(now)
        self._orders = {sort: SortOrder(sort, self.rows.values()) for sort in KEYS}

    # -- keeping up ------------------------------------------------------------

    def note(self, changes):
        """Remember which nodes and consents a commit's ``(kind, key, value)`` changes touched."""
        for kind, key, _ in changes:
            if kind == "node":
                self._changed_nodes.add(int(key))
            elif kind == "consent":
                self._changed_pairs.add(consent_pair(key))
            elif kind == "network":
                self._cache.clear()  # a membership filter's results

    def refresh(self, now):
        """Bring the indexes up to date with the noted changes and, now and then, the clock."""
        changed, self._changed_nodes = self._changed_nodes, set()
        if self._checked is None or now - self._checked >= ONLINE_CHECK:
            self._checked = now
            self._cutoff = now - self._registry.offline_after
            cutoff = self._cutoff
            online = {i for i, node in self.nodes.items() if node.last_seen >= cutoff}
            changed |= online ^ self.online
        changed |= self._update_pairs()
        self._update_rows(changed)

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
            self._cache.clear()

    def _remember(self, row):
        self.rows[row.id] = row
        if row.online:
            self.online.add(row.id)
        if row.task_exec:
            self.executors.add(row.id)
        for tag in row.tags:
            self.tag_index.setdefault(tag, set()).add(row.id)
        self._versions[row.version] += 1

    def _forget(self, row):
        del self.rows[row.id]
        self.online.discard(row.id)
        self.executors.discard(row.id)
        for tag in row.tags:
            ids = self.tag_index[tag]
            ids.discard(row.id)
            if not ids:
                del self.tag_index[tag]
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

    def matching(self, tag, online, tasks, network=0):
        """IDs of nodes passing the filters (``None`` for no filter).

        ``tag`` (lower case, no ``#``) matches any tag containing it: the
        distinct tags are scanned, not the nodes.  ``network`` keeps the
        members of that network in the directory (an unknown one: nobody).
        """
        def make():
            found = None
            if tag:
                found = set()
                for name, ids in self.tag_index.items():
                    if tag in name:
                        found |= ids
            for wanted, chosen in ((online, self.online), (tasks, self.executors)):
                if wanted:
                    found = chosen if found is None else found & chosen
            if network:
                record = self._directory.networks.get(network)
                members = {i for i in record.members if i in self.rows} if record is not None else set()
                found = members if found is None else found & members
            return found
        return self._cached((tag, online, tasks, network), make)

    def _page_ids(self, matches, sort, start):
        """The IDs of one page: a slice, a sort of a small result, or a walk of the order."""
        stop = start + PAGE_SIZE
        order = self.order(sort)
        if matches is None:
            return list(order.ids(start, stop))
        if len(matches) * SMALL_RESULT < len(order):
            key, rows = KEYS[sort], self.rows
            return [k & ID_MASK for k in sorted(key(rows[i]) for i in matches)[start:stop]]
        return list(islice(filter(matches.__contains__, order.ids()), start, stop))

    def select(self, query):
        """The page of rows ``query`` asks for (a page past the end shows the last one)."""
        matches = self.matching(query.tag, query.online, query.tasks, query.network)
        total = len(self.rows) if matches is None else len(matches)
        pages = max(1, -(-total // PAGE_SIZE))
        number = min(query.page, pages)
        ids = self._page_ids(matches, query.sort, (number - 1) * PAGE_SIZE)
        return Page([self.rows[i] for i in ids], total, number, pages)
