"""The echo service on port 7: every byte a peer sends comes straight back.

``pilotctl ping``, ``traceroute`` and ``bench`` measure against it.  It is an
ordinary stream owner inside the daemon; answering a push only once the echo
is buffered makes a fast sender wait for its own echo, which is the
backpressure a benchmark needs.
"""

from zope.interface import implementer

from pilotnet.errors import PilotError
from pilotnet.interfaces import IStreamOwner


@implementer(IStreamOwner)
class EchoService:
    def __init__(self, streams, port, clock):
        self.streams = streams
        self.clock = clock
        streams.bind(port, self)

    def stream_accepted(self, port, stream):
        pass

    def stream_data(self, conn_id, data):
        written = self.streams.write(conn_id, data, self)
        # Taken at once (the usual case): answer the push now rather than through the Deferred.
        return None if written.called else written

    def stream_closed(self, conn_id, code, message):
        if not code:
            try:
                self.streams.close(conn_id)
            except PilotError:
                pass  # already gone

    def datagram(self, src, src_port, dst_port, data):
        pass
