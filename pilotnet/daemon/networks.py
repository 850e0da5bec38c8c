"""The node's networks: membership commands, and what the registry says about the networks we are in.

Reference controlplane §1.9.2 and §3.5.  Members of a shared (non-backbone)
network trust each other without a handshake, and the network's
``allowed_ports`` limit which of our ports they may reach.  That trust must
end when either side leaves or is kicked, and the registry tells nobody: so
the daemon keeps a :class:`NetworkView` (our networks, their members, their
allowed ports) and refreshes it

* every ``interval`` seconds (``--network-sync``, on the injected clock),
* right after a join, leave or accepted invite of ours, and
* before the trust gate believes a ``check_trust`` that says "trusted" for a
  node it does not trust itself (the registry may be counting a network the
  view has not seen yet, whose ports must then be checked): at most once per
  :data:`MIN_REFRESH_GAP` seconds, concurrent askers sharing one refresh.

A refresh is all or nothing: if any of its registry requests fails, the last
view is kept and the next tick tries again.  Each new view is handed to
``on_change(old, new)`` (the trust manager), which ends the trust the old one
implied and the new one does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.logger import Logger

from pilotnet.errors import INVALID_ARGUMENT, NOT_RUNNING, PilotError
from pilotnet.interfaces import NO_EVENTS
from pilotnet.wire.address import BROADCAST_NODE, Addr

log = Logger()

#: Seconds between refreshes of the view when nothing else asks for one.
DEFAULT_INTERVAL = 30.0
#: A refresh asked for by the gate is not repeated sooner than this.
MIN_REFRESH_GAP = 2.0
BACKBONE = 0
MAX_NETWORK_ID = 0xFFFF
#: Members taken from one ``list_nodes`` reply; a registry sending more is cut off here.
MAX_MEMBERS = 100_000
#: Distinct allowed ports a network may have (the reference's limit).
MAX_ALLOWED_PORTS = 100
#: Networks a refresh describes (two requests each, plus one lookup): within the registry link's
#: burst of requests (pilotnet.daemon.registry_link.REQUEST_RATE) with room for the rest of its traffic.
MAX_TRACKED_NETWORKS = 16


@dataclass(frozen=True)
class JoinedNetwork:
    """One network we are a member of, as the registry last described it."""

    network_id: int
    members: frozenset[int] = frozenset()
    #: Ports members may reach on each other; empty: every port.
    allowed_ports: frozenset[int] = frozenset()

    def allows(self, port: int) -> bool:
        return not self.allowed_ports or port in self.allowed_ports

    def describe(self, node_id: int) -> dict:
        return {"network_id": self.network_id, "address": str(Addr(self.network_id, node_id)),
                "members": len(self.members), "allowed_ports": sorted(self.allowed_ports)}


@dataclass(frozen=True)
class NetworkView:
    """Our networks by ID; plain data, so tests build it by hand.

    The gate asks :meth:`shared_with` for every datagram from a node it does
    not trust directly, so the answer is indexed once per view (node ->
    its networks) rather than searched per packet.
    """

    networks: dict[int, JoinedNetwork] = field(default_factory=dict)
    _by_member: dict[int, tuple[JoinedNetwork, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_member: dict[int, tuple[JoinedNetwork, ...]] = {}
        for _, network in sorted(self.networks.items()):
            for node in network.members:
                by_member[node] = by_member.get(node, ()) + (network,)
        object.__setattr__(self, "_by_member", by_member)

    def shared_with(self, node: int) -> tuple[JoinedNetwork, ...]:
        """The networks ``node`` and we are both members of, lowest ID first."""
        return self._by_member.get(node, ())

    def members(self) -> frozenset[int]:
        """Every node that shares at least one network with us."""
        return frozenset(self._by_member)


EMPTY_VIEW = NetworkView()


def _network_id(value: int) -> int:
    if not 0 < value <= MAX_NETWORK_ID:
        raise PilotError(f"network ID {value} is out of range (1-{MAX_NETWORK_ID})", code=INVALID_ARGUMENT,
                         hint="list the networks with: pilotctl network list")
    return value


@dataclass(frozen=True)
class NetworkMembers:
    """A network's members as ``list_nodes`` names them (reaped ones too: they are members still),
    and those of them it does not mark offline."""

    members: frozenset[int]
    online: frozenset[int]


def members_of(reply: dict) -> NetworkMembers:
    """The members a ``list_nodes_ok`` names; malformed entries (and the broadcast node) are skipped."""
    nodes = reply.get("nodes")
    if not isinstance(nodes, list):
        raise PilotError("registry sent a list_nodes reply without nodes")
    members, online = set(), set()
    for entry in nodes[:MAX_MEMBERS]:
        node = entry.get("node_id") if isinstance(entry, dict) else None
        if isinstance(node, int) and not isinstance(node, bool) and 0 < node < BROADCAST_NODE:
            members.add(node)
            if entry.get("offline") is not True:
                online.add(node)
    return NetworkMembers(frozenset(members), frozenset(online))


def _allowed_ports(reply: dict) -> frozenset[int]:
    ports = reply.get("allowed_ports") or []
    if not isinstance(ports, list):
        return frozenset()
    return frozenset(port for port in ports[:MAX_ALLOWED_PORTS]
                     if isinstance(port, int) and not isinstance(port, bool) and 0 < port <= 0xFFFF)


def _unsupported(error: PilotError) -> bool:
    """A registry without network policies (an older one, or the reference's UP line)."""
    return "unknown message type" in error.message


class Networks:
    """Membership commands on the node's behalf, and the :class:`NetworkView` the trust gate reads.

    ``registry`` has ``request``/``signed`` returning Deferreds of replies;
    ``node_id()`` is our node ID (None before registration).
    """

    emitter = NO_EVENTS

    def __init__(self, *, clock, registry, node_id: Callable[[], int | None],
                 on_change: Callable[[NetworkView, NetworkView], None] = lambda old, new: None) -> None:
        self.clock = clock
        self.registry = registry
        self.node_id = node_id
        self.on_change = on_change
        self.view = EMPTY_VIEW
        self.refreshes = 0
        self.refresh_failures = 0
        self._refreshing: defer.Deferred | None = None
        self._again = False
        self._last_refresh = float("-inf")
        self._untracked_warning = 0

    def _me(self) -> int:
        node = self.node_id()
        if node is None:
            raise PilotError("the daemon is not registered with the registry yet", code=NOT_RUNNING)
        return node

    # -- commands (reference IPC 0x1F) -------------------------------------------------

    def list_networks(self) -> defer.Deferred:
        """Every network the registry lists (not only ours): its ``list_networks`` reply."""
        return self.registry.request({"type": "list_networks"})

    @defer.inlineCallbacks
    def join(self, network_id: int, token: str = ""):
        me = self._me()
        request = {"type": "join_network", "node_id": me, "network_id": _network_id(network_id)}
        if token:
            request["token"] = token
        reply = yield self.registry.signed(request)
        yield self.refresh()
        return reply

    @defer.inlineCallbacks
    def leave(self, network_id: int):
        me = self._me()
        reply = yield self.registry.signed({"type": "leave_network", "node_id": me,
                                            "network_id": _network_id(network_id)})
        yield self.refresh()
        return reply

    def members(self, network_id: int) -> defer.Deferred:
        return self.registry.request({"type": "list_nodes", "network_id": _network_id(network_id)})

    def invite(self, network_id: int, node: int) -> defer.Deferred:
        return self.registry.signed({"type": "invite_to_network", "network_id": _network_id(network_id),
                                     "inviter_id": self._me(), "target_node_id": node})

    def invites(self) -> defer.Deferred:
        return self.registry.signed({"type": "poll_invites", "node_id": self._me()})

    @defer.inlineCallbacks
    def respond(self, network_id: int, accept: bool):
        reply = yield self.registry.signed({"type": "respond_invite", "node_id": self._me(),
                                            "network_id": _network_id(network_id), "accept": accept})
        if accept:
            yield self.refresh()
        return reply

    @defer.inlineCallbacks
    def auto_join(self, network_ids: Iterable[int]):
        """Join each of ``network_ids`` we are not in yet (``daemon start --networks``); failures are logged."""
        for network_id in network_ids:
            if network_id in self.view.networks:
                continue
            try:
                reply = yield self.join(network_id)
            except PilotError as error:
                log.warn("network {network}: auto-join failed: {reason}", network=network_id, reason=error.message)
                continue
            self.emitter.emit("network.auto_joined", network_id=network_id, address=reply.get("address"))

    # -- the view ------------------------------------------------------------------------

    def refresh(self) -> defer.Deferred:
        """Ask the registry for our networks now; concurrent calls share one refresh (and one after it)."""
        if self.node_id() is None:
            return defer.succeed(self.view)
        if self._refreshing is not None:
            self._again = True
            waiting: defer.Deferred = defer.Deferred()

            def share(result: object) -> object:
                waiting.callback(self.view)
                return result

            self._refreshing.addBoth(share)
            return waiting
        refreshing = self._refreshing = defer.Deferred()
        self._last_refresh = self.clock.seconds()
        self._fetch().addCallbacks(self._install, self._failed).addBoth(self._refreshed, refreshing)
        return refreshing

    def refresh_soon(self) -> defer.Deferred:
        """:meth:`refresh`, unless one ran within :data:`MIN_REFRESH_GAP` seconds (then the view as it is)."""
        if self._refreshing is None and self.clock.seconds() - self._last_refresh < MIN_REFRESH_GAP:
            return defer.succeed(self.view)
        return self.refresh()

    def _refreshed(self, _, refreshing: defer.Deferred) -> None:
        self._refreshing = None
        refreshing.callback(self.view)
        if self._again:
            self._again = False
            self.refresh()

    @defer.inlineCallbacks
    def _fetch(self):
        me = self._me()
        ours = yield self.registry.request({"type": "lookup", "node_id": me})
        listed = ours.get("networks") or []
        if not isinstance(listed, list):
            raise PilotError("registry sent a lookup reply whose networks are not a list")
        network_ids = sorted({n for n in listed if isinstance(n, int)
                              and not isinstance(n, bool) and 0 < n <= MAX_NETWORK_ID})
        if len(network_ids) > MAX_TRACKED_NETWORKS and len(network_ids) != self._untracked_warning:
            self._untracked_warning = len(network_ids)  # once per count, not every refresh
            log.warn("member of {count} networks; only the {limit} lowest IDs are tracked",
                     count=len(network_ids), limit=MAX_TRACKED_NETWORKS)
            del network_ids[MAX_TRACKED_NETWORKS:]
        replies = yield defer.gatherResults(
            [self._describe(network_id) for network_id in network_ids], consumeErrors=True)
        return NetworkView({network.network_id: network for network in replies})

    @defer.inlineCallbacks
    def _describe(self, network_id: int):
        listing = yield self.registry.request({"type": "list_nodes", "network_id": network_id})
        try:
            policy = yield self.registry.request({"type": "get_network_policy", "network_id": network_id})
        except PilotError as error:
            if not _unsupported(error):
                raise
            policy = {}
        return JoinedNetwork(network_id, members_of(listing).members, _allowed_ports(policy))

    def _install(self, view: NetworkView) -> None:
        old, self.view = self.view, view
        self.refreshes += 1
        me = self.node_id()
        for network_id in sorted(set(view.networks) - set(old.networks)):
            self.emitter.emit("network.sync_joined", network_id=network_id, address=str(Addr(network_id, me or 0)))
        for network_id in sorted(set(old.networks) - set(view.networks)):
            log.info("network {network}: no longer a member", network=network_id)
            self.emitter.emit("network.sync_left", network_id=network_id)
        if old != view:
            self.on_change(old, view)

    def _failed(self, failure) -> None:
        self.refresh_failures += 1
        if failure.check(defer.FirstError):
            failure = failure.value.subFailure
        if not failure.check(PilotError):
            log.failure("network refresh failed", failure)
            return
        log.warn("network refresh failed, keeping the last view: {reason}", reason=failure.value.message)

    # -- observation -----------------------------------------------------------------------

    def describe(self) -> list[dict]:
        """``info``'s ``networks``: each of ours with our address on it (reference FK), members, ports."""
        me = self.node_id() or 0
        return [network.describe(me) for _, network in sorted(self.view.networks.items())]
