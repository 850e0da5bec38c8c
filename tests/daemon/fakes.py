"""In-memory stand-ins for the daemon's network seams.

:class:`DatagramNetwork` joins datagram protocols the way UDP on one host
would, but synchronously and under the test's control: datagrams are queued
and delivered by :meth:`DatagramNetwork.deliver`, optionally dropped.
"""

import sys

from twisted.internet import defer
from zope.interface import implementer

from pilotnet.daemon.tunnel import IPeerKeys
from pilotnet.errors import NOT_FOUND, PilotError


class FakeDatagramTransport:
    def __init__(self, network, address):
        self.network = network
        self.address = address
        self.socket = FakeSocket(self)

    def write(self, data, address):
        self.network.sent.append((self.address, address, bytes(data)))

    def getHost(self):
        class Host:
            port = self.address[1]
        return Host()

    def getHandle(self):
        return self.socket


class FakeSocket:
    """The socket under a fake transport: ``sendto``, and ``sendmsg`` cutting segmented sends as Linux does."""

    def __init__(self, transport):
        self.transport = transport
        self.segmented_sends = 0

    def setsockopt(self, *args):
        pass

    def sendto(self, data, address):
        self.transport.write(data, address)

    def sendmsg(self, buffers, ancillary, flags, address):
        [(_, _, size_field)] = ancillary
        size = int.from_bytes(size_field, sys.byteorder)
        data = b"".join(buffers)
        self.segmented_sends += 1
        for start in range(0, len(data), size):
            self.transport.write(data[start:start + size], address)


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
