"""The connection state machine, as an explicit transition table.

The connection asks :func:`transition` for every state change, so an illegal
change is a loud bug instead of a silently wrong connection, and the table
below is the whole truth about which changes exist.

Unlike the Go reference (which has no half-close: a FIN received closes the
connection), a peer's FIN only ends the inbound direction (``CLOSE_WAIT``); we
may keep sending until our application closes too.  Go peers never send after
their FIN and never mind receiving our data after it, so this is compatible.
"""

import enum


class State(enum.Enum):
    #: Members are singletons compared by identity: hashing them so is equivalent, and C-level,
    #: where ``Enum.__hash__`` runs Python code for every ``state in SOME_SET`` of the per-packet path.
    __hash__ = object.__hash__

    CLOSED = "CLOSED"
    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    ESTABLISHED = "ESTABLISHED"
    #: We closed; the peer has not.
    FIN_WAIT = "FIN_WAIT"
    #: The peer closed; we have not.
    CLOSE_WAIT = "CLOSE_WAIT"
    #: Both closed; our FIN is not acknowledged yet and the peer's came first or together.
    CLOSING = "CLOSING"
    #: Both closed, the peer first; waiting for our FIN to be acknowledged.
    LAST_ACK = "LAST_ACK"
    #: Both closed and acknowledged, we first: linger to re-acknowledge a retransmitted FIN.
    TIME_WAIT = "TIME_WAIT"


class Trigger(enum.Enum):
    OPEN = "open"                  # application dials: SYN sent
    SYN = "syn"                    # a SYN accepted: SYN|ACK sent
    SYN_ACK = "syn_ack"            # dialer got SYN|ACK
    ACK = "ack"                    # acceptor got the handshake's final ACK
    CLOSE = "close"                # application closed: FIN queued
    PEER_FIN = "peer_fin"          # peer's FIN arrived in order
    FIN_ACKED = "fin_acked"        # peer acknowledged our FIN
    TIMER = "timer"                # TIME_WAIT (or an idle half-closed connection) expired
    FAIL = "fail"                  # RST sent or received, give-up, abort


_T = Trigger
_S = State

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (_S.CLOSED, _T.OPEN): _S.SYN_SENT,
    (_S.CLOSED, _T.SYN): _S.SYN_RECV,
    (_S.SYN_SENT, _T.SYN_ACK): _S.ESTABLISHED,
    (_S.SYN_RECV, _T.ACK): _S.ESTABLISHED,
    (_S.ESTABLISHED, _T.CLOSE): _S.FIN_WAIT,
    (_S.ESTABLISHED, _T.PEER_FIN): _S.CLOSE_WAIT,
    (_S.FIN_WAIT, _T.PEER_FIN): _S.CLOSING,
    (_S.FIN_WAIT, _T.TIMER): _S.CLOSED,
    (_S.CLOSE_WAIT, _T.CLOSE): _S.LAST_ACK,
    (_S.CLOSING, _T.FIN_ACKED): _S.TIME_WAIT,
    (_S.LAST_ACK, _T.FIN_ACKED): _S.CLOSED,
    (_S.TIME_WAIT, _T.TIMER): _S.CLOSED,
}
# Any live state can fail straight to CLOSED.
for _state in _S:
    if _state is not _S.CLOSED:
        TRANSITIONS[(_state, _T.FAIL)] = _S.CLOSED
del _state

#: States in which the peer may still send us data.
RECEIVING = frozenset({_S.ESTABLISHED, _S.FIN_WAIT})
#: States in which the application may still write.
WRITABLE = frozenset({_S.SYN_SENT, _S.SYN_RECV, _S.ESTABLISHED, _S.CLOSE_WAIT})
#: States after our close, before the connection is finished (bounded by ``close_timeout``).
CLOSING_STATES = frozenset({_S.FIN_WAIT, _S.CLOSING, _S.LAST_ACK})
#: States after the handshake in which the connection still moves packets.
SYNCHRONIZED = frozenset({_S.ESTABLISHED, _S.FIN_WAIT, _S.CLOSE_WAIT, _S.CLOSING, _S.LAST_ACK, _S.TIME_WAIT})


class InvalidTransition(Exception):
    """An internal bug: the engine attempted a change the table does not allow."""


def transition(state: State, trigger: Trigger) -> State:
    """The state after ``trigger`` in ``state``; :class:`InvalidTransition` if none."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise InvalidTransition(f"no transition from {state.name} on {trigger.name}") from None
