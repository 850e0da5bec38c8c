"""Many datagrams to one destination in one system call: Linux UDP segmentation offload (GSO).

A stream sending 1 KiB segments across a network spends more time in one
``sendto`` per datagram than in sealing it.  With the ``UDP_SEGMENT`` option
one ``sendmsg`` carries a run of equal-sized datagrams (the last may be
shorter), and the kernel (or the network card) cuts them apart: the receiver
sees ordinary datagrams, so peers need nothing.  The standard library has no
``sendmmsg``; this is the batching the kernel offers instead.  Where the kernel
refuses (no GSO, or a device that cannot take it), the sender falls back to
one ``sendto`` per datagram for good.
"""

import errno
import struct

SOL_UDP = 17
# Linux's value; the socket module does not export it.
UDP_SEGMENT = 103
#: The kernel's limit on datagrams per segmented send.
MAX_SEGMENTS = 64
#: Bytes per segmented send: within the largest UDP payload of IPv4 (65 507).
MAX_BYTES = 65_000
#: Errors that mean "this socket or route cannot segment", not "this send failed".
_UNSUPPORTED = {errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP}


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
