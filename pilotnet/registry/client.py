"""A registry client for Twisted programs: requests in, replies (or errors) out.

The daemon and the tests use it::

    client = yield connect_registry(reactor, "tcp:127.0.0.1:9000")
    reply = yield client.request({"type": "lookup", "node_id": 5})
    reply = yield client.request(sign_request(identity, {"type": "heartbeat", "node_id": 5}))

Requests may be pipelined; replies come back in order.  An error reply fails
the Deferred with :class:`RegistryError` carrying the registry's message and
code; a lost connection fails every pending request with ``connection_failed``.
"""

from collections import deque

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.protocol import Protocol

from pilotnet.errors import PilotError, CONNECTION_FAILED, INTERNAL, DecodeError
from pilotnet.registry.framing import FrameDecoder, decode_body, encode_message


class RegistryError(PilotError):
    """The registry refused a request; ``message`` is its reason."""

    def __init__(self, message, *, code=INTERNAL, reply=None):
        super().__init__(message, code=code)
        self.reply = reply


class RegistryClientProtocol(Protocol):
    def __init__(self):
        self._decoder = FrameDecoder()
        self._pending = deque()
        self._closed = None

    def request(self, message):
        """Send one request; the Deferred fires with the reply dict."""
        if self._closed is not None:
            raise RegistryError(f"registry connection closed: {self._closed}",
                                code=CONNECTION_FAILED)
        waiting = Deferred()
        self._pending.append(waiting)
        self.transport.write(encode_message(message))
        return waiting

    def dataReceived(self, data):
        try:
            bodies = self._decoder.feed(data)
            replies = [decode_body(body) for body in bodies]
        except DecodeError as error:
            self._fail_all(RegistryError(f"bad reply from registry: {error}",
                                         code=CONNECTION_FAILED))
            self.transport.abortConnection()
            return
        for reply in replies:
            if not self._pending:
                break
            waiting = self._pending.popleft()
            reported = reply.get("error")
            if reply.get("type") == "error" or isinstance(reported, str):
                waiting.errback(RegistryError(str(reported), code=reply.get("code") or INTERNAL,
                                              reply=reply))
            else:
                waiting.callback(reply)

    def _fail_all(self, error):
        while self._pending:
            self._pending.popleft().errback(error)

    def connectionLost(self, reason):
        self._closed = reason.getErrorMessage()
        self._fail_all(RegistryError(f"registry connection lost: {self._closed}",
                                     code=CONNECTION_FAILED))

    def close(self):
        self.transport.loseConnection()


def connect_registry(reactor, description):
    """Connect to the registry at an endpoint string such as ``tcp:127.0.0.1:9000``."""
    return connectProtocol(clientFromString(reactor, description), RegistryClientProtocol())


class RegistryConnection:
    """One lazily opened, reopened-on-loss connection to a registry.

    For long-lived clients (a beacon announcing itself, a daemon's heartbeat):
    ``request`` connects when there is no live connection, so a registry
    restart costs one failed request, not a stuck client.
    """

    def __init__(self, reactor, description):
        self._reactor = reactor
        self._description = description
        self._client = None

    def request(self, message):
        client = self._client
        if client is not None and client.transport is not None and client.transport.connected:
            return client.request(message)
        connecting = connect_registry(self._reactor, self._description)

        def connected(client):
            self._client = client
            return client.request(message)

        def unreachable(failure):
            if failure.check(PilotError):
                return failure
            raise RegistryError(f"cannot reach the registry at {self._description}: "
                                f"{failure.getErrorMessage()}", code=CONNECTION_FAILED)

        return connecting.addCallbacks(connected, unreachable)

    def close(self):
        if self._client is not None and self._client.transport is not None:
            self._client.transport.loseConnection()
        self._client = None
