"""The registry's Twisted shell: TCP connections in, replies out, state to disk.

:class:`RegistryServer` joins the request handlers, the store and the clock;
:class:`RegistryFactory` / :class:`RegistryProtocol` carry the length-prefixed
JSON over any stream endpoint (TCP, TLS, Unix).  Limits that keep one client
from hurting the others live here (docs/security.md lists them with their
defaults): a cap on connections and on connections per source IP, an idle
timeout that only whole requests reset, a deadline for finishing a request
once its first byte came (so a 1-byte trickle cannot hold a slot), a global
budget for the bytes of unfinished requests, a per-connection request rate
(over the soft rate reading pauses briefly, over the hard rate the connection
is closed) and the message size limit.
"""

import time
from collections import Counter

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, maybeDeferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.protocols.policies import TimeoutMixin

from pilotnet.errors import DecodeError, PilotError, INTERNAL
from pilotnet.registry.framing import FrameDecoder, decode_body, encode_message
from pilotnet.registry.handlers import error_reply
from pilotnet.registry.metrics import MALFORMED, RegistryMetrics
from pilotnet.registry.freshness import replayed
from pilotnet.registry.races import ReplayedElsewhere, StoreConflict, handle_again
from pilotnet.registry.replication import SUBSCRIBE
from pilotnet.registry.requests import RequestError
from pilotnet.registry.turns import WriteTurns
from pilotnet.ratelimit import RateLimiter, TokenBucket

