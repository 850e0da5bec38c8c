"""Hot-standby replication: a primary streams its state, a standby follows it.

The reference (controlplane §1.13) re-sends its whole snapshot after every
save and ships no way to set the replication token, so it never works out of
the box.  Ours sends the snapshot once and then only the entities each request
changed -- the same ``(kind, key, value)`` changes the store writes -- and the
token defaults to one generated beside the store.

On the wire (length-prefixed JSON, like every registry message)::

    standby -> {"type": "subscribe_replication", "token": "..."}
    primary -> {"type": "replication_snapshot", "entities": [[kind, key, value], ...], "more": true}
               ... the last snapshot chunk has "more": false
    primary -> {"type": "replication_changes", "changes": [[kind, key, value-or-null], ...]}
    primary -> {"type": "heartbeat"}                      every 15 s when idle

A wrong token is answered ``invalid replication token`` and the connection
closed.  A standby that sees nothing for 45 s, or loses the connection,
reconnects after 3 s and starts again from a fresh snapshot.
"""

import hmac
import json
import os
import secrets
import struct

from twisted.application.internet import ClientService, TimerService
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python import usage

from pilotnet.errors import DecodeError, PilotError
from pilotnet.registry.framing import FrameDecoder, decode_body, encode_message
from pilotnet.registry.handlers import error_reply
from pilotnet.registry.requests import RequestError
from pilotnet.wire.hostport import split_host_port

SUBSCRIBE = "subscribe_replication"
HEARTBEAT_INTERVAL = 15.0
READ_TIMEOUT = 45.0
RECONNECT_DELAY = 3.0
SNAPSHOT_CHUNK = 500
# A subscriber whose socket stayed full this long is dropped; it resubscribes.
MAX_STALL = 60.0
# The primary is authenticated by then; a network entity can be large.
MAX_REPLICATION_MESSAGE = 256 * 1024 * 1024

_LENGTH = struct.Struct(">I")


def _frame(value):
    """A framed replication message (plain compact JSON: no Go peer reads these)."""
    body = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return _LENGTH.pack(len(body)) + body


def load_or_create_token(path):
    """The token in ``path``; one is generated and saved (mode 0600) if the file is missing."""
    try:
        with open(path) as handle:
            token = handle.read().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(token + "\n")
        return token
    if not token:
        raise PilotError(f"replication token file {path} is empty")
    return token


class _Subscriber:
    """One standby's connection, with when its socket last refused more data."""

    def __init__(self, transport, clock):
        self.transport = transport
        self.clock = clock
        self.stalled_since = None

    def pauseProducing(self):
        self.stalled_since = self.clock.seconds()

    def resumeProducing(self):
        self.stalled_since = None

    def stopProducing(self):
        self.stalled_since = None


class ReplicationSource:
    """The primary's side: checks tokens, sends snapshots, pushes every stored change."""

    log = Logger()

    def __init__(self, token, clock):
        self.token = token
        self.clock = clock
        self.subscribers = {}

    def subscribe(self, request, directory, transport):
        """Make ``transport`` a subscriber; an error reply if the token is not right."""
        if not self.token:
            return error_reply(RequestError("replication not configured"))
        token = request.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(
                token.encode("utf-8"), self.token.encode("utf-8")):
            return error_reply(RequestError("invalid replication token"))
        entities = directory.entities()
        for start in range(0, len(entities), SNAPSHOT_CHUNK) or [0]:
            chunk = entities[start:start + SNAPSHOT_CHUNK]
            transport.write(_frame({"type": "replication_snapshot", "entities": chunk,
                                    "more": start + SNAPSHOT_CHUNK < len(entities)}))
        subscriber = _Subscriber(transport, self.clock)
        transport.registerProducer(subscriber, True)
        self.subscribers[transport] = subscriber
        self.log.info("replication: standby {peer} subscribed, sent {count} entities",
                      peer=transport.getPeer(), count=len(entities))
        return None

    def unsubscribe(self, transport):
        self.subscribers.pop(transport, None)

    def publish(self, changes):
        if changes and self.subscribers:
            frame = _frame({"type": "replication_changes", "changes": changes})
            for transport in list(self.subscribers):
                transport.write(frame)

    def heartbeat(self):
        """Keep idle standbys' read timeouts from firing; drop those that stopped reading."""
        now = self.clock.seconds()
        frame = _frame({"type": "heartbeat"})
        for transport, subscriber in list(self.subscribers.items()):
            if subscriber.stalled_since is not None and now - subscriber.stalled_since > MAX_STALL:
                self.log.warn("replication: dropping standby {peer}, not reading",
                              peer=transport.getPeer())
                self.unsubscribe(transport)
                transport.abortConnection()
            else:
                transport.write(frame)


