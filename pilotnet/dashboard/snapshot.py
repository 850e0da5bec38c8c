"""A read-only, indexed picture of the registry's directory at one moment.

Built once per change (at most once a second, see
:class:`~pilotnet.dashboard.service.Dashboard`) and shared by every request
until the next change, so a page view costs an index look-up and a slice,
not a scan and sort of 100,000 nodes:

* tags -> node IDs (a search scans the distinct tags, not the nodes);
* the online and task-executor sets;
* each sort order as a list of node IDs, made on first use, with the
  position of every node in it (to order a small result without re-sorting);
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
UNKNOWN_VERSION = "unknown"


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    address: str
    hostname: str
    online: bool
    polo_score: int
    trust_links: int
    tags: tuple
    task_exec: bool

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
        for node_id, node in nodes.items():
            row = Row(node_id, address_text(BACKBONE, node_id),
                      node.hostname if node.public else "", node.last_seen >= cutoff,
                      node.polo_score, links[node_id], tuple(node.tags), node.task_exec)
            self.rows[node_id] = row
            if row.online:
                self.online.add(node_id)
            if row.task_exec:
                self.executors.add(node_id)
            for tag in row.tags:
                self.tag_index.setdefault(tag, []).append(node_id)
            versions[_version(node.version)] += 1
        self.versions = dict(sorted(versions.items(), key=lambda item: (-item[1], item[0])))
        self.networks = [{"id": BACKBONE, "name": "backbone", "members": len(nodes),
                          "online_members": len(self.online)}]
        for network in sorted(directory.networks.values(), key=lambda n: n.id):
            self.networks.append({
                "id": network.id, "name": network.name, "members": len(network.members),
                "online_members": sum(1 for m in network.members if m in self.online)})
        self._orders = {}
        self._ranks = {}
        self._searches = {}
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

    def tagged(self, text):
        """IDs of nodes with a tag containing ``text`` (already lower case, no ``#``)."""
        found = self._searches.get(text)
        if found is None:
            found = set()
            for tag, ids in self.tag_index.items():
                if text in tag:
                    found.update(ids)
            if len(self._searches) >= MAX_CACHED_SEARCHES:
                self._searches.clear()
            self._searches[text] = found
        return found

    def select(self, query):
        """The page of rows ``query`` asks for (a page past the end shows the last one)."""
        matches = None
        if query.tag:
            matches = self.tagged(query.tag)
        for wanted, chosen in ((query.online, self.online), (query.tasks, self.executors)):
            if wanted:
                matches = chosen if matches is None else matches & chosen
        order = self.order(query.sort)
        total = len(order) if matches is None else len(matches)
        pages = max(1, -(-total // PAGE_SIZE))
        number = min(query.page, pages)
        start = (number - 1) * PAGE_SIZE
        if matches is None:
            chosen = order[start:start + PAGE_SIZE]
        elif len(matches) * SMALL_RESULT < len(order):
            chosen = sorted(matches, key=self._rank(query.sort).__getitem__)[start:start + PAGE_SIZE]
        else:
            chosen = self._walk(order, matches, start)
        return Page([self.rows[i] for i in chosen], total, number, pages)

    @staticmethod
    def _walk(order, matches, start):
        chosen = []
        skip = start
        for node_id in order:
            if node_id in matches:
                if skip:
                    skip -= 1
                    continue
                chosen.append(node_id)
                if len(chosen) == PAGE_SIZE:
                    break
        return chosen
