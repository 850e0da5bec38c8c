"""The daemon's trust state: who we trust, who asked us, whom we asked.

Reference controlplane §5.1/§5.5.  Three tables:

* ``trusted``: node → :class:`TrustedPeer` (key, when approved, whether both
  sides asked, the network that implied it);
* ``pending``: requests waiting for the operator, at most :data:`MAX_PENDING`
  (a flood of requests must not grow memory or the file without bound);
* ``outgoing``: peers we asked and are waiting for.

Everything is written to ``trust.json`` beside the identity after every change,
atomically (temporary file, fsync, rename), so a crash leaves the old file or
the new one.  The daemon writes it off the reactor thread (a
:class:`~pilotnet.services.storage.SnapshotFile`: the newest table wins, so a
peer repeating its request costs no more than one write waiting), and its
answers that promise a change wait for :meth:`TrustState.flushed`.  The file is the reference's (a Go daemon's ``trust.json`` loads
here, ours loads there); we add ``outgoing`` — Go ignores unknown keys — so
an answer that arrives after a restart is still recognised as one we asked for.

This module has no I/O other than that file and no clock: callers pass ``now``.
"""

import json
from typing import NamedTuple

from twisted.internet import defer
from twisted.logger import Logger

from pilotnet.errors import DecodeError
from pilotnet.services.storage import SnapshotFile
from pilotnet.wire.rfc3339 import format_rfc3339, parse_rfc3339

log = Logger()

MAX_PENDING = 256
FILE_NAME = "trust.json"


class TrustedPeer(NamedTuple):
    node_id: int
    public_key: str
    approved_at: float
    mutual: bool
    network: int = 0

    def describe(self):
        """The reference's IPC row (``approved_at`` in Unix seconds)."""
        return {"node_id": self.node_id, "public_key": self.public_key, "approved_at": int(self.approved_at),
                "mutual": self.mutual, "network": self.network}


class PendingRequest(NamedTuple):
    node_id: int
    public_key: str
    justification: str
    received_at: float

    def describe(self):
        return {"node_id": self.node_id, "public_key": self.public_key, "justification": self.justification,
                "received_at": int(self.received_at)}


class TrustState:
    """The three tables, persisted to ``path`` (``None``: kept in memory only).

    ``writer`` is the :class:`~pilotnet.services.storage.FileWriter` that
    writes the file (None: written inline, before each change returns).
    """

    def __init__(self, path=None, writer=None):
        self.path = path
        self._file = SnapshotFile(path, writer) if path is not None else None
        self.trusted = {}
        self.pending = {}
        self.outgoing = set()

    # -- questions ------------------------------------------------------------

    def is_trusted(self, node):
        return node in self.trusted

    def trusted_list(self):
        return [peer.describe() for peer in sorted(self.trusted.values())]

    def pending_list(self):
        return [request.describe() for request in sorted(self.pending.values())]

    # -- changes (each saves) -------------------------------------------------------

    def trust(self, node, public_key, now, *, mutual, network=0):
        """Trust ``node``; an existing entry keeps its approval time and becomes mutual if this is."""
        previous = self.trusted.get(node)
        if previous is not None:
            public_key = public_key or previous.public_key
            mutual = mutual or previous.mutual
            network = previous.network or network
            now = previous.approved_at
        self.trusted[node] = TrustedPeer(node, public_key or "", now, mutual, network)
        self.pending.pop(node, None)
        self.outgoing.discard(node)
        self.save()
        return previous is None

    def rehome(self, node, network):
        """Mark ``node``'s trust as implied by ``network`` (another network it still shares with us)."""
        peer = self.trusted.get(node)
        if peer is not None and peer.network != network:
            self.trusted[node] = peer._replace(network=network)
            self.save()

    def add_pending(self, node, public_key, justification, now):
        """Keep a request for the operator; False when the table is full (the request is dropped)."""
        if node not in self.pending and len(self.pending) >= MAX_PENDING:
            return False
        self.pending[node] = PendingRequest(node, public_key or "", justification, now)
        self.save()
        return True

    def take_pending(self, node):
        request = self.pending.pop(node, None)
        if request is not None:
            self.save()
        return request

    def ask(self, node):
        if node not in self.outgoing:
            self.outgoing.add(node)
            self.save()

    def answered(self, node):
        if node in self.outgoing:
            self.outgoing.discard(node)
            self.save()

    def forget(self, node):
        """Drop every trace of ``node``; the :class:`TrustedPeer` it had, if any."""
        peer = self.trusted.pop(node, None)
        changed = peer is not None or node in self.pending or node in self.outgoing
        self.pending.pop(node, None)
        self.outgoing.discard(node)
        if changed:
            self.save()
        return peer

    # -- the file ----------------------------------------------------------------------

    def to_json(self):
        document = {"trusted": [
            {"node_id": p.node_id, "public_key": p.public_key, "approved_at": format_rfc3339(p.approved_at),
             "mutual": p.mutual, **({"network": p.network} if p.network else {})}
            for p in sorted(self.trusted.values())
        ]}
        if self.pending:
            document["pending"] = [
                {"node_id": r.node_id, **({"public_key": r.public_key} if r.public_key else {}),
                 **({"justification": r.justification} if r.justification else {}),
                 "received_at": format_rfc3339(r.received_at)}
                for r in sorted(self.pending.values())
            ]
        if self.outgoing:
            document["outgoing"] = sorted(self.outgoing)
        return document

    def save(self):
        if self._file is not None:
            self._file.write(json.dumps(self.to_json(), indent=2).encode("utf-8") + b"\n")

    def flushed(self):
        """A Deferred that fires once every change made so far is in the file."""
        return self._file.flushed() if self._file is not None else defer.succeed(None)

    @classmethod
    def load(cls, path, writer=None):
        """The state saved at ``path``; empty when there is none; a damaged file is logged and set aside."""
        state = cls(path, writer)
        try:
            document = json.loads(path.read_text())
            for row in document.get("trusted") or []:
                node = int(row["node_id"])
                state.trusted[node] = TrustedPeer(node, str(row.get("public_key") or ""),
                                                  parse_rfc3339(row["approved_at"], "approved_at"), bool(row.get("mutual")),
                                                  int(row.get("network") or 0))
            for row in (document.get("pending") or [])[:MAX_PENDING]:
                node = int(row["node_id"])
                state.pending[node] = PendingRequest(node, str(row.get("public_key") or ""),
                                                     str(row.get("justification") or ""),
                                                     parse_rfc3339(row["received_at"], "received_at"))
            state.outgoing = {int(node) for node in document.get("outgoing") or []}
        except FileNotFoundError:
            return state
        except (OSError, ValueError, TypeError, KeyError, AttributeError, DecodeError) as error:
            damaged = path.with_name(path.name + ".damaged")
            log.error("trust file {path} is unreadable ({error}); moved to {damaged}, starting empty",
                      path=str(path), error=str(error), damaged=str(damaged))
            path.replace(damaged)
            return cls(path, writer)
        return state
