"""What the control socket's clients may ask of the node, and nothing more.

:class:`~pilotnet.daemon.control.ControlProtocol` talks to an
:class:`IControlledNode`: the commands ``pilotctl`` and the SDK send, plus the
parts a client uses directly (its ports and streams, its event
subscriptions, trust, networks and their policies).  The node's own wiring (tunnel, paths, registration)
stays out of reach, and a test can stand a recording fake in for the whole
node (``verifyObject`` checks that the fake has every name).
"""

from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

from pilotnet import __version__
from pilotnet.errors import INVALID_ARGUMENT, PilotError
from pilotnet.wire.address import Addr

MAX_TAGS = 3


class IControlledNode(Interface):
    """The node as the control socket sees it."""

    streams = Attribute("The node's :class:`~pilotnet.daemon.streams.Streams` (ports, connections)")
    events = Attribute("The node's :class:`~pilotnet.services.eventstream.EventBroker`")
    trust = Attribute("The node's :class:`~pilotnet.daemon.trust_manager.TrustManager`")
    networks = Attribute("The node's :class:`~pilotnet.daemon.networks.Networks` (membership commands)")
    managed = Attribute("The node's :class:`~pilotnet.daemon.managed.ManagedNetworks` (policies, managed networks)")

    def dial(remote, port, owner, timeout=None):
        """Deferred stream to ``remote``:``port``, owned by ``owner``."""

    def send_datagram(remote, port, data, client=None):
        """Deferred of ``(sent, unreachable)`` once ``data`` went out to ``remote``:``port`` (a broadcast
        address: to each other member of its network, rate-limited per ``client``)."""

    def lookup(node_id):
        """Deferred of the registry's record of ``node_id``."""

    def resolve_hostname(hostname):
        """Deferred of the registry's answer for ``hostname``."""

    def set_hostname(hostname):
        """Register ``hostname`` for this node."""

    def set_visibility(public):
        """Make this node public or private."""

    def set_tags(tags):
        """Replace this node's tags (at most :data:`MAX_TAGS`)."""

    def set_task_exec(enabled):
        """Advertise (or stop advertising) that this node runs tasks."""

    def deregister():
        """Remove this node from the registry."""

    def set_webhook(url):
        """POST this node's events to ``url``; the emitter's stats."""

    def clear_webhook():
        """Stop posting events; the emitter's stats."""

    def peer_list():
        """One row per live tunnel."""

    def info():
        """The daemon's status, as ``pilotctl info`` shows it."""


@implementer(IControlledNode)
class ControlFacade:
    """The real node behind the control socket (a :class:`~pilotnet.daemon.node.NodeService`)."""

    def __init__(self, node):
        self._node = node

    @property
    def streams(self):
        return self._node.streams

    @property
    def events(self):
        return self._node.events

    @property
    def trust(self):
        return self._node.trust

    @property
    def networks(self):
        return self._node.networks

    @property
    def managed(self):
        return self._node.managed

    def dial(self, remote, port, owner, timeout=None):
        return self._node.dial(remote, port, owner, timeout)

    def send_datagram(self, remote, port, data, client=None):
        return self._node.send_datagram(remote, port, data, client)

    def lookup(self, node_id):
        return self._node.lookup(node_id)

    def resolve_hostname(self, hostname):
        if not hostname:
            raise PilotError("resolve_hostname: missing hostname", code=INVALID_ARGUMENT)
        request = {"type": "resolve_hostname", "hostname": hostname}
        if self._node.node_id is not None:
            request["requester_id"] = self._node.node_id
        return self._node.registry.request(request)

    @defer.inlineCallbacks
    def set_hostname(self, hostname):
        node = self._node
        node.require_registered()
        reply = yield node.registry.signed({"type": "set_hostname", "node_id": node.node_id, "hostname": hostname})
        node.config.hostname = hostname
        return reply

    @defer.inlineCallbacks
    def set_visibility(self, public):
        node = self._node
        node.require_registered()
        reply = yield node.registry.signed({"type": "set_visibility", "node_id": node.node_id, "public": public})
        node.config.public = public
        return reply

    @defer.inlineCallbacks
    def set_tags(self, tags):
        node = self._node
        node.require_registered()
        if len(tags) > MAX_TAGS:
            raise PilotError(f"set_tags: maximum {MAX_TAGS} tags allowed", code=INVALID_ARGUMENT)
        reply = yield node.registry.signed({"type": "set_tags", "node_id": node.node_id, "tags": list(tags)})
        node.tags = list(reply.get("tags", tags))
        return reply

    def set_task_exec(self, enabled):
        node = self._node
        node.require_registered()
        return node.registry.signed({"type": "set_task_exec", "node_id": node.node_id, "enabled": enabled})

    def deregister(self):
        node = self._node
        node.require_registered()
        return node.registry.signed({"type": "deregister", "node_id": node.node_id})

    def set_webhook(self, url):
        """POST this node's events to ``url`` from now on (``invalid_argument`` if it is not allowed)."""
        self._node.webhooks.set_url(url)
        self._node.config.webhook = url
        return self._node.webhooks.stats()

    def clear_webhook(self):
        self._node.webhooks.clear()
        self._node.config.webhook = ""
        return self._node.webhooks.stats()

    def peer_list(self):
        rows = []
        now = self._node.reactor.seconds()
        for peer in self._node.tunnel.peers():
            row = peer.describe()
            row["address"] = str(Addr(0, peer.node))
            heard = peer.last_heard != float("-inf")
            row["last_heard_secs"] = round(now - peer.last_heard, 1) if heard else None
            rows.append(row)
        return rows

    def info(self):
        node = self._node
        config = node.config
        peers = node.tunnel.peers()
        counters = node.tunnel.counters
        connections = node.streams.describe()
        started_at = node.started_at
        return {
            "node_id": node.node_id,
            "address": str(node.address) if node.address else None,
            "hostname": config.hostname,
            "public": config.public,
            "tags": node.tags,
            "uptime_secs": round(node.reactor.seconds() - started_at, 3) if started_at is not None else 0.0,
            "connections": sum(1 for c in connections if c["state"] in ("ESTABLISHED", "SYN_SENT", "SYN_RECV")),
            "ports": len(node.streams.bound_ports()),
            "bound_ports": node.streams.bound_ports(),
            "peers": len(peers),
            "encrypted_peers": sum(1 for p in peers if p.session is not None),
            "authenticated_peers": sum(1 for p in peers if p.authenticated),
            "encrypt": config.encrypt,
            "identity": True,
            "identity_path": str(config.identity_path),
            "public_key": node.identity.public_key_b64,
            "owner": config.owner,
            "registry": config.registry,
            "beacon": config.beacon,
            "socket": str(config.socket_path),
            "tunnel_port": node.tunnel.local_port() if node.listening else None,
            "endpoint": str(node.beacon.observed) if node.beacon.observed else None,
            "version": __version__,
            "bytes_sent": counters.bytes_sent,
            "bytes_recv": counters.bytes_recv,
            "pkts_sent": counters.pkts_sent,
            "pkts_recv": counters.pkts_recv,
            "tunnel": counters.as_dict(),
            "handshake_pending_count": len(node.trust.state.pending),
            "networks": node.networks.describe(),
            "trust": {**node.trust.describe(), "refused_messages": dict(node.handshakes.rejected)},
            "webhook": node.webhooks.stats(),
            "broadcast": node.broadcasts.stats(),
            "peer_list": self.peer_list(),
            "conn_list": connections[:200],
        }
