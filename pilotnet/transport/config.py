"""Tunables of a stream connection, defaulting to the Go reference's constants.

One frozen object is shared by every connection of a daemon; a connection never
changes it.  Times are seconds, sizes are bytes.
"""

from dataclasses import dataclass
from typing import NoReturn

from pilotnet.errors import INVALID_ARGUMENT, PilotError
from pilotnet.wire.packet import MAX_PAYLOAD


@dataclass(frozen=True)
class StreamConfig:
    #: Largest payload we put in one segment.  1024 is accepted by every Go version.
    mss: int = 1024
    #: Send sub-MSS writes at once instead of holding them while data is in flight (Nagle off).
    nodelay: bool = False
    nagle_delay: float = 0.040
    delayed_ack_delay: float = 0.040
    #: Acknowledge at once when this many segments are unacknowledged.
    delayed_ack_segments: int = 2

    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 10.0
    #: A segment sent this many times without being acknowledged resets the connection.
    max_transmissions: int = 8
    dupack_threshold: int = 3
    #: Floor of the tail-loss probe timeout (otherwise twice the smoothed RTT): a
    #: loaded host's scheduling jitter must not read as loss.
    tail_probe_min: float = 0.010

    initial_window_segments: int = 10
    initial_ssthresh: int = 512 * 1024
    max_cwnd: int = 1024 * 1024

    #: Bytes we hold for the application (delivered but not consumed, plus out of order).
    receive_buffer: int = 512 * 1024
    #: Out-of-order segments kept at most; more are dropped (the sender retransmits them).  As many
    #: as the default window advertises (receive_buffer / mss): the reference keeps 128, and a
    #: loss in a window larger than that made it drop, and the sender resend, the rest.
    max_out_of_order: int = 512

    #: Interval of the first window probe while the peer's window stays shut; doubles up to the max.
    window_probe_initial: float = 0.5
    window_probe_max: float = 30.0

    syn_initial_rto: float = 1.0
    syn_max_rto: float = 8.0
    #: Retransmissions of the SYN before the dial fails.
    syn_max_retransmissions: int = 6
    #: The SYN expiry at which RELAY_HINT is emitted and the backoff restarts.
    syn_relay_expiry: int = 3
    syn_relay_rto: float = 3.0
    #: How long an accepted SYN waits for the dialer's final ACK.
    syn_received_timeout: float = 10.0

    time_wait: float = 10.0
    #: After our close (FIN_WAIT, CLOSING, LAST_ACK), end the connection with an RST once this
    #: long passes with no progress (no new byte received or acknowledged): a peer that stays
    #: up but never closes, or holds its window shut, cannot keep a closed stream forever.
    close_timeout: float = 60.0
    #: Close (FIN) a connection that moved no data for this long; None disables.
    idle_timeout: float | None = 120.0
    #: Probe a connection we heard nothing from for this long; None disables probes.
    keepalive_interval: float | None = 30.0
    #: A probe falling due with this many earlier probes unanswered resets the connection.
    keepalive_max_missed: int = 3
    #: How long a FIN that overtook data waits for the missing bytes (restarted by
    #: every byte that arrives) before ending the stream: longer than a sender's
    #: whole retransmission schedule, because only peers that never resend (Go UP) should hit it.
    fin_reorder_wait: float = 90.0

    #: Our initial sequence number.  The reference always uses 0; other values
    #: exist so that tests can exercise 32-bit wrap-around.
    initial_sequence: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.mss <= MAX_PAYLOAD:
            _invalid(f"mss must be 1-{MAX_PAYLOAD}, not {self.mss}")
        if not 0 < self.min_rto <= self.initial_rto <= self.max_rto:
            _invalid("RTO bounds must satisfy 0 < min_rto <= initial_rto <= max_rto")
        if self.max_transmissions < 1 or self.syn_max_retransmissions < 0:
            _invalid("transmission limits must be positive")
        if self.receive_buffer < self.mss:
            _invalid(f"receive_buffer ({self.receive_buffer}) must hold at least one segment ({self.mss})")
        if self.initial_window_segments < 1 or self.max_cwnd < self.mss:
            _invalid("the congestion window must allow at least one segment")
        if self.max_out_of_order < 0 or self.delayed_ack_segments < 1 or self.dupack_threshold < 1:
            _invalid("max_out_of_order, delayed_ack_segments and dupack_threshold must be positive")
        if not self.close_timeout > 0:
            _invalid("close_timeout must be positive")
        if not 0 <= self.initial_sequence < 1 << 32:
            _invalid("initial_sequence must fit in 32 bits")

    @property
    def initial_window(self) -> int:
        return self.initial_window_segments * self.mss


def _invalid(message: str) -> NoReturn:
    raise PilotError(f"invalid stream configuration: {message}", code=INVALID_ARGUMENT)


DEFAULT_CONFIG = StreamConfig()
