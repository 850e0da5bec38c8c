"""What a connection tells its owner, besides packets and bytes."""

import enum


class StreamEvent(enum.Enum):
    """Events a :class:`~pilotnet.transport.connection.StreamConnection` emits, in order.

    ``CLOSED`` is always the last event and is emitted exactly once; after it the
    owner may forget the connection.  ``RESET`` and ``TIMED_OUT`` are followed by
    ``CLOSED`` and leave the reason in ``connection.error``.
    """

    ESTABLISHED = "established"
    #: Third SYN expiry: the daemon may switch this peer to the beacon relay.
    RELAY_HINT = "relay_hint"
    #: The peer finished sending (its FIN arrived in order): end of the inbound stream.
    PEER_CLOSED = "peer_closed"
    #: Nothing was heard for the idle timeout on an open connection: it closes itself (once).
    IDLE_TIMEOUT = "idle_timeout"
    RESET = "reset"
    TIMED_OUT = "timed_out"
    CLOSED = "closed"
