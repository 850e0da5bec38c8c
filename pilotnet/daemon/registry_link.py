"""The daemon's connection to the registry: registration, heartbeats, lookups.

One TCP connection, kept up by a :class:`~twisted.application.internet.ClientService`
that reconnects with backoff whenever it drops, so a registry restart costs the
daemon a few failed heartbeats and nothing else.  Requests made while the
registry is unreachable fail with ``connection_failed`` after one attempt
instead of hanging.

Also the :class:`~pilotnet.daemon.tunnel.IPeerKeys` the tunnel verifies PILA
frames against: a node's Ed25519 key comes from the registry's ``lookup``.

The registry aborts a connection that sends more than its hard limit of
requests per second, and unauthenticated datagrams can make the daemon look
keys up, so the link never asks that much: every request spends a token of
:data:`REQUEST_RATE` per second (below the registry's soft limit of 100), and
lookups that inbound frames cause spend one more of a smaller budget
(:data:`INBOUND_LOOKUP_RATE`), cached (found and not found, each with a
lifetime) and shared by concurrent askers, so a flood of forged frames
cannot take the link, and with it our heartbeats, down.
"""

import base64
import binascii
from collections import OrderedDict

from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pilotnet.daemon.in_flight import InFlight
from pilotnet.daemon.tunnel import IPeerKeys
from pilotnet.errors import CONNECTION_FAILED, NOT_FOUND, PilotError
from pilotnet.ratelimit import TokenBucket
from pilotnet.registry.challenges import sign_fresh_request, sign_request
from pilotnet.registry.client import RegistryClientProtocol, RegistryError
from pilotnet.wire.hostport import split_host_port

log = Logger()

RESOLVE_CACHE_SECONDS = 30.0
#: Requests per second (and at once) the daemon sends the registry at most.
REQUEST_RATE = 50.0
#: Key lookups per second (and at once) that inbound frames may cause.
INBOUND_LOOKUP_RATE = 10.0
#: How long a node's key, or the registry's "no such node", is believed.
KEY_TTL = 600.0
MISSING_KEY_TTL = 15.0
#: A key fetched this recently is not fetched again when a frame disagrees with it.
KEY_REFETCH_AFTER = 10.0
MAX_CACHED_KEYS = 4096


def registry_endpoint(address):
    """``host:port`` (or a full endpoint string) to a client endpoint description."""
    if address.startswith(("tcp:", "unix:", "tls:", "ssl:")):
        return address
    host, port = split_host_port(address, what="registry address")
    escaped_host = host.replace(":", "\\:")  # endpoint strings escape colons
    return f"tcp:host={escaped_host}:port={port}:timeout=5"


def registry_client_endpoint(reactor, address, fingerprint=""):
    """The endpoint to reach the registry: TLS pinned to ``fingerprint`` when one is given."""
    endpoint = clientFromString(reactor, registry_endpoint(address))
    if not fingerprint:
        return endpoint
    from pilotnet.registry.tls import PinnedClientCreator
    return wrapClientTLS(PinnedClientCreator(fingerprint), endpoint)