class StandbyState:
    """The standby's side: applies the primary's snapshot and changes to directory and store.

    ``observers`` hear of each batch of applied changes as a primary's commit
    observers do (the dashboard keeps its index up to date with them).
    """

    log = Logger()

    def __init__(self, directory, store=None, observers=()):
        self.directory = directory
        self.store = store
        self.observers = observers
        self.synchronised = False
        self._pending = []

    def receive(self, message):
        kind = message.get("type")
        if kind == "replication_snapshot":
            self._pending.extend(message["entities"])
            if not message.get("more"):
                entities, self._pending = self._pending, []
                self.directory.replace(entities)
                if self.store is not None:
                    self.store.commit_replace(entities).addErrback(self._not_stored)
                self.synchronised = True
                self.log.info("standby: snapshot of {count} entities applied",
                              count=len(entities))
        elif kind == "replication_changes":
            changes = message["changes"]
            for entity_kind, key, value in changes:
                self.directory.apply(entity_kind, key, value)
            if self.store is not None:
                self.store.commit(changes).addErrback(self._not_stored)
            for observer in self.observers:
                observer(changes)
        elif kind == "error":
            raise PilotError(f"primary refused replication: {message.get('error')}")
        elif kind != "heartbeat":
            raise DecodeError(f"unexpected replication message {kind!r}")

    def _not_stored(self, failure):
        # The directory has the change; the next snapshot (after a restart) repairs the file.
        self.log.failure("standby: could not store the primary's changes", failure)

    def lost(self):
        """A broken stream leaves a partial snapshot that must not be applied."""
        self._pending = []


class _FollowerProtocol(Protocol, TimeoutMixin):
    log = Logger()

    def __init__(self, state, token, clock):
        self._state = state
        self._token = token
        self._decoder = FrameDecoder(MAX_REPLICATION_MESSAGE)
        self.callLater = clock.callLater

    def connectionMade(self):
        self.setTimeout(READ_TIMEOUT)
        self.transport.write(encode_message({"type": SUBSCRIBE, "token": self._token}))

    def dataReceived(self, data):
        self.resetTimeout()
        try:
            for body in self._decoder.feed(data):
                self._state.receive(decode_body(body))
        except (PilotError, KeyError, TypeError, ValueError) as error:
            self.log.error("standby: stopping this replication stream: {error}", error=error)
            self.transport.abortConnection()

    def timeoutConnection(self):
        self.log.warn("standby: nothing from the primary for {seconds}s, reconnecting",
                      seconds=READ_TIMEOUT)
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.setTimeout(None)
        self._state.lost()


def follow_primary(reactor, endpoint, state, token):
    """A service that keeps a replication stream from the primary at ``endpoint`` open."""
    factory = Factory.forProtocol(lambda: _FollowerProtocol(state, token, reactor))
    return ClientService(endpoint, factory, retryPolicy=lambda attempt: RECONNECT_DELAY,
                         clock=reactor)


def parse_primary(text):
    """``host:port`` / ``[v6]:port`` of ``--standby`` as ``(host, port)``."""
    try:
        return split_host_port(text, what="--standby (the primary)")
    except DecodeError as error:
        raise usage.UsageError(str(error)) from None


def standby_token(options):
    """The token a standby presents: ``--replication-token``, else the token file's."""
    if options["replication-token"]:
        return options["replication-token"]
    path = options["replication-token-file"]
    if not path:
        raise usage.UsageError("--standby needs --replication-token or --replication-token-file "
                               "(the primary's token)")
    try:
        with open(path) as handle:
            token = handle.read().strip()
    except OSError as error:
        raise usage.UsageError(
            f"cannot read the replication token file {path}: {error.strerror}; copy the "
            f"primary's <store>.replication-token there, or pass --replication-token") from None
    if not token:
        raise usage.UsageError(f"replication token file {path} is empty")
    return token


def replication_service(reactor, options, server):
    """The replication half of a registry: following a primary, or serving standbys.

    With ``--standby`` the registry becomes read-only and follows the primary;
    otherwise it accepts standbys presenting its token (given, or kept in the
    token file, generated on first start).  Without either a token or a store
    there is nowhere to keep one, so replication stays off.
    """
    log = Logger(namespace=__name__)
    if options["standby"]:
        host, port = options["standby"]
        server.registry.read_only = True
        server.metrics.standby.set(1)
        log.info("standby: following the primary at {host}:{port}", host=host, port=port)
        state = StandbyState(server.registry.directory, server.store, server.commit_observers)
        return follow_primary(reactor, HostnameEndpoint(reactor, host, port), state,
                              options["replication-token"])
    token = options["replication-token"] or ""
    path = options["replication-token-file"]
    if not token and path:
        token = load_or_create_token(path)
        log.info("replication: standbys authenticate with the token in {path}", path=path)
    source = ReplicationSource(token, reactor)
    server.replication = source
    server.metrics.replication_subscribers.set_function(lambda: len(source.subscribers))
    heartbeat = TimerService(HEARTBEAT_INTERVAL, source.heartbeat)
    heartbeat.clock = reactor
    return heartbeat
