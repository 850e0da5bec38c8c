"""Trust between nodes: consents, relayed handshakes, and punch.

A trust pair -- which unlocks a private node's endpoint -- needs both nodes'
signed consent (``report_trust``, or ``request_handshake`` on one side and an
accepting ``respond_handshake`` on the other), not one side's word; ``punch``
applies the same visibility gate as ``resolve``.
"""

from pilotnet.errors import ALREADY_EXISTS, NOT_FOUND, REFUSED
from pilotnet.registry import requests as fields
from pilotnet.registry.directory import HandshakeRequest, HandshakeResponse
from pilotnet.registry.dispatch import RegistryCore, Route
from pilotnet.registry.requests import RequestError

MAX_INBOX = 100
MAX_JUSTIFICATION = 1024


def _inbox_room(node_id, pending):
    if len(pending) >= MAX_INBOX:
        # The reference's message; the code says the other side's inbox refused it, not our argument.
        raise RequestError(f"handshake inbox full for node {node_id}", code=REFUSED,
                           hint=f"node {node_id} has {MAX_INBOX} handshakes waiting until its daemon "
                                "polls them; retry later")


class TrustHandlers:
    """report/revoke/check trust, the handshake inbox, and punch."""

    def __init__(self, registry: RegistryCore) -> None:
        self.registry = registry
        self.directory = registry.directory

    def routes(self):
        return [
            Route("report_trust", self._report_trust),
            Route("revoke_trust", self._revoke_trust),
            Route("check_trust", self._check_trust, on_standby=True),
            Route("request_handshake", self._request_handshake),
            Route("request_handshake_by_name", self._request_handshake_by_name),
            Route("poll_handshakes", self._poll_handshakes, on_standby=True),
            Route("respond_handshake", self._respond_handshake),
            Route("punch", self._punch),
        ]

    def _pair(self, request, kind, now):
        node_id = fields.uint(request, "node_id")
        peer_id = fields.uint(request, "peer_id")
        self.registry.authenticate(request, kind, {"node_id": node_id, "peer_id": peer_id},
                                   node_id, now)
        return node_id, peer_id

    def _report_trust(self, request, peer, now):
        node_id, peer_id = self._pair(request, "report_trust", now)
        if peer_id == node_id:
            raise RequestError("cannot report trust in yourself")
        self.registry.node(peer_id)
        self.directory.consent(node_id, peer_id)
        return {"type": "report_trust_ok",
                "mutual": self.directory.trust_pair(node_id, peer_id)}

    def _revoke_trust(self, request, peer, now):
        node_id, peer_id = self._pair(request, "revoke_trust", now)
        directory = self.directory
        if (node_id, peer_id) not in directory.consents:
            raise RequestError(f"no trust pair between {node_id} and {peer_id}", code=NOT_FOUND)
        directory.withdraw(node_id, peer_id)
        return {"type": "revoke_trust_ok"}

    def _check_trust(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        peer_id = fields.uint(request, "peer_id")
        trusted = (self.directory.trust_pair(node_id, peer_id)
                   or self.directory.share_network(node_id, peer_id))
        return {"type": "check_trust_ok", "trusted": trusted}

    def _request_handshake(self, request, peer, now):
        from_id = fields.uint(request, "from_node_id")
        to_id = fields.uint(request, "to_node_id")
        justification = fields.text(request, "justification", max_length=MAX_JUSTIFICATION)
        self.registry.authenticate(request, "request_handshake",
                                   {"from_node_id": from_id, "to_node_id": to_id}, from_id, now)
        if to_id == from_id:
            raise RequestError("cannot request a handshake with yourself")
        self.registry.node(to_id)
        pending = self.directory.pending_requests(to_id)
        _inbox_room(to_id, pending)
        if any(item.from_node_id == from_id for item in pending):
            raise RequestError(f"handshake request already pending from node {from_id}",
                               code=ALREADY_EXISTS)
        self.directory.add_request(to_id, HandshakeRequest(from_id, justification, now))
        self.directory.consent(from_id, to_id)
        return {"type": "request_handshake_ok", "status": "delivered"}

    def _request_handshake_by_name(self, request, peer, now):
        """A request to whoever holds ``to_hostname``: how to ask a private node whose name is hidden from us.

        The reply is the same whether a node holds the name, its inbox is full
        or our request already waits there, so the name stays as unknown to a
        stranger as ``resolve_hostname`` keeps it; the requester learns the
        node's ID when the node approves (its answer names itself).
        """
        from_id = fields.uint(request, "from_node_id")
        hostname = fields.text(request, "to_hostname", max_length=256)
        justification = fields.text(request, "justification", max_length=MAX_JUSTIFICATION)
        self.registry.authenticate(request, "request_handshake_by_name",
                                   {"from_node_id": from_id, "to_hostname": hostname}, from_id, now)
        directory = self.directory
        to_id = directory.hostname_holder(hostname) if hostname else None
        if to_id is not None and to_id != from_id and to_id in directory.nodes:
            pending = directory.pending_requests(to_id)
            if len(pending) < MAX_INBOX and all(item.from_node_id != from_id for item in pending):
                directory.add_request(to_id, HandshakeRequest(from_id, justification, now))
                directory.consent(from_id, to_id)
        return {"type": "request_handshake_by_name_ok", "status": "delivered"}

    def _poll_handshakes(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        self.registry.authenticate(request, "poll_handshakes", {"node_id": node_id}, node_id, now)
        pending, responses = self.directory.drain_inbox(node_id)
        nodes = self.directory.nodes
        listed = []
        for item in pending:
            entry = {"from_node_id": item.from_node_id, "justification": item.justification,
                     "timestamp": int(item.timestamp)}
            sender = nodes.get(item.from_node_id)
            if sender is not None:
                entry["public_key"] = sender.public_key
            listed.append(entry)
        return {"type": "poll_handshakes_ok", "requests": listed,
                "responses": [{"from_node_id": r.from_node_id, "accept": r.accept,
                               "timestamp": int(r.timestamp)} for r in responses]}

    def _respond_handshake(self, request, peer, now):
        node_id, peer_id = self._pair(request, "respond_handshake", now)
        accept = fields.flag(request, "accept")
        if peer_id == node_id:
            raise RequestError("cannot respond to a handshake with yourself")
        self.registry.node(peer_id)
        _inbox_room(peer_id, self.directory.handshake_responses.get(peer_id, []))
        if accept:
            self.directory.consent(node_id, peer_id)
        elif (node_id, peer_id) in self.directory.consents:
            self.directory.withdraw(node_id, peer_id)
        self.directory.add_response(peer_id, HandshakeResponse(node_id, accept, now))
        return {"type": "respond_handshake_ok", "accept": accept, "peer_id": peer_id}

    def _punch(self, request, peer, now):
        requester_id = fields.uint(request, "requester_id")
        node_a = fields.uint(request, "node_a")
        node_b = fields.uint(request, "node_b")
        if requester_id not in (node_a, node_b):
            raise RequestError("punch denied: requester must be participant")
        self.registry.authenticate(request, "punch", {"node_a": node_a, "node_b": node_b},
                                   requester_id, now)
        a, b = self.registry.node(node_a), self.registry.node(node_b)
        other = b if requester_id == node_a else a
        if not self.registry.visible_to(other, requester_id):
            raise RequestError(
                f"punch denied: node {other.id} is private (establish mutual trust first)")
        return {"type": "punch_ok", "node_a": node_a, "node_a_addr": a.real_addr,
                "node_b": node_b, "node_b_addr": b.real_addr}
