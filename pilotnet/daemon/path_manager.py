"""Which way frames to each peer go: straight to it, or through the beacon's relay, and back.

The tunnel carries the mechanism (:meth:`~pilotnet.daemon.tunnel.Tunnel.use_relay`,
``try_direct``, ``probe_relay``, and "paths follow authenticated ingress");
this module is the policy the node applies when the direct path looks broken:

1. A peer that stays silent may have restarted on a new port: ask the registry
   again; if its endpoint moved, try the new one directly (and have the beacon
   coordinate a punch).
2. Otherwise the relay may help, but only if it reaches the peer: a beacon
   knows only nodes that announced themselves to it, and a peer it does not
   know would be cut off for good by a blind switch while the direct path,
   merely lossy, would have carried the stream.  So the peer is never moved
   to the relay on suspicion: we send our key offer through the relay asking
   for the peer's own back (``probe_relay``).  The answer, arriving relayed,
   moves the peer to the relay (the tunnel's ingress rule, which keeps a path
   that carried direct traffic within ``DIRECT_PATH_GRACE``); no answer, and
   traffic keeps going direct, where retransmissions still have a chance.
3. A peer on the relay is tried directly every :data:`DIRECT_RETRY` seconds;
   direct traffic within :data:`DIRECT_PROBE_WAIT` keeps it direct (ingress
   again), silence returns it to the relay, which it was on because the relay
   had answered.

Without encryption there is no key offer to prove the relay with, and a
failing direct path is switched to the relay blindly, as the reference does.
"""

from typing import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pilotnet.daemon.beacon_link import BeaconLink
from pilotnet.daemon.registry_link import Resolver
from pilotnet.daemon.tunnel import Peer, Tunnel
from pilotnet.errors import PilotError
from pilotnet.wire.hostport import join_host_port

log = Logger()

#: A peer reached through the relay is tried directly again this often (seconds).
DIRECT_RETRY = 60.0
#: ... and goes back to the relay if nothing came directly within this long.
DIRECT_PROBE_WAIT = 3.0


class PathManager:
    """The relay/direct policy for every peer of one node.

    ``ping(node)`` sends a keepalive ping to ``node`` on its current path; an
    answer is direct ingress when the path is direct.
    """

    def __init__(self, *, tunnel: Tunnel, resolver: Resolver, beacon: BeaconLink, clock: IReactorTime,
                 ping: Callable[[int], None]) -> None:
        self.tunnel = tunnel
        self.resolver = resolver
        self.beacon = beacon
        self.clock = clock
        self._ping = ping

    @defer.inlineCallbacks
    def direct_failed(self, node: int):
        """A dial got no answer on the direct path (third SYN expiry): a moved peer, or the relay."""
        moved = yield self.refresh_endpoint(node)
        if not moved:
            self._try_relay(node)

    @defer.inlineCallbacks
    def dial_unanswered(self, node: int, silent: bool):
        """A dial is unanswered: ping ``node``; if it has been silent, re-resolve it or try the relay.

        The relay is tried only if the peer stayed silent on the direct path while
        the registry was asked: a retransmitted SYN may have been answered meanwhile.
        """
        if silent:
            asked_at = self.clock.seconds()
            moved = yield self.refresh_endpoint(node)
            peer = self.tunnel.peer(node)
            if not moved and peer is not None and peer.last_direct < asked_at:
                self._try_relay(node)
        if self.tunnel.peer(node):
            self._ping(node)

    @defer.inlineCallbacks
    def refresh_endpoint(self, node: int):
        """Re-resolve ``node``; True when its endpoint changed and the tunnel now uses the new one."""
        self.resolver.forget(node)
        try:
            endpoint = yield self.resolver.endpoint(node)
        except PilotError:
            return False
        peer = self.tunnel.peer(node)
        if peer is None or (peer.endpoint is not None and tuple(peer.endpoint[:2]) == endpoint):
            return False
        log.info("node {node} moved to {endpoint}", node=node, endpoint=join_host_port(*endpoint))
        peer.endpoint = endpoint
        self.tunnel.try_direct(node)
        self.beacon.request_punch(node)
        self.tunnel.add_peer(node, endpoint)
        return True

    @defer.inlineCallbacks
    def retry_direct(self):
        """Peers on the relay get a direct probe; a direct answer keeps them direct."""
        for peer in self.tunnel.peers():
            if not peer.via_relay:
                continue
            yield self.refresh_endpoint(peer.node)
            if peer.endpoint is not None:
                self.tunnel.try_direct(peer.node)
                self._ping(peer.node)
                self.clock.callLater(DIRECT_PROBE_WAIT, self._settle, peer, self.clock.seconds())

    def _settle(self, peer: Peer, probed_at: float) -> None:
        """The direct probe of a relayed peer got no answer: back to the relay, which answered before."""
        if self.tunnel.peer(peer.node) is peer and peer.last_direct < probed_at:
            self.tunnel.use_relay(peer.node)

    def _try_relay(self, node: int) -> None:
        if self.tunnel.encrypt:
            self.tunnel.probe_relay(node)
        else:
            self.tunnel.use_relay(node)