class RegistryLink(service.Service):
    """Requests to the registry over one self-healing connection.

    Signed requests are signed in the fresh form (timestamp, nonce, every
    value covered; :mod:`pilotnet.registry.challenges`) except heartbeats:
    a heartbeat carries no value, so its legacy signature can be replayed to
    no effect, and the registry verifies a repeated one for free.
    """

    def __init__(self, reactor, address, identity, fingerprint=""):
        self.reactor = reactor
        # Several registries on one database: "a:9000,b:9000" (docs/scale-out.md).
        self.addresses = [part.strip() for part in address.split(",") if part.strip()] or [address]
        self.address = self.addresses[0]
        self.identity = identity
        self.node_id = None
        self._fingerprint = fingerprint
        self._budget = TokenBucket(REQUEST_RATE, REQUEST_RATE)
        # Registry clock minus ours, learnt from replies that carry ``time``: fresh
        # signatures are stamped on the registry's clock, so a skewed machine still signs
        # within the registry's window.
        self.clock_offset = 0.0
        self._client = self._client_for(self.address)

    def _client_for(self, address):
        factory = Factory.forProtocol(RegistryClientProtocol)
        return ClientService(
            registry_client_endpoint(self.reactor, address, self._fingerprint), factory,
            retryPolicy=backoffPolicy(initialDelay=0.25, maxDelay=5.0), clock=self.reactor,
        )

    def startService(self):
        super().startService()
        self._client.startService()

    def stopService(self):
        super().stopService()
        return self._client.stopService()

    def _fail_over(self):
        """The registry in use is unreachable: use the next one given (if there are several).

        The failed request still fails (the caller retries, as with one
        registry); its retry goes to the next registry, which shares the
        database, so the node's state is there.
        """
        if len(self.addresses) < 2:
            return
        failed = self.address
        self.address = self.addresses[(self.addresses.index(failed) + 1) % len(self.addresses)]
        log.warn("registry {failed} unreachable; using {address}", failed=failed,
                 address=self.address)
        old, self._client = self._client, self._client_for(self.address)
        if self.running:
            self._client.startService()
        if old.running:
            # Not from inside its own failure callback: its state machine is not reentrant.
            self.reactor.callLater(0, old.stopService)

    @defer.inlineCallbacks
    def request(self, message, *, sign=False):
        """Send ``message`` (signed by our identity if ``sign``) and return the reply dict."""
        if self._budget.take(1, self.reactor.seconds()) == 0:
            raise PilotError(
                f"not sending more than {REQUEST_RATE:g} requests per second to the registry",
                code=CONNECTION_FAILED, hint="the registry would close a connection that asks faster; retry shortly")
        if sign and message["type"] == "heartbeat" and not message.get("listen_addr"):
            message = sign_request(self.identity, message)
        elif sign:
            message = sign_fresh_request(self.identity, message,
                                         self.reactor.seconds() + self.clock_offset)
        address = self.address
        try:
            protocol = yield self._client.whenConnected(failAfterFailures=1)
        except Exception as error:
            self._fail_over()
            raise PilotError(
                f"cannot reach registry at {address}: {error}", code=CONNECTION_FAILED,
                hint=f"check that the registry is running at {address}",
            ) from None
        try:
            reply = yield protocol.request(message)
        except RegistryError as error:
            if error.code == CONNECTION_FAILED and address == self.address:
                self._fail_over()
            raise
        if isinstance(reply.get("time"), int) and not isinstance(reply["time"], bool):
            self.clock_offset = reply["time"] - self.reactor.seconds()
        return reply

    def signed(self, message):
        """``message`` signed by this node's identity (the registry checks it)."""
        return self.request(message, sign=True)


