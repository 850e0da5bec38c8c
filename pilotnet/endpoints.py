"""``pilot:`` endpoints: every Twisted program can listen on and dial Pilot ports.

Endpoint strings (registered by ``twisted/plugins/pilotnet_endpoints.py``)::

    serverFromString(reactor, "pilot:80")                  # listen on port 80 of the local daemon
    serverFromString(reactor, "pilot:port=80:socket=/run/pilot.sock")
    clientFromString(reactor, "pilot:agent-alpha:80")      # dial port 80 of a node by hostname
    clientFromString(reactor, "pilot:host=4:port=80:timeout=10")   # by node ID, 10 s to connect
    clientFromString(reactor, r"pilot:0\\:0000.0000.0004:80")       # by address (colons escaped)

``socket`` is the daemon's control socket (default: ``$PILOT_SOCKET``, else
``<home>/pilot.sock`` with home ``$PILOT_HOME`` or ``~/.pilot``), so
``twistd web --listen pilot:80 --path .`` serves a directory to the overlay.

HTTP over Pilot: :func:`pilot_agent` is a ``twisted.web.client.Agent`` (use it
with treq as ``treq.get(url, agent=pilot_agent(reactor))``) whose URLs name
agents: ``http://agent-alpha/``, ``http://agent-alpha.pilot:8080/``,
``http://4/`` (a node ID) or ``pilot://agent-alpha/``.  The Pilot stream is
already encrypted end to end, so there is no ``https`` form.

A dial that fails (an unknown host, an unreachable node, no daemon) fails
with :class:`PilotConnectError`, a ``ConnectError`` that carries the
project's error ``code`` and ``hint``.
"""

from typing import List, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from pilotnet.driver.client import connect
from pilotnet.driver.targets import parse_port
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, PilotError
from pilotnet.stream_transport import PilotAddress, StreamTransport

log = Logger()

#: Host names under this suffix name agents (``agent-alpha.pilot``), as the gateway's DNS front does.
PILOT_SUFFIX = ".pilot"
HTTP_SCHEMES = (b"http", b"pilot")


class PilotConnectError(ConnectError):
    """A Pilot dial that failed, with the project's stable error ``code`` and a ``hint``."""

    def __init__(self, message: str, code: str = CONNECTION_FAILED, hint: Optional[str] = None):
        super().__init__(string=message)
        self.message = message
        self.code = code
        self.hint = hint

    @classmethod
    def from_error(cls, error: Exception) -> "PilotConnectError":
        if isinstance(error, PilotError):
            return cls(error.message, error.code, error.hint)
        return cls(str(error))


class DaemonLink:
    """How endpoints reach the daemon: a control connection per use, or one kept connection.

    By default (what endpoint strings use) each listener or dialled stream
    opens a control connection of its own and closes it when it ends.  With
    ``keep=True`` one connection is shared by everything (the gateway bridges
    every TCP connection over it), reopened on the next use after it was
    lost, and closed by :meth:`close`.
    """

    def __init__(self, reactor, socket_path: Optional[str] = None, keep: bool = False):
        self.reactor = reactor
        self.socket_path = socket_path
        self.keep = keep
        self._kept = None
        self._waiters: List[Deferred] = []
        self._address: Optional[str] = None

    async def open(self):
        """A connected SDK :class:`~pilotnet.driver.client.Daemon` and the node's own address."""
        if not self.keep:
            daemon = await connect(self.reactor, self.socket_path)
            try:
                return daemon, await self._local_address(daemon)
            except BaseException:
                daemon.close()
                raise
        if self._kept is None:
            waiter: Deferred = Deferred()
            self._waiters.append(waiter)
            if len(self._waiters) == 1:
                Deferred.fromCoroutine(self._open_kept())
            await waiter
        return self._kept, self._address

    async def _open_kept(self):
        """Open the kept connection once for everybody waiting on it."""
        daemon = None
        try:
            daemon = await connect(self.reactor, self.socket_path)
            self._address = await self._local_address(daemon)
        except BaseException as error:
            outcome = Failure(error)
            if daemon is not None:
                daemon.close()
        else:
            self._kept = daemon
            daemon.disconnected.addCallback(lambda _: self._lost(daemon))
            outcome = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if outcome is None:
                waiter.callback(None)
            else:
                waiter.errback(outcome)

    def _lost(self, daemon) -> None:
        if self._kept is daemon:
            self._kept = None

    async def _local_address(self, daemon) -> str:
        if self._address is None:
            self._address = (await daemon.info())["address"]
        return self._address

    def release(self, daemon) -> None:
        """A use is over: its own connection closes; the kept one stays."""
        if daemon is not self._kept:
            daemon.close()

    def close(self) -> Deferred:
        kept, self._kept = self._kept, None
        return kept.close() if kept is not None else succeed(None)


@implementer(IStreamClientEndpoint)
class PilotClientEndpoint:
    """Dials ``port`` on ``target`` (hostname, node ID or address) through the local daemon."""

    def __init__(self, reactor, target: str, port: int, socket_path: Optional[str] = None,
                 timeout: Optional[float] = None, link: Optional[DaemonLink] = None):
        self.reactor = reactor
        self.target = target
        self.port = parse_port(port)
        self.timeout = timeout
        self.link = link or DaemonLink(reactor, socket_path)

    def connect(self, factory):
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory):
        try:
            daemon, local_address = await self.link.open()
        except PilotError as error:
            raise PilotConnectError.from_error(error) from None
        try:
            stream = await daemon.dial(self.target, self.port, self.timeout)
        except PilotError as error:
            self.link.release(daemon)
            raise PilotConnectError(
                f"cannot connect to {self.target} port {self.port}: {error.message}", error.code, error.hint,
            ) from None
        protocol = factory.buildProtocol(PilotAddress(str(stream.remote_address), stream.remote_port))
        if protocol is None:
            stream.close()
            self.link.release(daemon)
            raise PilotConnectError(f"the factory refused the connection to {self.target} port {self.port}")
        stream.closed.addBoth(lambda _: self.link.release(daemon))
        StreamTransport(stream, protocol, local_address).start()
        return protocol


