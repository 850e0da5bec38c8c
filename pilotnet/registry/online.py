"""How many nodes are online, for the ``pilot_nodes_online`` gauge, at a bounded cost per call.

Comparing every node's ``last_seen`` with the cutoff takes about 100 ms at
a million nodes: too long to hold the reactor at each Prometheus scrape.
:class:`OnlineCount` checks the next ``budget`` nodes of a sweep over the
directory at each call and keeps one count per part of the sweep; the answer
is their sum.  Up to ``budget`` nodes every call checks them all and is
exact; beyond, each part's count is at most ``nodes / budget`` calls old (a
scrape every 15 s: 2.5 min at a million nodes).

A count is kept rather than the set of online IDs: the set would cost some
50 bytes per online node, the counts one int per ``budget`` nodes.
"""

ONLINE_BUDGET = 100_000


class OnlineCount:
    """The nodes of ``directory`` seen at or after a cutoff, counted a part of the directory per call."""

    def __init__(self, directory, budget: int = ONLINE_BUDGET) -> None:
        self._directory = directory
        self._budget = budget
        # The node IDs of the sweep under way, the next part of it to check, and each part's count.
        self._sweep: list[int] = []
        self._part = 0
        self._counts: list[int] = []

    def __call__(self, cutoff: float) -> int:
        nodes = self._directory.nodes
        if self._part * self._budget >= len(self._sweep):
            self._sweep, self._part = list(nodes), 0
            del self._counts[-(-len(self._sweep) // self._budget):]
        start = self._part * self._budget
        online = 0
        for node_id in self._sweep[start:start + self._budget]:
            node = nodes.get(node_id)
            if node is not None and node.last_seen >= cutoff:
                online += 1
        if self._part < len(self._counts):
            self._counts[self._part] = online
        else:
            self._counts.append(online)
        self._part += 1
        return sum(self._counts)
