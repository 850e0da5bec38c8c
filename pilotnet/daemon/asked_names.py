"""Handshakes asked by hostname: the names we asked, and whether a node that answers holds one of them.

A private node's hostname does not resolve for a stranger, so a handshake to
it goes to the registry as a name (``request_handshake_by_name``) and we do
not learn which node holds it.  Its answer (an accept, or a request of its
own) names the node; it counts as the answer to ours when one of the names we
asked now resolves to that node, which the registry allows as soon as both
consented.  The names are kept in memory only: at most :data:`MAX_NAMES`, each
for :data:`NAME_TTL` seconds.

Each check costs the registry one ``resolve_hostname`` per name, so a node
found to hold none of them is not checked again for :data:`STRANGER_TTL`
seconds (until a new name is asked): accepts from strangers cannot become a
stream of registry requests.
"""

from typing import Callable, Dict

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from pilotnet.errors import PilotError

MAX_NAMES = 64
NAME_TTL = 24 * 3600.0
STRANGER_TTL = 60.0
MAX_STRANGERS = 4096


class AskedNames:
    """``resolve(hostname)`` returns a Deferred node ID, and fails while the name is hidden from us."""

    def __init__(self, clock: IReactorTime, resolve: Callable[[str], defer.Deferred]):
        self.clock = clock
        self._resolve = resolve
        self._asked: Dict[str, float] = {}  # hostname -> when asked, oldest first
        self._strangers: Dict[int, float] = {}  # node -> until when it is known to hold none of them

    def __len__(self) -> int:
        return len(self._asked)

    def __contains__(self, hostname: str) -> bool:
        return hostname in self._asked

    def add(self, hostname: str) -> None:
        self._strangers.clear()  # a new name: any node may hold it
        self._asked.pop(hostname, None)
        self._asked[hostname] = self.clock.seconds()
        while len(self._asked) > MAX_NAMES:
            del self._asked[next(iter(self._asked))]

    @defer.inlineCallbacks
    def answered_by(self, node: int):
        """True (and the name forgotten) when ``node`` holds a name we asked."""
        now = self.clock.seconds()
        if not self._asked or self._strangers.get(node, 0.0) > now:
            return False
        for hostname, asked_at in list(self._asked.items()):
            if now - asked_at > NAME_TTL:
                del self._asked[hostname]
                continue
            try:
                holder = yield self._resolve(hostname)
            except PilotError:
                continue  # still hidden from us: not this node's name, or not consented yet
            if holder == node:
                self._asked.pop(hostname, None)
                return True
        if len(self._strangers) >= MAX_STRANGERS:
            self._strangers.clear()
        self._strangers[node] = now + STRANGER_TTL
        return False