@implementer(IStreamServerEndpoint)
class PilotServerEndpoint:
    """Listens on ``port`` of the local daemon; each accepted stream gets a protocol from the factory."""

    def __init__(self, reactor, port: int, socket_path: Optional[str] = None, link: Optional[DaemonLink] = None):
        self.reactor = reactor
        self.port = parse_port(port)
        self.link = link or DaemonLink(reactor, socket_path)

    def listen(self, factory):
        return Deferred.fromCoroutine(self._listen(factory))

    async def _listen(self, factory):
        daemon, local_address = await self.link.open()
        try:
            listener = await daemon.listen(self.port)
        except PilotError:
            self.link.release(daemon)
            raise
        port = PilotListeningPort(listener, factory, local_address, lambda: self.link.release(daemon))
        port.start()
        return port


@implementer(IListeningPort)
class PilotListeningPort:
    """A bound Pilot port handing accepted streams to a factory's protocols until stopped."""

    def __init__(self, listener, factory, local_address: str, release):
        self.listener = listener
        self.factory = factory
        self.local_address = local_address
        self._release = release
        self._stopped: Optional[Deferred] = None

    def start(self) -> None:
        self.factory.doStart()
        self._accept_next()

    def _accept_next(self) -> None:
        if self._stopped is None:
            self.listener.accept().addCallbacks(self._accepted, self._listener_ended)

    def _accepted(self, stream) -> None:
        try:
            protocol = self.factory.buildProtocol(PilotAddress(str(stream.remote_address), stream.remote_port))
        except Exception:
            log.failure("the factory failed to build a protocol for {stream}", stream=stream)
            protocol = None
        if protocol is None:
            stream.close()
        else:
            StreamTransport(stream, protocol, self.local_address).start()
        self._accept_next()

    def _listener_ended(self, failure) -> None:
        if self._stopped is None:
            log.warn("Pilot port {port} stopped accepting: {reason}", port=self.listener.port,
                     reason=failure.getErrorMessage())
            self.stopListening()

    def stopListening(self) -> Deferred:
        if self._stopped is None:
            self._stopped = self.listener.close()
            self._stopped.addBoth(lambda _: self._release())
            self._stopped.addBoth(lambda _: self.factory.doStop())
        done: Deferred[None] = Deferred()

        def stopped(result: object) -> object:
            done.callback(None)
            return result
        self._stopped.addBoth(stopped)
        return done

    def getHost(self) -> PilotAddress:
        return PilotAddress(self.local_address, self.listener.port)

    def startListening(self) -> None:
        """Listening starts when the endpoint's ``listen`` fires; nothing more to do."""


# -- HTTP over Pilot ------------------------------------------------------------------


def agent_target(host: str) -> str:
    """The Pilot target a URL host names: ``agent-alpha.pilot`` and ``agent-alpha`` are the same agent."""
    if host.lower().endswith(PILOT_SUFFIX):
        host = host[:-len(PILOT_SUFFIX)]
    if not host:
        raise PilotError("empty host in URL", code=INVALID_ARGUMENT)
    return host


@implementer(IAgentEndpointFactory)
class PilotAgentEndpointFactory:
    """Endpoints for ``http://<agent>[:port]/`` and ``pilot://<agent>[:port]/`` URLs."""

    def __init__(self, reactor, socket_path: Optional[str] = None, timeout: Optional[float] = None):
        self.reactor = reactor
        self.socket_path = socket_path
        self.timeout = timeout

    def endpointForURI(self, uri):
        if uri.scheme not in HTTP_SCHEMES:
            raise SchemeNotSupported(f"unsupported scheme over Pilot: {uri.scheme.decode('ascii', 'replace')}")
        host = uri.host.decode("idna") if isinstance(uri.host, bytes) else uri.host
        return PilotClientEndpoint(self.reactor, agent_target(host), uri.port, self.socket_path, self.timeout)


def pilot_agent(reactor, socket_path: Optional[str] = None, pool=None, timeout: Optional[float] = None) -> Agent:
    """A ``twisted.web.client.Agent`` fetching from agents over Pilot (see the module docstring)."""
    return Agent.usingEndpointFactory(reactor, PilotAgentEndpointFactory(reactor, socket_path, timeout), pool)


# -- endpoint string parsers (the plugin file hands them the arguments) ---------------------


def _timeout(text: Optional[str]) -> Optional[float]:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"pilot endpoint: timeout must be a number of seconds, not {text!r}") from None
    if value <= 0:
        raise ValueError("pilot endpoint: timeout must be positive")
    return value


def _port(text) -> int:
    try:
        return parse_port(text)
    except PilotError as error:
        raise ValueError(f"pilot endpoint: {error.message}") from None


def parse_server(reactor, port=None, socket=None) -> PilotServerEndpoint:
    """``pilot:<port>[:socket=<path>]``."""
    if port is None:
        raise ValueError("pilot endpoint: a port is required, as in pilot:80")
    return PilotServerEndpoint(reactor, _port(port), socket)


def parse_client(reactor, host=None, port=None, socket=None, timeout=None) -> PilotClientEndpoint:
    """``pilot:<host>:<port>[:socket=<path>][:timeout=<seconds>]``."""
    if not host or port is None:
        raise ValueError("pilot endpoint: a host and a port are required, as in pilot:agent-alpha:80")
    return PilotClientEndpoint(reactor, host, _port(port), socket, _timeout(timeout))

