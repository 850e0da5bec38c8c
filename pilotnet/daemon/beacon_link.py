"""The daemon's side of the beacon: endpoint discovery, keepalives and punch requests.

Everything goes through the tunnel's own UDP socket, so the endpoint the
beacon observes is the one peers must use and the NAT mapping the keepalives
hold open is the tunnel's.  The tunnel hands us the beacon messages that came
from the beacon's address (and carries out punch commands itself).
"""

from twisted.internet import defer
from twisted.logger import Logger

from pilotnet.wire import beacon

log = Logger()

DISCOVERY_TIMEOUT = 5.0


class BeaconLink:
    def __init__(self, tunnel, clock):
        self.tunnel = tunnel
        self.clock = clock
        self.observed = None
        self._waiting = []
        tunnel.on_beacon = self.received

    @property
    def address(self):
        return self.tunnel.beacon_address

    def _send(self, message):
        if self.address is not None:
            self.tunnel.send_to_address(beacon.encode(message), self.address)

    def discover(self, timeout=DISCOVERY_TIMEOUT):
        """Ask the beacon where our datagrams come from: Deferred of an Endpoint, or None.

        None means no answer within ``timeout`` (no beacon, or it is down); the
        daemon then registers its local address and relies on later keepalives.
        """
        if self.address is None:
            return defer.succeed(None)
        waiting = defer.Deferred()
        self._waiting.append(waiting)
        waiting.addTimeout(timeout, self.clock, onTimeoutCancel=lambda *_: None)
        waiting.addBoth(self._done_waiting, waiting)
        self._send(beacon.Discover(self.tunnel.node_id or 0))
        return waiting

    def _done_waiting(self, result, waiting):
        if waiting in self._waiting:
            self._waiting.remove(waiting)
        return result

    def keepalive(self):
        """Re-register our node with the beacon (refreshes its entry and our NAT mapping)."""
        if self.tunnel.node_id is not None:
            self._send(beacon.Discover(self.tunnel.node_id))

    def request_punch(self, target):
        """Ask the beacon to have ``target`` and us punch toward each other."""
        if self.tunnel.node_id is not None:
            self._send(beacon.PunchRequest(self.tunnel.node_id, target))

    def received(self, message):
        if type(message) is beacon.DiscoverReply:
            if self.observed != message.endpoint:
                log.info("beacon sees us at {endpoint}", endpoint=str(message.endpoint))
            self.observed = message.endpoint
            for waiting in list(self._waiting):
                waiting.callback(message.endpoint)
