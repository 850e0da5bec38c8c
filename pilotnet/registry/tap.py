"""``twistd pilot-registry``: the registry on its own.

    twistd -n pilot-registry --registry tcp:9000:interface=127.0.0.1 --store registry.db
"""

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from pilotnet.registry.directory import Directory
from pilotnet.registry.handlers import Registry
from pilotnet.plugin_options import PortsFile, ServerOptions
from pilotnet.registry.ratelimit import RateLimiter
from pilotnet.registry.server import MAX_CONNECTIONS, RegistryFactory, RegistryServer
from pilotnet.registry.store import RegistryStore

DEFAULT_ENDPOINT = "tcp:9000:interface=127.0.0.1"
HOUSEKEEPING_INTERVAL = 10.0

log = Logger()


class RegistryOptions(ServerOptions):
    optParameters = [
        ["registry", None, DEFAULT_ENDPOINT, "Listen endpoint (Twisted endpoint string)."],
        ["store", None, None, "SQLite file keeping the registry's state; memory only if unset."],
        ["admin-token", None, "",
         "Token for admin requests (create_network, backbone list_nodes); unset disables them."],
        ["stale-after", None, "300", "Seconds without heartbeat before a node is reaped."],
        ["max-connections", None, str(MAX_CONNECTIONS), "Concurrent client connections."],
        ["registrations-per-minute", None, "10", "New keys registered per source IP per minute."],
        ["tls-cert", None, None, "PEM certificate for --tls (self-signed one generated if unset)."],
        ["tls-key", None, None, "PEM private key of --tls-cert."],
    ]
    optFlags = [
        ["tls", None, "Speak TLS on the registry listener; clients pin the logged fingerprint."],
    ]

    def postOptions(self):
        super().postOptions()
        if bool(self["tls-cert"]) != bool(self["tls-key"]):
            raise usage.UsageError("--tls-cert and --tls-key go together")
        self["stale-after"] = self.positive_number(self["stale-after"], "stale-after")
        for name in ("max-connections", "registrations-per-minute"):
            try:
                self[name] = int(self[name])
            except ValueError:
                raise usage.UsageError(f"--{name} must be an integer") from None


class _StreamListener(Service):
    """Listens on a server endpoint; a bind failure stops start-up with its reason."""

    def __init__(self, endpoint, factory, on_listening):
        self._endpoint = endpoint
        self._factory = factory
        self._on_listening = on_listening
        self.port = None

    def startService(self):
        super().startService()
        outcome = []
        self._endpoint.listen(self._factory).addBoth(outcome.append)
        if outcome and isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self.port = outcome[0]
        self._on_listening(self.port.getHost())

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()


class _StoreCloser(Service):
    """Writes the last-seen times and closes the store when the process stops."""

    def __init__(self, server):
        self._server = server

    def stopService(self):
        super().stopService()
        self._server.housekeeping()
        self._server.store.close()


def make_registry_service(reactor, options, on_listening=lambda address: None):
    """The registry as a :class:`MultiService`: listener, housekeeping, store."""
    now = reactor.seconds()
    directory = Directory(started=now)
    store = None
    if options["store"]:
        store = RegistryStore(options["store"])
        restored = store.load_into(directory)
        log.info("registry: restored {count} entities from {path}",
                 count=restored, path=options["store"])
    else:
        log.warn("registry: no --store given, state lives in memory only")
    registry = Registry(
        directory, admin_token=options["admin-token"], stale_after=options["stale-after"],
        register_limiter=RateLimiter(burst=options["registrations-per-minute"], window=60.0))
    server = RegistryServer(registry, reactor, store)
    factory = RegistryFactory(server, max_connections=options["max-connections"])
    if options["tls"]:
        factory = _with_tls(factory, options)

    def listening(address):
        log.info("registry listening on {address}", address=address)
        on_listening(address)

    service = MultiService()
    service.registry_server = server
    # Services stop in reverse order: the listener before the store closes.  It
    # starts before the timer, so a port in use stops start-up early.
    if store is not None:
        _StoreCloser(server).setServiceParent(service)
    _StreamListener(serverFromString(reactor, options["registry"]), factory,
                    listening).setServiceParent(service)
    housekeeping = TimerService(HOUSEKEEPING_INTERVAL, server.housekeeping)
    housekeeping.clock = reactor
    housekeeping.setServiceParent(service)
    return service


def _with_tls(factory, options):
    from pilotnet.registry import tls
    if options["tls-cert"]:
        key, certificate = tls.load_certificate(options["tls-cert"], options["tls-key"])
    else:
        key, certificate = tls.self_signed_certificate()
    log.info("registry TLS certificate fingerprint (sha256): {fingerprint}",
             fingerprint=tls.fingerprint(certificate))
    return tls.tls_factory(factory, key, certificate)


Options = RegistryOptions


def makeService(options):
    from twisted.internet import reactor
    ports = PortsFile(options["ports-file"], ["registry"])
    return make_registry_service(reactor, options, ports.reporter("registry"))
