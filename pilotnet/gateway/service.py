"""The running gateway: mappings made real (alias + listeners), its control socket, its DNS front.

:class:`Gateway` owns the :class:`~pilotnet.gateway.mappings.MappingTable` and
does the I/O for each change: map = resolve the target through the daemon,
add the loopback alias, listen on every configured port; unmap and stop undo
that.  Changes are serialised (a lock), so two concurrent maps of one agent
(two DNS queries, say) give one mapping.  At start, aliases a killed gateway
left in the subnet are removed first.
"""

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from pilotnet.driver.targets import parse_target
from pilotnet.endpoints import DaemonLink
from pilotnet.gateway.bridge import BridgeFactory
from pilotnet.gateway.control import ControlServer
from pilotnet.gateway.dns import listen_dns
from pilotnet.gateway.mappings import Mapping, MappingTable
from pilotnet.errors import PilotError

log = Logger()

#: TCP connections bridged at once per mapping and port.
MAX_BRIDGES_PER_PORT = 256
DIAL_TIMEOUT = 30.0


def tcp_listener(reactor):
    """Listen on ``ip:port`` over TCP: the default way the gateway opens a mapping's ports."""
    def listen(ip: str, port: int, factory):
        return TCP4ServerEndpoint(reactor, port, interface=ip).listen(factory)
    return listen


