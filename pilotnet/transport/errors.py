"""The errors a stream connection reports to its application.

They are values, not raised at the daemon: a connection that ends badly keeps
one in :attr:`StreamConnection.error` and emits an event, and the daemon hands
it to whoever is waiting on the connection.
"""

from pilotnet.errors import CONNECTION_FAILED, TIMEOUT, PilotError


class StreamError(PilotError):
    """Base of every stream-connection failure."""

    code = CONNECTION_FAILED


class DialTimeout(StreamError):
    """The peer never answered our SYN."""

    code = TIMEOUT


class ConnectionRefused(StreamError):
    """The peer answered our SYN with RST: nothing listens on that port, or it is full."""


class ConnectionReset(StreamError):
    """The peer reset an open connection."""


class RetransmissionTimeout(StreamError):
    """A segment went unacknowledged through every allowed transmission."""

    code = TIMEOUT


class PeerUnresponsive(StreamError):
    """Keepalive probes went unanswered: the peer is presumed dead."""

    code = TIMEOUT


class CloseTimeout(StreamError):
    """After our close, the peer neither took our last bytes nor closed its side in time."""

    code = TIMEOUT


class ConnectionClosed(StreamError):
    """The application wrote to a connection it had already closed or that has ended."""
