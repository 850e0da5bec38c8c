"""The beacon's Twisted shell: one UDP socket around :class:`BeaconCore`.

:class:`BeaconService` listens, expires stale entries every minute, sends
syncs to peer beacons every 10 s and, when given a registry, announces itself
there every 30 s and learns the other beacons from it (``beacon_register`` /
``beacon_list``), which is how beacons find each other.  The registry's list
is anybody's to write, so its beacons are synced with only when the beacons
share a secret (see :mod:`pilotnet.beacon.peering`).
"""

import ipaddress

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from pilotnet.errors import PilotError, INVALID_ARGUMENT
from pilotnet.plugin_options import ListeningService
from pilotnet.wire.hostport import join_host_port, split_host_port

EXPIRE_INTERVAL = 60.0
SYNC_INTERVAL = 10.0
REGISTRY_INTERVAL = 30.0
#: Relayed frames may be as large as a UDP datagram (Twisted reads only 8192 bytes unless told).
MAX_DATAGRAM = 65535


def parse_udp_address(text):
    """``host:port`` or ``[v6]:port`` with an IP literal host, as ``(host, port)``."""
    host, port = split_host_port(text, what="UDP address", allow_port_zero=True)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise PilotError(f"invalid UDP address {text!r}: expected IP:port or [IPv6]:port",
                         code=INVALID_ARGUMENT) from None
    return host, port


def _plain_host(host):
    """IPv4-mapped IPv6 text (what a dual-stack socket reports) as plain IPv4."""
    if host.startswith("::ffff:"):
        mapped = ipaddress.ip_address(host).ipv4_mapped
        if mapped is not None:
            return str(mapped)
    return host


class BeaconProtocol(DatagramProtocol):
    log = Logger()

    def __init__(self, core, clock):
        self.core = core
        self.clock = clock
        self._ipv6_socket = False

    def startProtocol(self):
        self._ipv6_socket = ":" in self.transport.getHost().host

    def datagramReceived(self, data, addr):
        source = (_plain_host(addr[0]), addr[1])
        try:
            replies = self.core.receive(data, source, self.clock.seconds())
        except Exception:
            self.core.dropped["internal_error"] += 1
            self.log.failure("beacon: datagram from {source} failed", source=source)
            return
        self.send(replies)

    def send(self, datagrams):
        for payload, (host, port) in datagrams:
            if self._ipv6_socket and ":" not in host:
                host = "::ffff:" + host
            elif not self._ipv6_socket and ":" in host:
                self.core.dropped["unreachable_family"] += 1
                continue
            try:
                self.transport.write(payload, (host, port))
            except OSError:
                self.core.dropped["send_failed"] += 1


class _UDPListener(ListeningService):
    def __init__(self, reactor, protocol, host, port, on_listening):
        self._reactor = reactor
        self._protocol = protocol
        self._host = host
        self._port = port
        self._on_listening = on_listening

    def startService(self):
        super().startService()
        self.port = self._reactor.listenUDP(self._port, self._protocol, interface=self._host,
                                            maxPacketSize=MAX_DATAGRAM)
        self._on_listening(self.port.getHost())


class BeaconService(MultiService):
    """The beacon: a UDP listener plus its housekeeping timers."""

    log = Logger()

    def __init__(self, reactor, core, host="127.0.0.1", port=9001, *, peers=(),
                 registry=None, advertise=None, on_listening=None):
        super().__init__()
        self.core = core
        self.protocol = BeaconProtocol(core, reactor)
        self._reactor = reactor
        self._configured_peers = {(_plain_host(h), p) for h, p in peers}
        self._registry_peers = set()
        self._warned_unauthenticated = False
        self._registry = registry
        self._advertise = advertise
        self._on_listening = on_listening
        self.listener = _UDPListener(reactor, self.protocol, host, port, self._listening)
        self.listener.setServiceParent(self)
        for interval, call in ((EXPIRE_INTERVAL, self.expire), (SYNC_INTERVAL, self.sync)):
            timer = TimerService(interval, call)
            timer.clock = reactor
            timer.setServiceParent(self)
        if registry is not None:
            timer = TimerService(REGISTRY_INTERVAL, self.announce)
            timer.clock = reactor
            timer.setServiceParent(self)
        core.set_peers(self._configured_peers)

    def _listening(self, address):
        self.log.info("beacon {beacon_id} listening on udp {host}:{port}",
                      beacon_id=self.core.beacon_id, host=address.host, port=address.port)
        if self._on_listening is not None:
            self._on_listening(address)

    @property
    def address(self):
        return self.listener.port.getHost()

    def expire(self):
        expired = self.core.expire(self._reactor.seconds())
        if expired:
            self.log.info("beacon: {count} node entries expired", count=expired)

    def sync(self):
        self.protocol.send(self.core.sync_datagrams(self._reactor.seconds()))

    def announce(self):
        """Register with the registry and take the other beacons it lists as peers."""
        if self.listener.port is None:
            return None
        address = self._advertise or self._own_address()
        waiting = self._registry({"type": "beacon_register", "beacon_id": self.core.beacon_id,
                                  "addr": address})
        waiting.addCallback(lambda _: self._registry({"type": "beacon_list"}))
        waiting.addCallback(self._learn_peers)
        waiting.addErrback(lambda failure: self.log.warn(
            "beacon: registry unreachable: {error}", error=failure.getErrorMessage()))
        return waiting

    def _own_address(self):
        host = self.address
        return join_host_port(host.host, host.port)

    def _learn_peers(self, reply):
        peers = set()
        for entry in reply.get("beacons", []):
            if entry.get("id") == self.core.beacon_id:
                continue
            try:
                host, port = parse_udp_address(str(entry.get("addr", "")))
            except PilotError:
                continue
            peers.add((_plain_host(host), port))
        self._registry_peers = peers
        self.core.set_peers(self._configured_peers, peers)
        if self.core.peer_auth is None and peers - self._configured_peers and not self._warned_unauthenticated:
            self._warned_unauthenticated = True
            self.log.warn("beacon: not syncing with the {count} beacon(s) the registry lists: anyone can list "
                          "an address there; give every beacon the same --peer-secret-file, or name peers "
                          "with --peer", count=len(peers - self._configured_peers))
