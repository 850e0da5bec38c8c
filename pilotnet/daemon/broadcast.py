"""Broadcast datagrams: one unicast copy to every other member of a network.

Reference dataplane §5.1 (JF): a datagram to ``N:NNNN.FFFF.FFFF`` is a
broadcast on network N.  The backbone (network 0) is refused; the sender must
be a member of N, as the registry's ``list_nodes`` says; every other member
gets its own copy, addressed ``N:<member>``, all from one source port; the
sender gets none.  Each copy takes the unicast path (:meth:`NodeService
.send_datagram_from`): the registry resolves a member's endpoint because the
two share the network, and the member's trust gate admits it as a member of
that network, on the ports the network allows.

The bounds, which the reference does not have:

* the member list of a network is reused for :data:`MEMBERS_TTL` seconds
  (on the injected clock), and concurrent broadcasts to one network share one
  ``list_nodes``, so the registry is not asked once per datagram;
* a broadcast reaches at most :data:`MAX_BROADCAST_MEMBERS` other members; a
  larger network is refused rather than reached in part;
* each control client may broadcast :data:`BROADCAST_BURST` times at once,
  refilled over :data:`BROADCAST_WINDOW` seconds, and all of them together
  :data:`TOTAL_BURST` times (each ``pilotctl`` run is a client of its own).

What happened is counted in ``info`` (:meth:`Broadcaster.stats`).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer

from pilotnet.daemon.networks import BACKBONE, NetworkMembers, members_of
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, PilotError
from pilotnet.ratelimit import RateLimiter
from pilotnet.wire.address import Addr

#: Seconds a network's member list is reused before ``list_nodes`` is asked again.
MEMBERS_TTL = 5.0
#: A list asked for afresh (it did not name us) is still reused if it is younger than this.
MIN_REFETCH_GAP = 1.0
#: Networks whose member lists are kept at once.
MAX_CACHED_NETWORKS = 64
#: Other members one broadcast may reach.
MAX_BROADCAST_MEMBERS = 256
#: Broadcasts one control client may send at once, refilled over BROADCAST_WINDOW seconds.
BROADCAST_BURST = 10
BROADCAST_WINDOW = 10.0
#: Control clients whose broadcast budgets are remembered (least recently used go first).
MAX_CLIENTS = 1024
#: Broadcasts from all clients together (each ``pilotctl`` run is a client of its own).
TOTAL_BURST = 50


class MemberCache:
    """Member lists by network, each kept for ``ttl`` seconds; one ``list_nodes`` in flight per network."""

    def __init__(self, *, clock, registry, ttl: float = MEMBERS_TTL) -> None:
        self.clock = clock
        self.registry = registry
        self.ttl = ttl
        self.fetches = 0
        self._cached: dict[int, tuple[NetworkMembers, float]] = {}  # network -> (members, fetched at)
        self._waiting: dict[int, list[defer.Deferred]] = {}

    def members(self, network_id: int, *, fresh: bool = False) -> defer.Deferred:
        """The members of ``network_id``: from the cache unless it expired or ``fresh`` is asked.

        ``fresh`` still takes a list fetched within :data:`MIN_REFETCH_GAP`
        seconds, so asking afresh cannot turn into a registry request per call.
        """
        cached = self._cached.get(network_id)
        if cached is not None:
            age = self.clock.seconds() - cached[1]
            if age < (MIN_REFETCH_GAP if fresh else self.ttl):
                return defer.succeed(cached[0])
        waiter: defer.Deferred = defer.Deferred()
        waiting = self._waiting.get(network_id)
        if waiting is not None:
            waiting.append(waiter)
            return waiter
        self._waiting[network_id] = [waiter]
        self.fetches += 1
        listing = self.registry.request({"type": "list_nodes", "network_id": network_id})
        listing.addCallback(members_of).addBoth(self._fetched, network_id)
        return waiter

    def _fetched(self, result, network_id: int) -> None:
        if isinstance(result, NetworkMembers):
            self._keep(network_id, result)
        for waiter in self._waiting.pop(network_id):
            if isinstance(result, NetworkMembers):
                waiter.callback(result)
            else:
                waiter.errback(result)

    def _keep(self, network_id: int, members: NetworkMembers) -> None:
        cached = self._cached
        cached.pop(network_id, None)
        if len(cached) >= MAX_CACHED_NETWORKS:
            now = self.clock.seconds()
            for stale in [n for n, (_, fetched) in cached.items() if now - fetched >= self.ttl]:
                del cached[stale]
            if len(cached) >= MAX_CACHED_NETWORKS:
                del cached[next(iter(cached))]  # the longest kept
        cached[network_id] = (members, self.clock.seconds())


class Broadcaster:
    """Sends broadcasts as per-member copies, within the bounds above.

    ``node_id()`` is our node ID (None before registration);
    ``source_port()`` allocates a datagram source port;
    ``send_copy(remote, src_port, dst_port, data)`` sends one datagram on the
    unicast path and returns a Deferred.
    """

    def __init__(self, *, clock, registry, node_id: Callable[[], int | None], source_port: Callable[[], int],
                 send_copy: Callable[[Addr, int, int, bytes], defer.Deferred],
                 max_members: int = MAX_BROADCAST_MEMBERS) -> None:
        self.clock = clock
        self.node_id = node_id
        self.source_port = source_port
        self.send_copy = send_copy
        self.max_members = max_members
        self.cache = MemberCache(clock=clock, registry=registry)
        self.limiter = RateLimiter(BROADCAST_BURST, BROADCAST_WINDOW, max_keys=MAX_CLIENTS)
        self.total_limiter = RateLimiter(TOTAL_BURST, BROADCAST_WINDOW)
        self.counts = {"broadcasts": 0, "copies": 0, "unreachable": 0, "rate_limited": 0, "refused": 0}

    def stats(self) -> dict:
        """``info``'s ``broadcast``: what was sent and refused, and how often member lists were fetched."""
        return {**self.counts, "member_lists_fetched": self.cache.fetches}

    @defer.inlineCallbacks
    def send(self, network_id: int, port: int, data: bytes, client: object):
        """Send ``data`` to ``port`` on every other member of ``network_id``.

        The result is ``(sent, unreachable)``: copies handed to the tunnel, and
        members whose copy could not be sent (no endpoint, say).  ``client`` is
        the control connection asking, whose broadcasts are rate-limited.
        """
        if network_id == BACKBONE:
            self.counts["refused"] += 1
            raise PilotError("broadcast on the backbone (network 0) is not allowed", code=INVALID_ARGUMENT,
                             hint="broadcast on a network you joined: pilotctl network list")
        me = self.node_id()
        if me is None:
            raise PilotError("the daemon is not registered with the registry yet", code=NOT_RUNNING)
        if not data:
            raise PilotError("a datagram needs a payload", code=INVALID_ARGUMENT)
        now = self.clock.seconds()
        if not self.limiter.allow(id(client), now):
            self.counts["rate_limited"] += 1
            raise PilotError(f"too many broadcasts: at most {BROADCAST_BURST} per {BROADCAST_WINDOW:g}s "
                             "from one client", code=CONNECTION_FAILED, hint="retry in a few seconds")
        if not self.total_limiter.allow(None, now):
            self.counts["rate_limited"] += 1
            raise PilotError(f"too many broadcasts: at most {TOTAL_BURST} per {BROADCAST_WINDOW:g}s "
                             "from all clients", code=CONNECTION_FAILED, hint="retry in a few seconds")
        members = yield self._members(network_id, me)
        others = sorted(members.online - {me})
        if len(others) > self.max_members:
            self.counts["refused"] += 1
            raise PilotError(f"network {network_id} has {len(others)} other members online; a broadcast "
                             f"reaches at most {self.max_members}", code=INVALID_ARGUMENT,
                             hint="send to the members you need one by one: pilotctl network members "
                                  f"{network_id}")
        src_port = self.source_port()
        results = yield defer.DeferredList(
            [self.send_copy(Addr(network_id, member), src_port, port, data) for member in others],
            consumeErrors=True)
        sent = sum(1 for ok, _ in results if ok)
        self.counts["broadcasts"] += 1
        self.counts["copies"] += sent
        self.counts["unreachable"] += len(others) - sent
        return sent, len(others) - sent

    @defer.inlineCallbacks
    def _members(self, network_id: int, me: int):
        """The network's members, refused unless we are one (a cached list without us is checked again)."""
        try:
            members = yield self.cache.members(network_id)
            if me not in members.members:
                members = yield self.cache.members(network_id, fresh=True)
        except PilotError as error:
            if error.code == NOT_FOUND or "network not found" in error.message:  # a Go registry sends no code
                self.counts["refused"] += 1
                raise PilotError(f"network {network_id} not found", code=NOT_FOUND,
                                 hint="list the networks: pilotctl network list") from None
            raise
        if me not in members.members:
            self.counts["refused"] += 1
            raise PilotError(f"node {me} is not a member of network {network_id}", code=INVALID_ARGUMENT,
                             hint=f"join it first: pilotctl network join {network_id}")
        return members
