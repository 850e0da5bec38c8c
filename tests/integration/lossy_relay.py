"""A user-space UDP hop that drops a share of the datagrams crossing it.

Put it in front of a daemon by having that daemon register the relay's
address (``--endpoint``): peers send to the relay, the relay forwards to the
daemon from the same socket, so the daemon answers the relay, which forwards
back to whoever spoke last.  Loss is seeded, so a failure can be replayed.

The relay loses what it is told to and nothing more, and costs little next
to the daemons on either side, so that a benchmark through it measures loss
recovery rather than the hop: large socket buffers (a daemon sends bursts of
up to 64 datagrams in one system call; with the kernel's default buffer a
burst overflows before the relay reads it, which is loss beyond the share
asked for), coalesced runs in (:class:`~pilotnet.daemon.udp_batch.BurstPort`)
and segmented sends out (:class:`~pilotnet.daemon.udp_batch.BatchSender`):
the datagrams of one read are gathered per destination and leave when the
read ends.
"""

import random

from twisted.internet.protocol import DatagramProtocol

from pilotnet.daemon.tunnel import MAX_DATAGRAM, SOCKET_BUFFER
from pilotnet.daemon.udp_batch import BatchSender, BurstPort, enlarge_buffers


class LossyRelay(DatagramProtocol):
    """Forwards between ``target`` and its last other speaker, dropping each datagram with probability ``loss``.

    ``loss`` may change while it runs.  Counters: ``forwarded``, ``dropped``
    (on purpose), ``send_failures`` (sends the kernel refused: loss beyond
    ``loss``, zero unless the machine is starved).
    """

    def __init__(self, target: tuple[str, int] | None, loss: float, seed: int = 1) -> None:
        self.target = target
        self.loss = loss
        self.random = random.Random(seed)
        self.client: tuple[str, int] | None = None
        self.forwarded = 0
        self.dropped = 0
        self.send_failures = 0
        #: BurstPort brackets each read with our burst_started and burst_ended.
        self.burst_listener = self
        self._gathered: dict[tuple[str, int], list[bytes]] = {}
        self._sender: BatchSender | None = None

    def startProtocol(self) -> None:
        handle = self.transport.getHandle()
        enlarge_buffers(handle, SOCKET_BUFFER)  # the daemons' own size
        self._sender = BatchSender(handle)

    def datagramReceived(self, data: bytes, address: tuple[str, int]) -> None:
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
        frames = self._gathered.get(destination)
        if frames is None:
            self._gathered[destination] = [data]
        else:
            frames.append(data)

    def burst_started(self) -> None:
        pass

    def burst_ended(self) -> None:
        gathered, self._gathered = self._gathered, {}
        for destination, frames in gathered.items():
            try:
                self._sender.send(frames, destination)
            except OSError:
                self.send_failures += 1


def listen_relay(reactor, relay: LossyRelay, interface: str = "127.0.0.1") -> BurstPort:
    """Start ``relay`` on a free UDP port of ``interface``; the port's ``getHost()`` says which."""
    port = BurstPort(0, relay, interface=interface, maxPacketSize=MAX_DATAGRAM, reactor=reactor)
    port.startListening()
    return port
