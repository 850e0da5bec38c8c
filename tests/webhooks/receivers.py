"""Real receivers for webhook and audit-export tests, on 127.0.0.1 port 0.

:class:`HttpReceiver` is a twisted.web server that records every request and
answers with scripted status codes; :class:`SyslogReceiver` listens for RFC
5424 messages over UDP or TCP (RFC 6587 octet counting).  Each is stopped in
the test's cleanup.
"""

import json

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.web import resource, server


class Recorded:
    def __init__(self, request, body):
        self.path = request.path.decode()
        self.headers = {key.decode().lower(): value[0].decode()
                        for key, value in request.requestHeaders.getAllRawHeaders()}
        self.body = body

    def json(self):
        return json.loads(self.body)


class _Endpoint(resource.Resource):
    isLeaf = True

    def __init__(self, receiver):
        super().__init__()
        self.receiver = receiver

    def render_POST(self, request):
        body = request.content.read()
        status = self.receiver.statuses.pop(0) if self.receiver.statuses else 200
        self.receiver.attempts.append(Recorded(request, body))
        if status < 300:
            self.receiver.requests.append(Recorded(request, body))
        request.setResponseCode(status)
        self.receiver.arrived()
        return self.receiver.answers.pop(0) if self.receiver.answers else b"{}"


class _Waiting:
    """Deferreds waiting for a count of something."""

    def __init__(self):
        self.waiters = []

    def wait(self, count_now, count):
        if count_now() >= count:
            return defer.succeed(None)
        waiting = defer.Deferred()
        self.waiters.append((count_now, count, waiting))
        return waiting.addTimeout(20, reactor)

    def arrived(self):
        for entry in list(self.waiters):
            count_now, count, waiting = entry
            if count_now() >= count:
                self.waiters.remove(entry)
                waiting.callback(None)


class HttpReceiver(_Waiting):
    """Records POSTs; ``statuses`` are answered in turn (then 200), with the bodies ``answers`` (then ``{}``)."""

    def __init__(self, test, statuses=(), answers=()):
        super().__init__()
        self.statuses = list(statuses)
        self.answers = list(answers)
        self.requests = []  # accepted (2xx)
        self.attempts = []  # every POST
        self.port = reactor.listenTCP(0, server.Site(_Endpoint(self)), interface="127.0.0.1")
        test.addCleanup(self.port.stopListening)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port.getHost().port}/hook"

    def wait_for(self, count):
        return self.wait(lambda: len(self.requests), count)

    def wait_for_attempts(self, count):
        return self.wait(lambda: len(self.attempts), count)


class _SyslogUdp(DatagramProtocol):
    def __init__(self, receiver):
        self.receiver = receiver

    def datagramReceived(self, data, address):
        self.receiver.add(data)


class _SyslogTcp(Protocol):
    """RFC 6587 octet counting: ``<length> SP <message>``, repeated."""

    def __init__(self, receiver):
        self.receiver = receiver
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        while b" " in self.buffer:
            length, _, rest = self.buffer.partition(b" ")
            if len(rest) < int(length):
                return
            self.receiver.add(rest[:int(length)])
            self.buffer = rest[int(length):]


class SyslogReceiver(_Waiting):
    def __init__(self, test, transport):
        super().__init__()
        self.messages = []
        if transport == "udp":
            self.port = reactor.listenUDP(0, _SyslogUdp(self), interface="127.0.0.1")
        else:
            self.port = reactor.listenTCP(0, Factory.forProtocol(lambda: _SyslogTcp(self)), interface="127.0.0.1")
        test.addCleanup(self.port.stopListening)

    @property
    def address(self):
        return f"127.0.0.1:{self.port.getHost().port}"

    def add(self, message):
        self.messages.append(message)
        self.arrived()

    def wait_for(self, count):
        return self.wait(lambda: len(self.messages), count)
