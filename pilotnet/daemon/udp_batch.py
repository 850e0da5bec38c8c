"""Many datagrams per system call: Linux UDP segmentation (GSO) and receive coalescing (GRO).

A stream sending 1 KiB segments across a network spends more time in one
``sendto`` per datagram than in sealing it.  With the ``UDP_SEGMENT`` option
one ``sendmsg`` carries a run of equal-sized datagrams (the last may be
shorter), and the kernel (or the network card) cuts them apart: the receiver
sees ordinary datagrams, so peers need nothing.  The standard library has no
``sendmmsg``; this is the batching the kernel offers instead.  Where the kernel
refuses (no GSO, or a device that cannot take it), the sender falls back to
one ``sendto`` per datagram for good.

On the receiving side ``UDP_GRO`` lets the kernel hand over such a run (and
runs it coalesced itself) as one buffer with the segment size beside it;
:class:`BurstPort` cuts it apart again, and hands the datagrams of a run to the
protocol together where it can take them (``datagrams_received``).
"""

import errno
import socket
import struct

from twisted.internet import udp
from twisted.logger import Logger
from zope.interface import Interface

SOL_UDP = 17
# Linux's values; the socket module does not export them.
UDP_SEGMENT = 103
UDP_GRO = 104
#: The kernel's limit on datagrams per segmented send.
MAX_SEGMENTS = 64
#: Bytes per segmented send: within the largest UDP payload of IPv4 (65 507).
MAX_BYTES = 65_000
#: Errors that mean "this socket or route cannot segment", not "this send failed".
_UNSUPPORTED = {errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP}
#: Reading errors that only mean "nothing more now" (an ICMP error on an unconnected socket included).
_NOTHING_TO_READ = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED}
_GRO_SPACE = socket.CMSG_SPACE(4)
#: A plain int: ``flags & socket.MSG_TRUNC`` would go through ``IntFlag``'s Python-level operator per datagram.
_TRUNCATED = int(socket.MSG_TRUNC)

log = Logger()


def enlarge_buffers(sock, size):
    """Ask for ``size`` bytes of receive and send buffer on ``sock``: room for bursts that arrive faster than one read.

    The kernel caps the plain options at its system limit; the forced
    receive buffer goes beyond it where the process may (``CAP_NET_ADMIN``).
    A refusal leaves the kernel's sizes, which still work, only with drops sooner.
    """
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF, getattr(socket, "SO_RCVBUFFORCE", None)):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            pass


class BatchSender:
    """Sends lists of datagrams to one destination with as few system calls as the kernel allows."""

    def __init__(self, sock):
        self._sendto = sock.sendto
        self._sendmsg = sock.sendmsg
        self.segmenting = True

    def send(self, frames, destination):
        """Send every frame, in order; OSError as ``sendto`` raises it (the rest are not sent)."""
        start = 0
        count = len(frames)
        while start < count:
            end = self._run_end(frames, start) if self.segmenting else start + 1
            if end - start == 1:
                self._sendto(frames[start], destination)
            elif not self._send_segmented(frames, start, end, destination):
                continue  # segmentation is off now: the same run again, one by one
            start = end

    @staticmethod
    def _run_end(frames, start):
        """End of the run from ``start`` that one segmented send can carry."""
        size = len(frames[start])
        total = size
        end = start + 1
        limit = min(len(frames), start + MAX_SEGMENTS)
        while end < limit:
            length = len(frames[end])
            if length > size or total + length > MAX_BYTES:
                break
            total += length
            end += 1
            if length < size:
                break  # only the last datagram of a run may be shorter
        return end

    def _send_segmented(self, frames, start, end, destination):
        size = len(frames[start])
        try:
            self._sendmsg([b"".join(frames[start:end])], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))],
                          0, destination)
        except OSError as error:
            if error.errno not in _UNSUPPORTED:
                raise
            self.segmenting = False
            return False
        return True


class IBurstListener(Interface):
    """Told when a :class:`BurstPort` starts and ends reading a burst of datagrams."""

    def burst_started():
        pass

    def burst_ended():
        """Every datagram that was waiting has been handled: flush what was gathered from them."""


class BurstPort(udp.Port):
    """A UDP port that reads coalesced runs of datagrams and brackets each burst of reads.

    Twisted reads every waiting datagram in one ``doRead``.  Work gathered
    from them (stream data for local clients, acknowledgments) is flushed once
    the burst ends, in the same reactor iteration, through the protocol's
    ``burst_listener`` (an :class:`IBurstListener`, or None).  Where the
    kernel offers ``UDP_GRO``, each read may return a run of datagrams, which
    is split at the segment size the kernel reports; a protocol with a
    ``datagrams_received(datagrams, address)`` method gets such a run's
    datagrams (all from one address) in one call, others one by one.
    """

    coalescing = False

    def startListening(self):
        super().startListening()
        try:
            self.socket.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            return
        self.coalescing = True

    def doRead(self):
        listener = self.protocol.burst_listener
        if listener is not None:
            listener.burst_started()
        try:
            if self.coalescing:
                self._read_runs()
            else:
                super().doRead()
        finally:
            if listener is not None:
                listener.burst_ended()

    def _read_runs(self):
        """``udp.Port.doRead`` with ``recvmsg``, so that a coalesced run is cut back into datagrams."""
        received = self.protocol.datagramReceived
        received_run = getattr(self.protocol, "datagrams_received", None)
        read = 0
        while read < self.maxThroughput:
            try:
                data, ancillary, flags, address = self.socket.recvmsg(self.maxPacketSize, _GRO_SPACE)
            except OSError as error:
                if error.errno in _NOTHING_TO_READ:
                    return
                raise
            read += len(data)
            if flags & _TRUNCATED:
                continue  # larger than any datagram we send: not ours
            size = _segment_size(ancillary) or len(data)
            address = address[:2]
            if size < len(data) and received_run is not None:
                try:
                    received_run([data[start:start + size] for start in range(0, len(data), size)], address)
                except Exception:
                    log.failure("datagram handler failed")
                continue
            for start in range(0, len(data), size):
                try:
                    received(data[start:start + size] if size < len(data) else data, address)
                except Exception:
                    log.failure("datagram handler failed")


def _segment_size(ancillary):
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
            return struct.unpack_from("=i", value)[0]
    return None