IDLE_TIMEOUT = 300.0
REQUEST_DEADLINE = 30.0
MAX_CONNECTIONS = 10_000
MAX_CONNECTIONS_PER_IP = 256
MAX_BUFFERED_BYTES = 64 * 1024 * 1024
SOFT_REQUEST_RATE = 100
HARD_REQUEST_RATE = 500
THROTTLE_DELAY = 0.01
REFUSAL_LOG_INTERVAL = 60.0
# Nodes the reaper looks at per housekeeping tick (a few ms of the reactor): a
# million nodes are swept in 40 ticks, about 7 minutes at the 10-second tick.
REAP_BUDGET = 25_000
# Last-seen times serialised per reactor turn by the housekeeping flush: about
# 4 µs each on a busy machine, so 2 ms a turn (5,000 held the reactor 19 ms).
SEEN_CHUNK = 500
# A connection with this many requests waiting in the server's WriteTurns is not
# read again until they are all handled (a client pipelining faster than writes
# are handled is held back instead of queued without end).
MAX_HELD_PER_CONNECTION = 32
# Nor is any connection with requests waiting while this many wait in all: with
# at most one read's requests over either bound per connection (the hard
# request rate closes it beyond that), the queue stays bounded.
MAX_HELD = 10_000


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
        self.timer = timer
        self._prompt_kinds = registry.routes.standby_kinds()
        # Writes beyond a time budget per reactor turn wait for the next turns.
        self.turns = WriteTurns(clock)
        # Long jobs of housekeeping, one step per reactor turn.
        self._turns = Cooperator(scheduler=lambda step: clock.callLater(0, step),
                                 terminationPredicateFactory=lambda: lambda: True)
        # Called with each commit's changes (the dashboard watches the directory this way).
        self.commit_observers = []
        #: Request type -> a coroutine ``front(request, peer, handle)`` answering it in place of
        #: the plain handling, because it must wait for I/O first (identity tokens:
        #: pilotnet.registry.identity_service); ``handle()`` handles the request at that point.
        self.fronts = {}

    def answer(self, body, peer, transport=None, over_tls=False):
        """A Deferred of :meth:`respond`'s reply."""
        return maybeDeferred(self.respond, body, peer, transport, over_tls)

    def respond(self, body, peer, transport=None, over_tls=False):
        """The reply to one message body, or a Deferred of it when it waits for a commit.

        The request is handled (in memory) at once; a reply that changed stored
        state waits for the store's commit, so an acknowledged change survives
        ``kill -9`` while the reactor keeps serving others.  Replies with nothing
        to store (reads, heartbeats) are returned directly: a Deferred per
        request would double the cost of a lookup.  The reply is ``None`` when
        the message turned ``transport`` into a replication subscriber: from
        then on the primary only writes to it.  ``over_tls`` tells the handlers
        the request could not have been captured on the way.
        """
        started = self.timer()
        request, refusal = self.decode(body, started)
        if request is None:
            return refusal
        return self.respond_to(request, peer, transport, over_tls, started)

    def decode(self, body, started):
        """``(request, None)``, or ``(None, the error reply)`` for a body that is no request."""
        try:
            return decode_body(body), None
        except DecodeError as error:
            self.malformed += 1
            reply = error_reply(error)
            self.metrics.observe(MALFORMED, reply, self.timer() - started)
            return None, reply

    def answered_at_once(self, request):
        """Is ``request`` a read or a heartbeat (what a standby answers), handled ahead of
        queued writes (:mod:`pilotnet.registry.turns`)?"""
        return request.get("type") in self._prompt_kinds

    def respond_to(self, request, peer, transport=None, over_tls=False, started=None):
        """:meth:`respond` for a decoded ``request``, received at ``started`` (the timer's time)."""
        if started is None:
            started = self.timer()
        kind = request.get("type")
        if kind == SUBSCRIBE and not self.registry.read_only:
            if self.replication is None:
                return error_reply(RequestError("replication not configured"))
            return self.replication.subscribe(request, self.registry.directory, transport)
        label = self.metrics.label(kind)
        front = self.fronts.get(kind) if isinstance(kind, str) else None
        if front is not None:
            return self._fronted(front, request, peer, over_tls, label, started)
        reply = self.registry.handle(request, peer, self.clock.seconds(), over_tls=over_tls)
        return self._settle(reply, request, peer, over_tls, label, started)

    def _fronted(self, front, request, peer, over_tls, label, started):
        """A request whose front waits for I/O (a token's verification) before, or instead of, handling it."""
        def handle():
            return self.registry.handle(request, peer, self.clock.seconds(), over_tls=over_tls)

        def refused(failure):
            if failure.check(PilotError):
                return error_reply(failure.value)
            self.log.failure("registry: {kind} request failed", failure, kind=request.get("type"))
            return error_reply(PilotError("internal error", code=INTERNAL))

        return ensureDeferred(front(request, peer, handle)).addErrback(refused).addCallback(
            self._settle, request, peer, over_tls, label, started)

    def _settle(self, reply, request, peer, over_tls, label, started):
        """Store what handling ``request`` changed, then the reply (a Deferred of it while it commits)."""
        changes = self.registry.directory.take_changes()
        nonces = self._nonces()
        if not changes:
            self.metrics.observe(label, reply, self.timer() - started)
            return reply
        if self.store is not None:
            return self.store.commit(changes + nonces).addCallback(self._stored, reply, changes).addErrback(
                self._lost_race, request, peer, over_tls, nonces).addErrback(
                self._not_stored).addCallback(self._observed, label, started)
        try:
            reply = self._stored(None, reply, changes)
        except Exception:
            reply = self._not_stored(Failure())
        return self._observed(reply, label, started)

    def _stored(self, _, reply, changes):
        self._committed(None, changes)
        return reply

    def _nonces(self):
        """The nonces the request just handled used, as changes for a store that shares them."""
        admitted = self.registry.replays.take_admitted()
        if self.store is None or not self.store.shares_replays:
            return []
        return [("nonce", f"{signer} {nonce}", expiry) for signer, nonce, expiry in admitted]

    def _lost_race(self, failure, request, peer, over_tls, nonces):
        """Another registry on the database was first: answer as it left things.

        It took a unique value: the request is handled once more on the
        directory the store brought up to date (a second lost race is not
        retried: the client gets ``internal`` and retries).  It committed the
        request's nonce: the request is a replay, refused once its effect on
        the directory is undone.
        """
        failure.trap(StoreConflict, ReplayedElsewhere)
        if failure.check(ReplayedElsewhere):
            return failure.value.settled.addCallback(lambda _: error_reply(replayed()))

        def again(_):
            reply = handle_again(self.registry, request, peer, self.clock.seconds(), over_tls)
            changes = self.registry.directory.take_changes()
            if not changes:
                return reply
            return self.store.commit(changes + nonces).addCallback(self._stored, reply, changes)

        return failure.value.settled.addCallback(again)

    def _not_stored(self, failure):
        # Not stored means not acknowledged: the client must retry.
        self.log.failure("registry: could not store a change", failure)
        return error_reply(PilotError("internal error: change not stored", code=INTERNAL))

    def _observed(self, reply, label, started):
        self.metrics.observe(label, reply, self.timer() - started)
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
            self.registry.reap(self.clock.seconds(), REAP_BUDGET)
        committed = self.commit()
        return gatherResults([committed, self._flush_seen()], consumeErrors=True).addErrback(
            lambda failure: self.log.failure("registry: housekeeping not stored", failure))

    def _flush_seen(self):
        """Write the last-seen times heartbeats moved, ``SEEN_CHUNK`` nodes per reactor turn.

        A million nodes heartbeating once a minute move some 170,000 of them
        between two ticks: their stored forms, built at once, would hold the
        reactor for a tenth of a second or more.
        """
        directory = self.registry.directory
        seen = directory.take_seen()
        # The first chunk at once (all of it, in a directory of fewer nodes).
        stored = [self._write_seen(directory.seen_changes(seen[:SEEN_CHUNK]))]
        if len(seen) <= SEEN_CHUNK:
            return gatherResults(stored, consumeErrors=True)

        def later_chunks():
            for start in range(SEEN_CHUNK, len(seen), SEEN_CHUNK):
                stored.append(self._write_seen(
                    directory.seen_changes(seen[start:start + SEEN_CHUNK])))
                yield

        return self._turns.coiterate(later_chunks()).addCallback(
            lambda _: gatherResults(stored, consumeErrors=True))

    def _write_seen(self, changes):
        written = (self.store.commit_seen(changes) if self.store is not None and changes
                   else succeed(None))
        return written.addCallback(lambda _: self._publish(changes))


