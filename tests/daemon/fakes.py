"""In-memory stand-ins for the daemon's network seams.

:class:`DatagramNetwork` joins datagram protocols the way UDP on one host
would, but synchronously and under the test's control: datagrams are queued
and delivered by :meth:`DatagramNetwork.deliver`, optionally dropped.
"""

from twisted.internet import defer
from zope.interface import implementer

from pilotnet.daemon.tunnel import IPeerKeys
from pilotnet.errors import NOT_FOUND, PilotError


class FakeDatagramTransport:
    def __init__(self, network, address):
        self.network = network
        self.address = address

    def write(self, data, address):
        self.network.sent.append((self.address, address, bytes(data)))

    def getHost(self):
        class Host:
            port = self.address[1]
        return Host()

    def getHandle(self):
        class Handle:
            def setsockopt(self, *args):
                pass
        return Handle()


class DatagramNetwork:
    def __init__(self):
        self.endpoints = {}
        self.sent = []
        self.drop = lambda source, destination, data: False

    def attach(self, protocol, address):
        protocol.makeConnection(FakeDatagramTransport(self, address))
        self.endpoints[address] = protocol
        return protocol

    def deliver(self, rounds=50):
        """Deliver queued datagrams (and what they provoke) until quiet; returns how many."""
        delivered = 0
        for _ in range(rounds):
            if not self.sent:
                break
            batch, self.sent = self.sent, []
            for source, destination, data in batch:
                receiver = self.endpoints.get(destination)
                if receiver is not None and not self.drop(source, destination, data):
                    receiver.datagramReceived(data, source)
                    delivered += 1
        return delivered


@implementer(IPeerKeys)
class StaticKeys:
    """The registry's view of node keys, as a dict."""

    def __init__(self, keys=None):
        self.keys = dict(keys or {})
        self.lookups = 0

    def public_key(self, node):
        self.lookups += 1
        key = self.keys.get(node)
        if key is None:
            return defer.fail(PilotError(f"node {node}: node not found", code=NOT_FOUND))
        return defer.succeed(key)

    def forget(self, node):
        pass
