"""The registry's Twisted shell: TCP connections in, replies out, state to disk.

:class:`RegistryServer` joins the request handlers, the store and the clock;
:class:`RegistryFactory` / :class:`RegistryProtocol` carry the length-prefixed
JSON over any stream endpoint (TCP, TLS, Unix).  Limits that keep one client
from hurting the others live here: a cap on connections, an idle timeout, a
per-connection request rate (over the soft rate reading pauses briefly, over
the hard rate the connection is closed) and the message size limit.
"""

import time

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from pilotnet.errors import DecodeError, PilotError, INTERNAL
from pilotnet.registry.framing import FrameDecoder, decode_body, encode_message
from pilotnet.registry.handlers import error_reply
from pilotnet.registry.metrics import MALFORMED, RegistryMetrics
from pilotnet.registry.replication import SUBSCRIBE
from pilotnet.registry.requests import RequestError
from pilotnet.registry.ratelimit import RateLimiter

IDLE_TIMEOUT = 300.0
MAX_CONNECTIONS = 10_000
SOFT_REQUEST_RATE = 100
HARD_REQUEST_RATE = 500
THROTTLE_DELAY = 0.01


class RegistryServer:
    """One registry: the request handlers, the store behind them, and the clock.

    ``metrics`` is this registry's :class:`~pilotnet.registry.metrics.RegistryMetrics`,
    created here once and fed every answered request; serve it with
    :func:`pilotnet.registry.metrics.metrics_text`.  ``timer`` measures request
    durations for it (a monotonic clock, not the scheduling one).
    """

    log = Logger()

    def __init__(self, registry, clock, store=None, timer=time.perf_counter, replication=None):
        self.registry = registry
        self.clock = clock
        self.store = store
        self.replication = replication
        self.malformed = 0
        self.metrics = RegistryMetrics(registry, clock)
        self._timer = timer
        # Called with each commit's changes (the dashboard watches the directory this way).
        self.commit_observers = []

    def answer(self, body, peer, transport=None):
        """The reply to one message body, after its changes are stored.

        ``None`` when the message turned ``transport`` into a replication
        subscriber: from then on the primary only writes to it.
        """
        started = self._timer()
        try:
            request = decode_body(body)
        except DecodeError as error:
            self.malformed += 1
            reply = error_reply(error)
            self.metrics.observe(MALFORMED, reply, self._timer() - started)
            return reply
        if request.get("type") == SUBSCRIBE and not self.registry.read_only:
            if self.replication is None:
                return error_reply(RequestError("replication not configured"))
            return self.replication.subscribe(request, self.registry.directory, transport)
        reply = self.registry.handle(request, peer, self.clock.seconds())
        try:
            self.commit()
        except Exception:
            # Not stored means not acknowledged: the client must retry.
            self.log.failure("registry: could not store a change")
            reply = error_reply(PilotError("internal error: change not stored", code=INTERNAL))
        self.metrics.observe(self.metrics.label(request.get("type")), reply,
                             self._timer() - started)
        return reply

    def commit(self):
        changes = self.registry.directory.take_changes()
        self._store(changes)
        for observer in self.commit_observers:
            observer(changes)

    def _store(self, changes):
        if self.store is not None:
            self.store.write(changes)
        if self.replication is not None:
            self.replication.publish(changes)

    def housekeeping(self):
        """Reap stale nodes and write the last-seen times heartbeats moved.

        A standby never reaps: the primary's deletions reach it as changes.
        """
        if not self.registry.read_only:
            self.registry.reap(self.clock.seconds())
        self.commit()
        self._store(self.registry.directory.take_seen())


class RegistryProtocol(Protocol, TimeoutMixin):
    """One client connection: many requests, one reply each, in order."""

    log = Logger()

    def __init__(self, server, peer):
        self._server = server
        self._peer = peer
        self._decoder = FrameDecoder()
        self._soft = RateLimiter(burst=SOFT_REQUEST_RATE, window=1.0)
        self._hard = RateLimiter(burst=HARD_REQUEST_RATE, window=1.0)
        self.callLater = server.clock.callLater
        self._following = False

    def connectionMade(self):
        self.setTimeout(IDLE_TIMEOUT)

    def dataReceived(self, data):
        if self._following:
            return
        self.resetTimeout()
        try:
            bodies = self._decoder.feed(data)
        except DecodeError as error:
            self._server.malformed += 1
            self.log.info("registry: closing {peer}: {error}", peer=self._peer, error=error)
            self.transport.write(encode_message(error_reply(error)))
            self.transport.loseConnection()
            return
        now = self._server.clock.seconds()
        throttled = False
        for body in bodies:
            if not self._hard.allow(None, now):
                self.log.info("registry: closing {peer}: over {rate} requests/s",
                              peer=self._peer, rate=HARD_REQUEST_RATE)
                self.transport.abortConnection()
                return
            throttled |= not self._soft.allow(None, now)
            reply = self._server.answer(body, self._peer, self.transport)
            if reply is None:
                # A standby now follows us over this connection; it sends nothing more.
                self.setTimeout(None)
                self._following = True
                return
            self.transport.write(encode_message(reply))
        if throttled:
            self.transport.pauseProducing()
            self.callLater(THROTTLE_DELAY, self._resume)

    def _resume(self):
        if self.transport.connected:
            self.transport.resumeProducing()

    def timeoutConnection(self):
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.setTimeout(None)
        self.factory.connections.discard(self)
        if self._server.replication is not None:
            self._server.replication.unsubscribe(self.transport)


class _RefuseProtocol(Protocol):
    def connectionMade(self):
        self.transport.abortConnection()


class RegistryFactory(Factory):
    """Accepts registry connections up to ``max_connections``."""

    log = Logger()

    def __init__(self, server, max_connections=MAX_CONNECTIONS):
        self.server = server
        self.max_connections = max_connections
        self.connections = set()

    def buildProtocol(self, addr):
        if len(self.connections) >= self.max_connections:
            self.log.warn("registry: connection limit {limit} reached, refusing {addr}",
                          limit=self.max_connections, addr=addr)
            return _RefuseProtocol()
        host = getattr(addr, "host", "") or "local"
        port = getattr(addr, "port", 0)
        protocol = RegistryProtocol(self.server, (host, port))
        protocol.factory = self
        self.connections.add(protocol)
        return protocol
