"""The registry's Twisted shell: TCP connections in, replies out, state to disk.

:class:`RegistryServer` joins the request handlers, the store and the clock;
:class:`RegistryFactory` / :class:`RegistryProtocol` carry the length-prefixed
JSON over any stream endpoint (TCP, TLS, Unix).  Limits that keep one client
from hurting the others live here: a cap on connections, an idle timeout, a
per-connection request rate (over the soft rate reading pauses briefly, over
the hard rate the connection is closed) and the message size limit.
"""

import time

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.protocols.policies import TimeoutMixin

from pilotnet.errors import DecodeError, PilotError, INTERNAL
from pilotnet.registry.framing import FrameDecoder, decode_body, encode_message
from pilotnet.registry.handlers import error_reply
from pilotnet.registry.metrics import MALFORMED, RegistryMetrics
from pilotnet.registry.replication import SUBSCRIBE
from pilotnet.registry.requests import RequestError
from pilotnet.ratelimit import TokenBucket

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
        """A Deferred of :meth:`respond`'s reply."""
        return maybeDeferred(self.respond, body, peer, transport)

    def respond(self, body, peer, transport=None):
        """The reply to one message body, or a Deferred of it when it waits for a commit.

        The request is handled (in memory) at once; a reply that changed stored
        state waits for the store's commit, so an acknowledged change survives
        ``kill -9`` while the reactor keeps serving others.  Replies with nothing
        to store (reads, heartbeats) are returned directly: a Deferred per
        request would double the cost of a lookup.  The reply is ``None`` when
        the message turned ``transport`` into a replication subscriber: from
        then on the primary only writes to it.
        """
        started = self._timer()
        try:
            request = decode_body(body)
        except DecodeError as error:
            self.malformed += 1
            reply = error_reply(error)
            self.metrics.observe(MALFORMED, reply, self._timer() - started)
            return reply
        kind = request.get("type")
        if kind == SUBSCRIBE and not self.registry.read_only:
            if self.replication is None:
                return error_reply(RequestError("replication not configured"))
            return self.replication.subscribe(request, self.registry.directory, transport)
        reply = self.registry.handle(request, peer, self.clock.seconds())
        label = self.metrics.label(kind)
        changes = self.registry.directory.take_changes()
        if not changes:
            self.metrics.observe(label, reply, self._timer() - started)
            return reply
        if self.store is not None:
            return self.store.commit(changes).addCallback(self._stored, reply, changes).addErrback(
                self._not_stored).addCallback(self._observed, label, started)
        try:
            reply = self._stored(None, reply, changes)
        except Exception:
            reply = self._not_stored(Failure())
        return self._observed(reply, label, started)

    def _stored(self, _, reply, changes):
        self._committed(None, changes)
        return reply

    def _not_stored(self, failure):
        # Not stored means not acknowledged: the client must retry.
        self.log.failure("registry: could not store a change", failure)
        return error_reply(PilotError("internal error: change not stored", code=INTERNAL))

    def _observed(self, reply, label, started):
        self.metrics.observe(label, reply, self._timer() - started)
        return reply

    def commit(self):
        """Store the changes handled so far; a Deferred that fires once they are committed.

        Standbys and observers hear of a change only after it is committed, and
        in commit order (the store fires its Deferreds in submission order).
        """
        changes = self.registry.directory.take_changes()
        return self._store(changes).addCallback(self._committed, changes)

    def _committed(self, _, changes):
        self._publish(changes)
        for observer in self.commit_observers:
            observer(changes)

    def _publish(self, changes):
        if self.replication is not None:
            self.replication.publish(changes)

    def _store(self, changes):
        return self.store.commit(changes) if self.store is not None and changes else succeed(None)

    def housekeeping(self):
        """Reap stale nodes and write the last-seen times heartbeats moved.

        A standby never reaps: the primary's deletions reach it as changes.
        The writes run in the store's writer thread; the Deferred fires when
        both are committed (so a timer never overlaps two flushes).
        """
        if not self.registry.read_only:
            self.registry.reap(self.clock.seconds())
        committed = self.commit()
        seen = self.registry.directory.take_seen()
        flushed = self._store(seen).addCallback(lambda _: self._publish(seen))
        return gatherResults([committed, flushed], consumeErrors=True).addErrback(
            lambda failure: self.log.failure("registry: housekeeping not stored", failure))


class RegistryProtocol(Protocol, TimeoutMixin):
    """One client connection: many requests, one reply each, in order."""

    log = Logger()

    def __init__(self, server, peer):
        self._server = server
        self._peer = peer
        self._decoder = FrameDecoder()
        self._soft = TokenBucket(SOFT_REQUEST_RATE, SOFT_REQUEST_RATE)
        self._hard = TokenBucket(HARD_REQUEST_RATE, HARD_REQUEST_RATE)
        self.callLater = server.clock.callLater
        self._following = False
        # Replies leave in request order: while one waits for its commit, later
        # ones (even reads, ready at once) queue behind it on this chain.
        self._replies = succeed(None)
        self._waiting = 0

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
        if not bodies:
            return
        now = self._server.clock.seconds()
        count = len(bodies)
        if self._hard.take(count, now) < count:
            self.log.info("registry: closing {peer}: over {rate} requests/s",
                          peer=self._peer, rate=HARD_REQUEST_RATE)
            self.transport.abortConnection()
            return
        throttled = self._soft.take(count, now) < count
        for body in bodies:
            reply = self._server.respond(body, self._peer, self.transport)
            if isinstance(reply, Deferred) or self._waiting:
                self._reply_in_turn(reply)
            else:
                self._send(reply)
            if self._following:
                return
        if throttled:
            self.transport.pauseProducing()
            self.callLater(THROTTLE_DELAY, self._resume)

    def _reply_in_turn(self, reply):
        self._waiting += 1
        self._replies.addCallback(lambda _: reply)
        self._replies.addCallback(self._send).addErrback(self._unsent).addCallback(self._sent)

    def _sent(self, _):
        self._waiting -= 1

    def _send(self, reply):
        if reply is None:
            # A standby now follows us over this connection; it sends nothing more.
            self.setTimeout(None)
            self._following = True
        else:
            self.transport.write(encode_message(reply))

    def _unsent(self, failure):
        # Logged and dropped, so one broken reply does not stall the ones after it.
        self.log.failure("registry: could not answer {peer}", failure, peer=self._peer)

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