@implementer(IPeerKeys)
class RegistryKeys:
    """Peers' Ed25519 keys as the registry holds them: cached, shared, budgeted.

    The cache holds at most :data:`MAX_CACHED_KEYS` nodes (least recently
    used forgotten first); an answer, found or not found, is kept for
    :data:`KEY_TTL` / :data:`MISSING_KEY_TTL`.  ``budget`` is the token bucket
    of lookups inbound frames may cause (see the module's docstring).
    """

    def __init__(self, registry, clock, budget=None):
        self.registry = registry
        self.clock = clock
        self.budget = budget if budget is not None else TokenBucket(INBOUND_LOOKUP_RATE, INBOUND_LOOKUP_RATE)
        self._cache = OrderedDict()  # node -> (key, or the PilotError the registry answered; fetched at)
        self._waiting = {}  # node -> Deferreds of askers while one lookup is under way

    def public_key(self, node):
        now = self.clock.seconds()
        cached = self._cache.get(node)
        if cached is not None:
            answer, fetched_at = cached
            missing = isinstance(answer, PilotError)
            if now - fetched_at < (MISSING_KEY_TTL if missing else KEY_TTL):
                self._cache.move_to_end(node)
                return defer.fail(answer) if missing else defer.succeed(answer)
        asked = defer.Deferred()
        waiting = self._waiting.get(node)
        if waiting is not None:
            waiting.append(asked)
            return asked
        if self.budget.take(1, now) == 0:
            return defer.fail(PilotError(
                f"key lookup for node {node} refused: over {self.budget.rate:g} inbound lookups per second",
                code=CONNECTION_FAILED))
        self._waiting[node] = [asked]
        looking = self._lookup(node)
        looking.addBoth(self._answered, node)
        return asked

    @defer.inlineCallbacks
    def _lookup(self, node):
        try:
            reply = yield self.registry.request({"type": "lookup", "node_id": node})
        except RegistryError as error:
            raise PilotError(f"no registry key for node {node}: {error.message}", code=NOT_FOUND) from None
        try:
            key = base64.b64decode(reply.get("public_key", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            key = b""
        if len(key) != 32:
            raise PilotError(f"the registry holds no valid key for node {node}", code=NOT_FOUND)
        return key

    def _answered(self, result, node):
        waiting = self._waiting.pop(node, [])
        answer = result.value if isinstance(result, Failure) else result
        if isinstance(answer, bytes) or (isinstance(answer, PilotError) and answer.code == NOT_FOUND):
            self._cache[node] = (answer, self.clock.seconds())
            self._cache.move_to_end(node)
            while len(self._cache) > MAX_CACHED_KEYS:
                self._cache.popitem(last=False)
        for asked in waiting:
            if isinstance(result, Failure):
                asked.errback(result)
            else:
                asked.callback(result)

    def forget(self, node):
        """Ask the registry again next time, unless the key is fresh enough to trust.

        A frame disagreeing with a key fetched within :data:`KEY_REFETCH_AFTER`
        is more likely forged than a rotation that quick, and must not buy a lookup.
        """
        cached = self._cache.get(node)
        if cached is not None and self.clock.seconds() - cached[1] >= KEY_REFETCH_AFTER:
            del self._cache[node]


def choose_endpoint(reply, own_public_host):
    """Where to reach a resolved node: its LAN address when it is behind our own NAT.

    Two nodes the beacon sees at the same public IP sit behind the same NAT,
    where the public endpoint would need a hairpin most routers refuse; the
    node's registered LAN address reaches it directly.
    """
    real = split_host_port(reply.get("real_addr") or "", what="registered endpoint")
    lan_addrs = reply.get("lan_addrs") or []
    if own_public_host is not None and real[0] == own_public_host and lan_addrs:
        try:
            return split_host_port(str(lan_addrs[0]), what="LAN address")
        except PilotError:
            pass
    return real


class Resolver:
    """Real endpoints of peers (registry ``resolve``), cached briefly.

    ``public_host`` tells the public IP the beacon sees us at (None while unknown).
    """

    def __init__(self, registry, clock, public_host=lambda: None):
        self.registry = registry
        self.clock = clock
        self.public_host = public_host
        self._cache = {}
        self._resolving = InFlight()

    def endpoint(self, node):
        """A Deferred of ``node``'s endpoint; concurrent askers share one registry request."""
        cached = self._cache.get(node)
        if cached is not None and self.clock.seconds() - cached[1] < RESOLVE_CACHE_SECONDS:
            return defer.succeed(cached[0])
        return self._resolving.call(node, lambda: self._resolve(node))

    @defer.inlineCallbacks
    def _resolve(self, node):
        now = self.clock.seconds()
        reply = yield self.registry.signed(
            {"type": "resolve", "node_id": node, "requester_id": self.registry.node_id})
        endpoint = choose_endpoint(reply, self.public_host())
        self._cache[node] = (endpoint, now)
        return endpoint

    def forget(self, node):
        self._cache.pop(node, None)
