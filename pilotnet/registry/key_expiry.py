"""Key lifecycle: when a node's key was created and rotated, and when it expires (controlplane §1.9.2).

``set_key_expiry`` is an enterprise feature (the node must be a member of an
enterprise network, as in the reference); once the time passes the node's
heartbeats are refused until it rotates its key.  ``get_key_info`` is open.
"""

from pilotnet.errors import DecodeError
from pilotnet.registry import requests as fields
from pilotnet.registry.dispatch import Peer, RegistryCore, Reply, Request, Route
from pilotnet.registry.requests import RequestError
from pilotnet.wire.rfc3339 import format_rfc3339, parse_rfc3339

MAX_EXPIRY = 10 * 365 * 24 * 3600.0
DAY = 24 * 3600.0
# heartbeat_ok says key_expiry_warning when the key expires sooner than this.
KEY_EXPIRY_WARNING = DAY
CLEARED = ("", "never")


def key_expired(node, now: float) -> bool:
    return bool(node.key_expires) and node.key_expires <= now


class KeyExpiryHandlers:
    """set_key_expiry and get_key_info."""

    def __init__(self, core: RegistryCore) -> None:
        self.core = core

    def routes(self) -> list[Route]:
        return [
            Route("set_key_expiry", self.set_key_expiry, admin_override=True),
            Route("get_key_info", self.get_key_info, on_standby=True),
        ]

    def set_key_expiry(self, request: Request, peer: Peer, now: float) -> Reply:
        node_id = fields.uint(request, "node_id")
        text = fields.text(request, "expires_at", max_length=64)
        node = self.core.node(node_id)
        self.core.authenticate(request, "set_key_expiry", {"node_id": node_id}, node_id, now)
        directory = self.core.directory
        if not any(network.enterprise and node_id in network.members
                   for network in directory.networks.values()):
            raise RequestError(
                "enterprise feature: key expiry requires membership of an enterprise network")
        if text in CLEARED:
            expires = 0.0
        else:
            try:
                expires = parse_rfc3339(text, "expires_at")
            except DecodeError as error:
                raise RequestError(error.message, hint=error.hint) from None
            if expires <= now:
                raise RequestError("invalid expires_at: must be in the future")
            if expires - now > MAX_EXPIRY:
                raise RequestError("invalid expires_at: at most 10 years from now")
        node.key_expires = expires
        directory.save_node(node)
        return {"type": "set_key_expiry_ok", "node_id": node_id,
                "expires_at": format_rfc3339(expires) if expires else ""}

    def get_key_info(self, request: Request, peer: Peer, now: float) -> Reply:
        node = self.core.node(fields.uint(request, "node_id"))
        reply = {"type": "get_key_info_ok", "node_id": node.id, "rotate_count": node.key_rotations}
        if node.key_created:
            reply["created_at"] = format_rfc3339(node.key_created)
        if node.key_rotated:
            reply["rotated_at"] = format_rfc3339(node.key_rotated)
        if node.key_expires:
            reply["expires_at"] = format_rfc3339(node.key_expires)
        since = node.key_rotated or node.key_created
        if since:
            reply["key_age_days"] = int(max(0.0, now - since) // DAY)
        return reply
