"""A read-only, indexed picture of the registry's directory at one moment.

Built once per change (at most once a second, see
:class:`~pilotnet.dashboard.service.Dashboard`) and shared by every request
until the next change, so a page view costs an index look-up and a slice,
not a scan and sort of 100,000 nodes:

* tags -> node IDs (a search scans the distinct tags, not the nodes);
* the online and task-executor sets;
* each sort order as a list of node IDs, made on first use, with the
  position of every node in it (to order a small result without re-sorting);
* the last queries' filtered and ordered results, so paging through them or
  many viewers asking the same thing costs a slice;
* the public parts of ``/api/stats`` that do not change between builds.

Nothing here exposes an IP, a key or an endpoint: :class:`Row` has no field
for them, and a hostname only for public nodes.
"""

import json
from collections import Counter
from dataclasses import dataclass

from pilotnet.dashboard.query import PAGE_SIZE
from pilotnet.registry.directory import BACKBONE, address_text

# A result smaller than 1/SMALL_RESULT of the directory is sorted by rank;
# a larger one is taken by walking the precomputed order.
SMALL_RESULT = 8
MAX_CACHED_SEARCHES = 256
MAX_CACHED_RESULTS = 32
UNKNOWN_VERSION = "unknown"


@dataclass(slots=True)
class Row:
    """One node as the dashboard may show it (treat as read-only)."""

    id: int
    hostname: str
    online: bool
    polo_score: int
    trust_links: int
    tags: tuple
    task_exec: bool

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
    if not text:
        return UNKNOWN_VERSION
    return text if text.startswith("v") else f"v{text}"


class Snapshot:
    """The directory of ``registry`` as it was at ``now``."""

    def __init__(self, registry, now):
        directory = registry.directory
        nodes = directory.nodes
        consents = directory.consents
        cutoff = now - registry.stale_after
        self.taken = now
        self.trust_links = 0
        links = Counter()
        self.edges = []
        for a, b in consents:
            if a < b and (b, a) in consents:
                self.trust_links += 1
                links[a] += 1
                links[b] += 1
                if a in nodes and b in nodes:
                    self.edges.append((a, b))
        self.edges.sort()
        self.rows = {}
        self.online = set()
        self.executors = set()
        self.tag_index = {}
        versions = Counter()
        link_count = links.get
        tag_index = self.tag_index
        for node_id, node in nodes.items():
            online = node.last_seen >= cutoff
            tags = tuple(node.tags)
            self.rows[node_id] = Row(node_id, node.hostname if node.public else "", online,
                                     node.polo_score, link_count(node_id, 0), tags,
                                     node.task_exec)
            if online:
                self.online.add(node_id)
            if node.task_exec:
                self.executors.add(node_id)
            for tag in tags:
                if tag in tag_index:
                    tag_index[tag].append(node_id)
                else:
                    tag_index[tag] = [node_id]
            versions[node.version] += 1
        merged = Counter()
        for version, count in versions.items():
            merged[_version(version)] += count
        self.versions = dict(sorted(merged.items(), key=lambda item: (-item[1], item[0])))
        self.networks = [{"id": BACKBONE, "name": "backbone", "members": len(nodes),
                          "online_members": len(self.online)}]
        for network in sorted(directory.networks.values(), key=lambda n: n.id):
            self.networks.append({
                "id": network.id, "name": network.name, "members": len(network.members),
                "online_members": sum(1 for m in network.members if m in self.online)})
        self._orders = {}
        self._ranks = {}
        self._matches = {}
        self._results = {}
        self._lists = None

    # -- figures ------------------------------------------------------------

    def counts(self):
        return {"total_nodes": len(self.rows), "active_nodes": len(self.online),
                "total_trust_links": self.trust_links, "unique_tags": len(self.tag_index),
                "task_executors": len(self.executors)}

    def lists_json(self):
        """``"nodes":[...],"edges":[...]`` of ``/api/stats`` (the reference's long form), cached."""
        if self._lists is None:
            nodes = [self.rows[i].public() for i in self.order("address")]
            edges = [{"source": self.rows[a].address, "target": self.rows[b].address}
                     for a, b in self.edges]
            self._lists = (f'"nodes":{json.dumps(nodes, separators=(",", ":"))},'
                           f'"edges":{json.dumps(edges, separators=(",", ":"))}')
        return self._lists

    # -- the directory query ------------------------------------------------

    def order(self, sort):
        """Every node ID in ``sort`` order (ties broken by address)."""
        order = self._orders.get(sort)
        if order is None:
            rows = self.rows
            keys = {
                "address": None,
                "polo-desc": lambda i: (-rows[i].polo_score, i),
                "polo-asc": lambda i: (rows[i].polo_score, i),
                "trust-desc": lambda i: (-rows[i].trust_links, i),
                "status": lambda i: (not rows[i].online, i),
            }
            order = self._orders[sort] = sorted(rows, key=keys[sort])
        return order

    def _rank(self, sort):
        rank = self._ranks.get(sort)
        if rank is None:
            rank = self._ranks[sort] = {node_id: n for n, node_id in enumerate(self.order(sort))}
        return rank

    def matching(self, tag, online, tasks):
        """IDs of nodes passing the filters (``None`` for no filter), cached per snapshot.

        ``tag`` (lower case, no ``#``) matches any tag containing it: the
        distinct tags are scanned, not the nodes.
        """
        key = (tag, online, tasks)
        if key in self._matches:
            return self._matches[key]
        found = None
        if tag:
            found = set()
            for name, ids in self.tag_index.items():
                if tag in name:
                    found.update(ids)
        for wanted, chosen in ((online, self.online), (tasks, self.executors)):
            if wanted:
                found = chosen if found is None else found & chosen
        if len(self._matches) >= MAX_CACHED_SEARCHES:
            self._matches.clear()
        self._matches[key] = found
        return found

    def ordered(self, query):
        """IDs of every node ``query`` selects, in its sort order, cached per snapshot."""
        key = (query.tag, query.online, query.tasks, query.sort)
        found = self._results.get(key)
        if found is None:
            matches = self.matching(query.tag, query.online, query.tasks)
            order = self.order(query.sort)
            if matches is None:
                found = order
            elif len(matches) * SMALL_RESULT < len(order):
                found = sorted(matches, key=self._rank(query.sort).__getitem__)
            else:
                found = [node_id for node_id in order if node_id in matches]
            if len(self._results) >= MAX_CACHED_RESULTS:
                self._results.clear()
            self._results[key] = found
        return found

    def select(self, query):
        """The page of rows ``query`` asks for (a page past the end shows the last one)."""
        found = self.ordered(query)
        pages = max(1, -(-len(found) // PAGE_SIZE))
        number = min(query.page, pages)
        start = (number - 1) * PAGE_SIZE
        return Page([self.rows[i] for i in found[start:start + PAGE_SIZE]], len(found), number,
                    pages)
