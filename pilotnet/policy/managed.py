"""A managed network's engine: the set of peers a node keeps trust links with, pruned and filled each cycle.

A managed network (controlplane §1.9.2, daemon §3.6) carries ``rules``::

    {"links": 8, "cycle": "1h", "prune": 2, "prune_by": "score", "fill": 2,
     "fill_how": "random", "grace": "10m"}

Each member's daemon keeps at most ``links`` peers of the network.  Every
``cycle`` it ranks them (``prune_by``: lowest ``score`` first, oldest first by
``age``, least recently active first by ``activity``), drops the first
``prune`` of them except those added less than ``grace`` ago, then adds up to
``fill`` members it does not yet have, chosen at random, without going over
``links``.  Applications raise or lower a peer's score (``pilotctl managed
score``); scoring also marks the peer active.  The state is the daemon's own:
the registry stores only the rules.

Sans-IO: the engine is fed the member list and ``now`` and returns what it
changed; the daemon's shell (:mod:`pilotnet.daemon.managed`) runs the timer,
fetches the members, applies the trust changes and persists :meth:`snapshot`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from typing import Any

from pilotnet.errors import INVALID_ARGUMENT, NOT_FOUND, PilotError
from pilotnet.wire.goduration import parse_go_duration
from pilotnet.wire.rfc3339 import format_rfc3339

MAX_TOPICS = 64
MAX_TOPIC = 64
MAX_SCORE = 1_000_000


class ManagedRules:
    """A network's managed rules, durations in seconds.

    Built by :meth:`from_checked` from the rules as the registry checks and
    stores them (:func:`pilotnet.registry.network_rules.parse_rules`), which is
    also what the daemon runs on rules it receives, so one set of checks serves both.
    """

    __slots__ = ("links", "cycle", "prune", "prune_by", "fill", "fill_how", "grace", "document")

    def __init__(self, links: int, cycle: float, prune: int, prune_by: str, fill: int, fill_how: str,
                 grace: float, document: dict[str, Any]) -> None:
        self.links = links
        self.cycle = cycle
        self.prune = prune
        self.prune_by = prune_by
        self.fill = fill
        self.fill_how = fill_how
        self.grace = grace
        self.document = document

    @classmethod
    def from_checked(cls, rules: Mapping[str, Any]) -> ManagedRules:
        grace = rules.get("grace") or "0"
        return cls(rules["links"], parse_go_duration(rules["cycle"]), rules["prune"], rules["prune_by"],
                   rules["fill"], rules["fill_how"], parse_go_duration(grace), dict(rules))


class ManagedPeer:
    __slots__ = ("node_id", "score", "topics", "added_at", "last_seen")

    def __init__(self, node_id: int, added_at: float, score: int = 0, topics: dict[str, int] | None = None,
                 last_seen: float = 0.0) -> None:
        self.node_id = node_id
        self.score = score
        self.topics = topics or {}
        self.added_at = added_at
        self.last_seen = last_seen

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "score": self.score, "topics": self.topics,
                "added_at": self.added_at, "last_seen": self.last_seen}


class CycleResult:
    """What one cycle changed: the peers it dropped and the peers it added."""

    __slots__ = ("network_id", "pruned", "filled", "peers", "cycle_num")

    def __init__(self, network_id: int, pruned: list[int], filled: list[int], peers: int, cycle_num: int) -> None:
        self.network_id = network_id
        self.pruned = pruned
        self.filled = filled
        self.peers = peers
        self.cycle_num = cycle_num

    def to_json(self) -> dict[str, Any]:
        return {"network_id": self.network_id, "pruned": len(self.pruned), "filled": len(self.filled),
                "peers": self.peers, "cycle_num": self.cycle_num,
                "pruned_ids": self.pruned, "filled_ids": self.filled}


class ManagedEngine:
    """One managed network's peer set on one node."""

    def __init__(self, network_id: int, rules: ManagedRules, own_id: int, joined_at: float,
                 rng: random.Random | None = None) -> None:
        self.network_id = network_id
        self.rules = rules
        self.own_id = own_id
        self.joined_at = joined_at
        self.cycle_num = 0
        self.peers: dict[int, ManagedPeer] = {}
        self._rng = rng or random.Random()

    def bootstrap(self, members: Iterable[int], now: float) -> list[int]:
        """Fill an empty set with up to ``links`` random members; the IDs added."""
        return self._add(self._candidates(members), self.rules.links - len(self.peers), now)

    def score(self, node_id: int, delta: int, topic: str, now: float) -> ManagedPeer:
        """Add ``delta`` to a peer's score (and its ``topic``'s), and mark it active."""
        peer = self.peers.get(node_id)
        if peer is None:
            raise PilotError(f"peer {node_id} not in managed set for network {self.network_id}", code=NOT_FOUND,
                             hint="see the set with: pilotctl managed rankings")
        if not -MAX_SCORE <= delta <= MAX_SCORE or len(topic) > MAX_TOPIC:
            raise PilotError(f"delta must be within ±{MAX_SCORE} and a topic at most {MAX_TOPIC} characters",
                             code=INVALID_ARGUMENT)
        if topic and topic not in peer.topics and len(peer.topics) >= MAX_TOPICS:
            raise PilotError(f"peer {node_id} already has {MAX_TOPICS} topics", code=INVALID_ARGUMENT)
        peer.score = max(-MAX_SCORE, min(MAX_SCORE, peer.score + delta))
        peer.last_seen = now
        if topic:
            peer.topics[topic] = max(-MAX_SCORE, min(MAX_SCORE, peer.topics.get(topic, 0) + delta))
        return peer

    def cycle(self, members: Iterable[int] | None, now: float) -> CycleResult:
        """Prune then fill once; ``members`` None (the registry did not answer) prunes only."""
        self.cycle_num += 1
        pruned = []
        for peer in self._ranked()[:self.rules.prune]:
            if self.rules.grace > 0 and now - peer.added_at < self.rules.grace:
                continue
            del self.peers[peer.node_id]
            pruned.append(peer.node_id)
        filled = []
        if members is not None:
            room = min(self.rules.fill, self.rules.links - len(self.peers))
            filled = self._add(self._candidates(members, exclude=pruned), room, now)
        return CycleResult(self.network_id, pruned, filled, len(self.peers), self.cycle_num)

    def prune_lowest(self, count: int, now: float) -> list[int]:
        """Drop up to ``count`` peers, lowest ranked first, sparing those within ``grace``; the IDs dropped."""
        pruned: list[int] = []
        for peer in self._ranked():
            if len(pruned) >= count:
                break
            if self.rules.grace > 0 and now - peer.added_at < self.rules.grace:
                continue
            del self.peers[peer.node_id]
            pruned.append(peer.node_id)
        return pruned

    def fill_random(self, members: Iterable[int], count: int, now: float, exclude: Iterable[int] = ()) -> list[int]:
        """Add up to ``count`` members not in the set nor ``exclude``, at random, within ``links``; the IDs added."""
        return self._add(self._candidates(members, exclude), min(count, self.rules.links - len(self.peers)), now)

    def forget(self, node_id: int) -> bool:
        """Drop a peer that left the network; whether it was in the set."""
        return self.peers.pop(node_id, None) is not None

    def _ranked(self) -> list[ManagedPeer]:
        peers = sorted(self.peers.values(), key=lambda peer: peer.node_id)
        if self.rules.prune_by == "age":
            return sorted(peers, key=lambda peer: peer.added_at)
        if self.rules.prune_by == "activity":
            return sorted(peers, key=lambda peer: peer.last_seen)
        return sorted(peers, key=lambda peer: peer.score)

    def _candidates(self, members: Iterable[int], exclude: Iterable[int] = ()) -> list[int]:
        skipped = set(exclude) | set(self.peers) | {self.own_id}
        return sorted({member for member in members if member not in skipped})

    def _add(self, candidates: list[int], room: int, now: float) -> list[int]:
        if room <= 0 or not candidates:
            return []
        chosen = self._rng.sample(candidates, min(room, len(candidates)))
        for node_id in chosen:
            self.peers[node_id] = ManagedPeer(node_id, added_at=now)
        return chosen

    def status(self) -> dict[str, Any]:
        rules = self.rules.document
        return {"network_id": self.network_id, "peers": len(self.peers), "max_links": self.rules.links,
                "cycle": rules.get("cycle"), "prune": self.rules.prune, "prune_by": self.rules.prune_by,
                "fill": self.rules.fill, "fill_how": self.rules.fill_how, "grace": rules.get("grace", ""),
                "cycle_num": self.cycle_num, "joined_at": format_rfc3339(self.joined_at)}

    def rankings(self) -> list[dict[str, Any]]:
        """Peers by score, highest first (ties by node ID)."""
        ranked = sorted(self.peers.values(), key=lambda peer: (-peer.score, peer.node_id))
        rows = []
        for rank, peer in enumerate(ranked, 1):
            row: dict[str, Any] = {"rank": rank, "node_id": peer.node_id, "score": peer.score,
                                   "added_at": format_rfc3339(peer.added_at)}
            if peer.last_seen:
                row["last_seen"] = format_rfc3339(peer.last_seen)
            if peer.topics:
                row["topics"] = dict(peer.topics)
            rows.append(row)
        return rows

    def snapshot(self) -> dict[str, Any]:
        """The state to persist (restored with :meth:`restore`)."""
        return {"network_id": self.network_id, "joined_at": self.joined_at, "cycle_num": self.cycle_num,
                "peers": [peer.to_json() for peer in self.peers.values()]}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot`; malformed entries are skipped, at most ``links`` peers kept."""
        self.cycle_num = _number(snapshot.get("cycle_num"), int, 0)
        self.joined_at = _number(snapshot.get("joined_at"), float, self.joined_at)
        peers = snapshot.get("peers")
        for entry in peers if isinstance(peers, list) else []:
            if len(self.peers) >= self.rules.links or not isinstance(entry, dict):
                continue
            node_id = _number(entry.get("node_id"), int, -1)
            if not 0 < node_id < 2**32 or node_id == self.own_id:
                continue
            topics = entry.get("topics")
            clean_topics = {str(k)[:MAX_TOPIC]: _number(v, int, 0) for k, v in list(topics.items())[:MAX_TOPICS]} \
                if isinstance(topics, dict) else {}
            self.peers[node_id] = ManagedPeer(
                node_id, added_at=_number(entry.get("added_at"), float, 0.0),
                score=max(-MAX_SCORE, min(MAX_SCORE, _number(entry.get("score"), int, 0))), topics=clean_topics,
                last_seen=_number(entry.get("last_seen"), float, 0.0))


def _number(value: object, kind: type, default: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and abs(value) < 2**53:
        return kind(value)
    return default