class BufferBudget:
    """The bytes of unfinished requests all connections may hold together.

    Each connection may buffer up to one message (4 MiB) while it arrives;
    without a shared bound, the 10,000 connections allowed could hold 40 GiB.
    A connection whose partial request would take the total over ``limit`` is
    closed (it releases what it held).
    """

    def __init__(self, limit: int = MAX_BUFFERED_BYTES) -> None:
        self.limit = limit
        self.used = 0

    def change(self, delta: int) -> bool:
        """Account ``delta`` more (or fewer) bytes; False if that goes over the limit."""
        self.used += delta
        return delta <= 0 or self.used <= self.limit


class RegistryProtocol(Protocol, TimeoutMixin):
    """One client connection: many requests, one reply each, in order."""

    log = Logger()

    def __init__(self, server, peer, *, budget=None, idle_timeout=IDLE_TIMEOUT,
                 request_deadline=REQUEST_DEADLINE, over_tls=False):
        self._server = server
        self._peer = peer
        self._decoder = FrameDecoder()
        self._budget = budget if budget is not None else BufferBudget()
        self._charged = 0
        self._idle_timeout = idle_timeout
        self._request_deadline = request_deadline
        self._deadline = None
        self._over_tls = over_tls
        self._soft = TokenBucket(SOFT_REQUEST_RATE, SOFT_REQUEST_RATE)
        self._hard = TokenBucket(HARD_REQUEST_RATE, HARD_REQUEST_RATE)
        self.callLater = server.clock.callLater
        self._following = False
        # Replies leave in request order: while one waits for its commit, later
        # ones (even reads, ready at once) queue behind it on this chain.
        self._replies = succeed(None)
        self._waiting = 0
        # Requests of this connection queued in the server's WriteTurns.
        self._held = 0
        # Reading is paused: over the soft request rate, or until its held requests are handled.
        self._throttled = False
        self._held_back = False

    @property
    def peer(self):
        """``(host, port)`` of the client."""
        return self._peer

    def connectionMade(self):
        self.setTimeout(self._idle_timeout)

    def dataReceived(self, data):
        if self._following:
            return
        try:
            bodies = self._decoder.feed(data)
        except DecodeError as error:
            self._server.malformed += 1
            self.log.info("registry: closing {peer}: {error}", peer=self._peer, error=error)
            self.transport.write(encode_message(error_reply(error)))
            self.transport.loseConnection()
            return
        if not self._track_partial():
            return
        if not bodies:
            return
        # Only whole requests count as activity: a trickle of bytes does not.
        self.resetTimeout()
        now = self._server.clock.seconds()
        count = len(bodies)
        if self._hard.take(count, now) < count:
            self.log.info("registry: closing {peer}: over {rate} requests/s",
                          peer=self._peer, rate=HARD_REQUEST_RATE)
            self.transport.abortConnection()
            return
        throttled = self._soft.take(count, now) < count
        server = self._server
        # Replies ready at once leave in one write per read, not one per request.
        ready = []
        for body in bodies:
            started = server.timer()
            request, reply = server.decode(body, started)
            if request is not None:
                if self._held or not (server.answered_at_once(request) or server.turns.admit()):
                    # Behind the writes queued before it, and this connection's order kept.
                    self._write(ready)
                    self._hold(request, started)
                    continue
                reply = server.respond_to(request, self._peer, self.transport, self._over_tls,
                                          started)
            if reply is not None and not self._waiting and not isinstance(reply, Deferred):
                ready.append(encode_message(reply))
                continue
            self._write(ready)
            self._answer(reply)
            if self._following:
                return
        self._write(ready)
        if self._held and (self._held >= MAX_HELD_PER_CONNECTION
                           or server.turns.waiting >= MAX_HELD) and not self._held_back:
            self._held_back = True
            self.transport.pauseProducing()
        if throttled:
            self._throttled = True
            self.transport.pauseProducing()
            self.callLater(THROTTLE_DELAY, self._resume)

    def _write(self, encoded):
        """Write the replies ``encoded`` so far, and empty the list."""
        if encoded:
            self.transport.write(encoded[0] if len(encoded) == 1 else b"".join(encoded))
            encoded.clear()

    def _answer(self, reply):
        """Send ``reply`` now, or after the replies still waiting for their commits."""
        if self._waiting or isinstance(reply, Deferred):
            self._reply_in_turn(reply)
        else:
            self._send(reply)

    def _hold(self, request, started):
        """Handle ``request`` in a later reactor turn; its reply keeps its place in line.

        Nothing of this connection can be answered in between (its later
        requests are held behind this one), so the reply's place is taken
        when it is handled.  Holding is cheap on purpose: one reactor turn
        may read hundreds of registrations and hold all but a slice of them
        (a Deferred chained per held request cost about 14 µs each, 13 ms
        of the turn for 900 of them).
        """
        self._held += 1

        def handle():
            self._held -= 1
            if not self._following:
                self._answer(self._server.respond_to(request, self._peer, self.transport,
                                                     self._over_tls, started))
            if self._held_back and not self._held:
                self._held_back = False
                self._resume_reading()

        self._server.turns.later(handle)

    def _track_partial(self):
        """Charge the partial request to the budget and time it; False if the connection was closed."""
        buffered = self._decoder.buffered
        within = self._budget.change(buffered - self._charged)
        self._charged = buffered
        if not within:
            self.factory.note_refusal(f"unfinished requests over the {self._budget.limit}-byte budget",
                                      self._peer)
            self.transport.abortConnection()
            return False
        if buffered and self._deadline is None:
            self._deadline = self.callLater(self._request_deadline, self._request_too_slow)
        elif not buffered and self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        return True

    def _request_too_slow(self):
        self._deadline = None
        self.factory.note_refusal(f"a request unfinished after {self._request_deadline:g} s",
                                  self._peer)
        self.transport.abortConnection()

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
        self._throttled = False
        self._resume_reading()

    def _resume_reading(self):
        if self.transport.connected and not (self._throttled or self._held_back):
            self.transport.resumeProducing()

    def timeoutConnection(self):
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.setTimeout(None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._budget.change(-self._charged)
        self._charged = 0
        self.factory.forget(self)
        if self._server.replication is not None:
            self._server.replication.unsubscribe(self.transport)


class _RefuseProtocol(Protocol):
    def connectionMade(self):
        self.transport.abortConnection()


class RegistryFactory(Factory):
    """Accepts registry connections up to ``max_connections``, ``max_per_ip`` from one IP.

    ``over_tls`` says the listener wraps this factory in TLS (the handlers
    then accept legacy signatures: they cannot have been captured).
    """

    log = Logger()

    def __init__(self, server, max_connections=MAX_CONNECTIONS, *,
                 max_per_ip=MAX_CONNECTIONS_PER_IP, max_buffered=MAX_BUFFERED_BYTES,
                 idle_timeout=IDLE_TIMEOUT, request_deadline=REQUEST_DEADLINE, over_tls=False):
        self.server = server
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.budget = BufferBudget(max_buffered)
        self.idle_timeout = idle_timeout
        self.request_deadline = request_deadline
        self.over_tls = over_tls
        self.connections = set()
        self._per_ip = Counter()
        self._refusals = RateLimiter(burst=1, window=REFUSAL_LOG_INTERVAL)

    def note_refusal(self, why, peer):
        """Log a connection refused or closed for ``why``: once a minute per reason, not per attack."""
        if self._refusals.allow(why, self.server.clock.seconds()):
            self.log.warn("registry: refusing {peer}: {why} (logged at most once a minute)",
                          peer=peer, why=why)

    def _refuse(self, why, addr):
        self.note_refusal(why, addr)
        return _RefuseProtocol()

    def buildProtocol(self, addr):
        host = getattr(addr, "host", "") or "local"
        port = getattr(addr, "port", 0)
        if len(self.connections) >= self.max_connections:
            return self._refuse(f"connection limit {self.max_connections} reached", addr)
        if self._per_ip[host] >= self.max_per_ip:
            return self._refuse(f"{self.max_per_ip} connections per source IP reached", addr)
        protocol = RegistryProtocol(self.server, (host, port), budget=self.budget,
                                    idle_timeout=self.idle_timeout,
                                    request_deadline=self.request_deadline,
                                    over_tls=self.over_tls)
        protocol.factory = self
        self.connections.add(protocol)
        self._per_ip[host] += 1
        return protocol

    def forget(self, protocol):
        """A connection ended: its slots are free again."""
        if protocol in self.connections:
            self.connections.discard(protocol)
            host = protocol.peer[0]
            self._per_ip[host] -= 1
            if not self._per_ip[host]:
                del self._per_ip[host]