class Gateway(service.Service):
    """Mappings, their aliases, listeners and bridges; the control socket and the optional DNS front."""

    def __init__(self, reactor, link: DaemonLink, table: MappingTable, ports: Sequence[int], aliases,
                 control_path: Optional[str] = None, targets: Sequence[Tuple[str, Optional[str]]] = (),
                 listen: Optional[Callable] = None, dns_port: Optional[int] = None,
                 dns_bound: Optional[Callable] = None):
        self.reactor = reactor
        self.link = link
        self.table = table
        self.ports = list(ports)
        self.aliases = aliases
        self.control_path = control_path
        self.targets = list(targets)
        self.listen = listen or tcp_listener(reactor)
        self.dns_port = dns_port
        #: Told the DNS front's address once it listens (the ``--ports-file`` writer).
        self.dns_bound = dns_bound
        self.dns_address = None
        self._listeners: Dict[str, List] = {}
        self._bridges: Dict[str, List[BridgeFactory]] = {}
        self._lock = DeferredLock()
        self._control = None
        self._dns_ports: List = []
        #: Fires once start-up (stale aliases, control socket, DNS front, initial targets) is done.
        self.ready: Optional[Deferred] = None

    # -- changes ------------------------------------------------------------------------

    async def map(self, target: str, ip: Optional[str] = None) -> Mapping:
        """Map ``target`` (resolved through the daemon) at ``ip`` or the next free IP."""
        address = parse_target(target)
        hostname = "" if address is not None else target
        if address is None:
            daemon, _ = await self.link.open()
            address = await daemon.resolve(target)
        await self._lock.acquire()
        try:
            existing = self.table.for_address(address)
            if existing is not None:
                return existing
            mapping = self.table.plan(address, ip, hostname)
            self.aliases.add(mapping.local_ip)
            self.table.add(mapping)
            await self._open_ports(mapping)
        finally:
            self._lock.release()
        log.info("gateway: mapped {ip} -> {address}", ip=mapping.local_ip, address=str(address))
        return mapping

    async def _open_ports(self, mapping: Mapping) -> None:
        listeners, bridges = [], []
        for port in self.ports:
            factory = BridgeFactory(self.reactor, self.link, mapping.pilot_addr, port, MAX_BRIDGES_PER_PORT,
                                    DIAL_TIMEOUT)
            try:
                listeners.append(await self.listen(mapping.local_ip, port, factory))
                bridges.append(factory)
            except Exception as error:  # the reference ignores ports it cannot listen on; we say which
                log.warn("gateway: cannot listen on {ip}:{port}: {error}", ip=mapping.local_ip, port=port,
                         error=error)
        self._listeners[mapping.local_ip] = listeners
        self._bridges[mapping.local_ip] = bridges

    async def unmap(self, ip: str) -> Mapping:
        await self._lock.acquire()
        try:
            mapping = self.table.remove(ip)
            await self._close_ports(ip)
            self.aliases.remove(ip)
        finally:
            self._lock.release()
        log.info("gateway: unmapped {ip}", ip=ip)
        return mapping

    async def _close_ports(self, ip: str) -> None:
        """Stop listening on ``ip`` and end its bridged connections."""
        for listener in self._listeners.pop(ip, []):
            await maybeDeferred(listener.stopListening)
        for bridges in self._bridges.pop(ip, []):
            await bridges.close_all()

    def status(self) -> dict:
        status = {
            "pid": os.getpid(), "subnet": str(self.table.subnet), "ports": self.ports,
            "mappings": [self.describe(mapping) for mapping in self.table.mappings()],
        }
        if self.dns_address is not None:
            status["dns"] = {"host": self.dns_address.host, "port": self.dns_address.port}
        return status

    def describe(self, mapping: Mapping) -> dict:
        """A mapping's JSON with the ports it listens on and its bridged connections."""
        document = mapping.document()
        document["ports"] = [listener.getHost().port for listener in self._listeners.get(mapping.local_ip, [])]
        document["connections"] = sum(len(bridges.connections) for bridges in self._bridges.get(mapping.local_ip, []))
        return document

    # -- lifecycle ----------------------------------------------------------------------------

    def startService(self):
        super().startService()
        self.ready = Deferred.fromCoroutine(self._start())
        self.ready.addErrback(self._start_failed)

    async def _start(self) -> None:
        for ip in self.aliases.remove_stale(self.table.subnet):
            log.info("gateway: removed alias {ip} left by a gateway that did not stop", ip=ip)
        if self.control_path is not None:
            endpoint = UNIXServerEndpoint(self.reactor, self.control_path, mode=0o600, wantPID=True)
            self._control = await endpoint.listen(Factory.forProtocol(lambda: ControlServer(self)))
            self._hand_control_to_daemon_owner()
        if self.dns_port is not None:
            self._dns_ports = listen_dns(self.reactor, self, self.dns_port)
            self.dns_address = self._dns_ports[0].getHost()
            if self.dns_bound is not None:
                self.dns_bound(self.dns_address)
        for target, ip in self.targets:
            await self.map(target, ip)
        log.info("gateway running: subnet {subnet}, ports {ports}", subnet=str(self.table.subnet),
                 ports=self.ports)

    def _hand_control_to_daemon_owner(self) -> None:
        """A gateway run with sudo gives its control socket to the daemon socket's owner.

        That user can already do everything the gateway does through the
        daemon, so ``pilotctl gateway list|map|unmap`` and ``pilotctl info``
        work for them without sudo; nobody else gets access (mode 0600).
        """
        if os.geteuid() != 0 or not self.link.socket_path or self.control_path is None:
            return
        try:
            owner = os.stat(self.link.socket_path)
        except OSError:
            return  # no daemon yet: root keeps it
        os.chown(self.control_path, owner.st_uid, owner.st_gid)

    def _start_failed(self, failure):
        error = failure.value
        log.error("gateway failed to start: {reason}",
                  reason=error.message if isinstance(error, PilotError) else failure.getErrorMessage())
        self.reactor.callWhenRunning(self.reactor.stop)

    async def _stop(self) -> None:
        await self._lock.acquire()
        try:
            for mapping in self.table.mappings():
                await self._close_ports(mapping.local_ip)
                self.table.remove(mapping.local_ip)
                self.aliases.remove(mapping.local_ip)
        finally:
            self._lock.release()
        ports, self._dns_ports = self._dns_ports, []
        if self._control is not None:
            ports.append(self._control)
            self._control = None
        for port in ports:
            await maybeDeferred(port.stopListening)
        await self.link.close()

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._stop())
