"""A user-space UDP hop that drops a share of the datagrams crossing it.

Put it in front of a daemon by having that daemon register the relay's
address (``--endpoint``): peers send to the relay, the relay forwards to the
daemon from the same socket, so the daemon answers the relay, which forwards
back to whoever spoke last.  Loss is seeded, so a failure can be replayed.
"""

import random

from twisted.internet.protocol import DatagramProtocol


class LossyRelay(DatagramProtocol):
    def __init__(self, target, loss, seed=1):
        self.target = target
        self.loss = loss
        self.random = random.Random(seed)
        self.client = None
        self.forwarded = 0
        self.dropped = 0

    def datagramReceived(self, data, address):
        if address == self.target:
            destination = self.client
        else:
            self.client = address
            destination = self.target
        if destination is None:
            return
        if self.random.random() < self.loss:
            self.dropped += 1
            return
        self.forwarded += 1
        self.transport.write(data, destination)
