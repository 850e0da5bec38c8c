"""Polo scores: a node's standing, read by anyone and changed, as in the reference, without a signature.

Because a change is unauthenticated, it is bounded, rate limited per source
address and logged.
"""

from twisted.logger import Logger

from pilotnet.ratelimit import RateLimiter
from pilotnet.registry import requests as fields
from pilotnet.registry.directory import BACKBONE, address_text
from pilotnet.registry.dispatch import RegistryCore, Route
from pilotnet.registry.requests import RequestError

MAX_POLO = 1_000_000


class PoloHandlers:
    """get_polo_score, update_polo_score and set_polo_score."""

    log = Logger()

    def __init__(self, registry: RegistryCore, *, limiter=None) -> None:
        self.registry = registry
        self.limiter = limiter if limiter is not None else RateLimiter(burst=30, window=60.0)

    def routes(self):
        return [
            Route("get_polo_score", self._get_polo_score, on_standby=True),
            Route("update_polo_score", self._update_polo_score),
            Route("set_polo_score", self._set_polo_score),
        ]

    def _reply(self, kind, node):
        return {"type": kind, "node_id": node.id, "address": address_text(BACKBONE, node.id),
                "polo_score": node.polo_score}

    def _get_polo_score(self, request, peer, now):
        return self._reply("get_polo_score_ok", self.registry.node(fields.uint(request, "node_id")))

    def _change(self, request, peer, now, kind, compute):
        node = self.registry.node(fields.uint(request, "node_id"))
        value = compute(node)
        if not self.limiter.allow(peer[0], now):
            raise RequestError(f"rate limited: too many polo score changes from {peer[0]}")
        old, node.polo_score = node.polo_score, max(-MAX_POLO, min(MAX_POLO, value))
        self.registry.directory.save_node(node)
        self.log.info("registry: {kind} node {node_id} {old} -> {new} from {source}",
                      kind=kind, node_id=node.id, old=old, new=node.polo_score, source=peer[0])
        return self._reply(f"{kind}_ok", node)

    def _update_polo_score(self, request, peer, now):
        delta = fields.integer(request, "delta", MAX_POLO)
        return self._change(request, peer, now, "update_polo_score",
                            lambda node: node.polo_score + delta)

    def _set_polo_score(self, request, peer, now):
        score = fields.integer(request, "polo_score", MAX_POLO)
        return self._change(request, peer, now, "set_polo_score", lambda node: score)
