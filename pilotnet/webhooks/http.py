"""Delivering a payload by HTTP POST with treq, to checked addresses only.

:class:`HttpSender` is the ``send`` of a :class:`~pilotnet.webhooks.queue.DeliveryQueue`.
Its treq client runs on an :class:`~twisted.web.client.Agent` whose endpoint
factory resolves the URL's host itself, checks every address the name
resolves to (:func:`~pilotnet.webhooks.targets.check_address`), and connects
to the checked address; TLS still verifies the certificate against the host
*name*.  So what was checked is what is connected to (no second lookup a DNS
rebinding attacker could answer differently).  Redirects are not followed.

2xx is success; 3xx and 4xx are permanent failures (not retried); 5xx,
timeouts and network errors are retried by the queue.  :meth:`HttpSender.exchange`
is one POST whose (bounded) answer the caller reads: the identity webhook's verdict.
"""

from typing import Callable

import treq
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolutionReceiver, IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.web.client import Agent, RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from pilotnet import __version__
from pilotnet.errors import CONNECTION_FAILED, TIMEOUT, PilotError
from pilotnet.webhooks.queue import PermanentFailure
from pilotnet.webhooks.targets import TargetRefused, Target, check_address, literal_address

#: Seconds a delivery may take (not TIMEOUT: that is the error code it fails with).
SEND_TIMEOUT = 5.0
USER_AGENT = f"pilotnet-webhook/{__version__}"
#: At most this much of a receiver's answer is read (and it is only logged).
MAX_RESPONSE = 4096


def resolve(reactor, host: str, port: int) -> defer.Deferred:
    """A Deferred of every address ``host`` resolves to (a literal address resolves to itself)."""
    if literal_address(host) is not None:
        return defer.succeed([host])
    found: list[str] = []
    done: defer.Deferred[list[str]] = defer.Deferred()

    @implementer(IResolutionReceiver)
    class Receiver:
        def resolutionBegan(self, resolution):
            pass

        def addressResolved(self, address):
            found.append(address.host)

        def resolutionComplete(self):
            done.callback(found)

    reactor.nameResolver.resolveHostName(Receiver(), host, port)
    return done


async def checked_address(reactor, host: str, port: int, allow_private: bool, resolver=resolve) -> str:
    """The address to connect to for ``host``: every address it resolves to must pass the check."""
    addresses = await resolver(reactor, host, port)
    if not addresses:
        raise PilotError(f"cannot resolve {host}", code=CONNECTION_FAILED)
    for address in addresses:
        try:
            check_address(address, allow_private=allow_private)
        except TargetRefused as error:
            raise PermanentFailure(f"{host} resolves to a refused address: {error.message}") from None
    return addresses[0]


def tcp_endpoint(reactor, address: str, port: int, timeout: float):
    endpoint_type = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
    return endpoint_type(reactor, address, port, timeout=timeout)


@implementer(IStreamClientEndpoint)
class _CheckedEndpoint:
    def __init__(self, reactor, scheme: str, host: str, port: int, allow_private: bool, resolver, timeout: float):
        self._reactor = reactor
        self._scheme = scheme
        self._host = host
        self._port = port
        self._allow_private = allow_private
        self._resolver = resolver
        self._timeout = timeout

    def connect(self, protocol_factory):
        return defer.ensureDeferred(self._connect(protocol_factory))

    async def _connect(self, protocol_factory):
        address = await checked_address(self._reactor, self._host, self._port, self._allow_private, self._resolver)
        endpoint = tcp_endpoint(self._reactor, address, self._port, self._timeout)
        if self._scheme == "https":
            endpoint = wrapClientTLS(optionsForClientTLS(self._host), endpoint)
        return await endpoint.connect(protocol_factory)


@implementer(IAgentEndpointFactory)
class _CheckedEndpoints:
    def __init__(self, reactor, allow_private: bool, resolver, timeout: float):
        self._reactor = reactor
        self._allow_private = allow_private
        self._resolver = resolver
        self._timeout = timeout

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii").strip("[]")
        return _CheckedEndpoint(self._reactor, uri.scheme.decode("ascii"), host, uri.port,
                                self._allow_private, self._resolver, self._timeout)


class HttpSender:
    """POSTs what ``encode(payload)`` gives (body, headers) to ``target``."""

    def __init__(self, reactor, target: Target, encode: Callable[[dict], tuple[bytes, dict]], *,
                 allow_private: bool = False, timeout: float = SEND_TIMEOUT, resolver=resolve):
        self._reactor = reactor
        self._target = target
        self._encode = encode
        self._timeout = timeout
        agent = Agent.usingEndpointFactory(reactor, _CheckedEndpoints(reactor, allow_private, resolver, timeout))
        self._client = HTTPClient(agent)

    def __call__(self, payload: dict) -> defer.Deferred:
        return defer.ensureDeferred(self._post(payload))

    async def exchange(self, payload: dict) -> tuple[int, bytes | None]:
        """POST ``payload``: the status and the answer (``None`` if longer than ``MAX_RESPONSE``)."""
        body, headers = self._encode(payload)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
        try:
            response = await self._client.post(self._target.url, data=body, headers=headers, allow_redirects=False,
                                               reactor=self._reactor, timeout=self._timeout, unbuffered=True)
        except _WRAPPED as error:
            raise _readable(error, self._timeout) from None
        answer = _Bounded(MAX_RESPONSE)
        # Reading the (bounded) answer also lets the connection finish cleanly.
        await treq.collect(response, answer).addErrback(lambda _: None)
        return response.code, b"".join(answer.chunks) if answer.left >= 0 else None

    async def _post(self, payload: dict):
        status, _ = await self.exchange(payload)
        if 200 <= status < 300:
            return
        if status >= 500:
            raise PilotError(f"receiver answered HTTP {status}", code=CONNECTION_FAILED)
        raise PermanentFailure(f"receiver answered HTTP {status} (not retried)")


#: How twisted.web reports the failures behind one request (a list of them in ``reasons``).
_WRAPPED = (ResponseNeverReceived, ResponseFailed, RequestTransmissionFailed)


def _readable(error, timeout: float) -> PilotError:
    """One message for the failures twisted.web wraps (a cancelled attempt is treq's timeout)."""
    if any(reason.check(defer.CancelledError) for reason in error.reasons):
        return PilotError(f"no answer within {timeout:g}s", code=TIMEOUT)
    causes = "; ".join(reason.getErrorMessage() or reason.type.__name__ for reason in error.reasons)
    return PilotError(f"{type(error).__name__}: {causes}", code=CONNECTION_FAILED)


class _Bounded:
    """A ``collect`` callback that keeps no more than ``limit`` bytes of an answer."""

    def __init__(self, limit: int):
        self.left = limit
        self.chunks: list[bytes] = []

    def __call__(self, data: bytes):
        self.left -= len(data)
        if self.left < 0:
            raise PilotError("receiver answer too long")
        self.chunks.append(data)
