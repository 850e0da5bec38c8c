"""What both ends of a stream's data socket share (the daemon's and the SDK's protocols are in their rooms).

A Twisted transport's ``write`` only queues: the bytes leave in the next
reactor iteration, when the poller reports the socket writable.  For a round
trip on an open stream that is one more poll and dispatch at each of the two
local hops, a fifth of what the whole trip costs.  :func:`write_now` sends at
once when nothing is queued ahead (what a blocking program's ``send`` would
do) and hands Twisted only what the kernel did not take, so ordering,
buffering, producers and errors stay Twisted's.
"""

from __future__ import annotations

from typing import Any


def write_now(transport: Any, data: bytes) -> None:
    """Send ``data`` on a connected Twisted socket transport now if nothing is queued; queue the rest.

    It reads the queue of :class:`twisted.internet.abstract.FileDescriptor`
    (``dataBuffer`` and ``_tempDataBuffer``); any error is left to
    ``transport.write``, which meets it again and reports it as Twisted does.
    """
    if transport.connected and not transport.disconnecting and not transport.dataBuffer \
            and not transport._tempDataBuffer:
        try:
            sent = transport.socket.send(data)
        except OSError:  # would block, or the socket failed: Twisted's own write finds out which
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def end_writing(transport: Any, both_ways: bool) -> None:
    """Half-close (``both_ways`` false) or close ``transport`` once what is queued has been written.

    Each end of a data socket is the producer of its own transport (to hear
    when writes back up), and Twisted closes nothing while a producer is
    registered: unregistering first is what lets the close happen.
    """
    if transport.producer is not None:
        transport.unregisterProducer()
    if both_ways:
        transport.loseConnection()
    else:
        transport.loseWriteConnection()
