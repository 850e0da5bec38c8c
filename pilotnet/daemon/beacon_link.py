"""The daemon's side of the beacon: endpoint discovery, keepalives and punch requests.

Everything goes through the tunnel's own UDP socket, so the endpoint the
beacon observes is the one peers must use and the NAT mapping the keepalives
hold open is the tunnel's.  The tunnel hands us the beacon messages that came
from the beacon's address (and carries out punch commands itself).
"""

import socket

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
            if type(message) is beacon.Discover:
                datagram = beacon.padded_discover(message.node, self.tunnel.beacon_cookie)
            elif type(message) is beacon.PunchRequest:
                datagram = beacon.padded(message)
            else:
                datagram = beacon.encode(message)
            self.tunnel.send_to_address(datagram, self.address)

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
        """Re-register our node with the beacon (refreshes its entry and our NAT mapping).

        Peers we reach only through the relay get a punch request as well: when
        their NAT (or ours) has started allowing a direct path, the punched PILAs
        get through and the tunnel moves to it (paths follow authenticated ingress).
        """
        if self.tunnel.node_id is not None:
            self._send(beacon.Discover(self.tunnel.node_id))
            for peer in self.tunnel.peers():
                if peer.via_relay:
                    self.request_punch(peer.node)

    def public_host(self):
        """The IP the beacon sees us at, or None before it answered."""
        return self.observed.host if self.observed is not None else None

    def lan_addresses(self):
        """Our tunnel's ``host:port`` on the local network, when a NAT stands between us and the beacon.

        Registered as ``lan_addrs``, so a peer behind the same NAT reaches us on
        the LAN instead of through a hairpin that most routers do not do.
        """
        if self.address is None or self.observed is None:
            return []
        host = self.tunnel.transport.getHost().host
        if host in ("0.0.0.0", "::"):
            host = _source_address_toward(self.address)
        if host is None or host == self.observed.host:
            return []
        return [str(beacon.Endpoint(host, self.tunnel.local_port()))]

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


def _source_address_toward(address):
    """The local IP the kernel would send from to reach ``address`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address[:2])
            return probe.getsockname()[0]
    except OSError:
        return None
