"""Congestion window: slow start, congestion avoidance with byte counting, recovery.

Units are bytes.  The policy is NewReno-shaped and SACK-aware; the *which
segment to resend* half lives in the connection and the send queue, this
module only owns the numbers:

* slow start while ``cwnd < ssthresh`` (cwnd += bytes acked), then congestion
  avoidance by appropriate byte counting (cwnd += MSS * acked / cwnd), capped;
* fast recovery (duplicate ACKs, SACK or RACK evidence): ``ssthresh =
  max(0.7 * FlightSize, min(FlightSize, floor), 2 MSS)``, cwnd = ssthresh
  and held there until the recovery point is acknowledged, however many
  segments of the episode were lost -- one cut per loss episode, so a burst
  loss costs one reduction, not one per segment.  The factor is CUBIC's
  (RFC 9438 section 4.6) rather than Reno's one half.  The floor is the
  highest delivery rate of the last 10 round trips times (the lowest RTT
  seen + 5 ms): the window that keeps the path full (TCP Westwood+'s rule,
  rate x lowest RTT) plus a standing queue of CoDel's 5 ms target.  A loss
  that comes with a longer queue than that still cuts 0.3 of the flight; a
  loss with less costs the window nothing, where a cut of 0.3 at every
  loss holds a window-based sender at about ``1.2 / sqrt(loss)`` segments
  (a dozen at 2% random loss) whatever the path could carry.  The price: at
  a bottleneck whose buffer holds less than 5 ms, overflow losses do not
  shrink the window either, so a flow there keeps losing about a segment
  per round trip (repaired by SACK) and takes more than a Reno flow's share,
  as BBR's first version does.  The reference's receivers see nothing of
  this (the sender's choice alone);
* timeout: ssthresh halves (unless already recovering from this episode's loss)
  and cwnd restarts at ``min(initial window, ssthresh)`` then slow-starts; the
  reference restarts at the initial window rather than 1 MSS, and so do we.
"""

from collections import deque

from pilotnet.transport.config import StreamConfig

#: What a fast-recovery episode keeps of FlightSize, in tenths (integer arithmetic on the ACK path).
_KEEP_TENTHS = 7
#: Round trips over which the highest delivery rate is remembered (as BBR's bandwidth filter).
_RATE_ROUNDS = 10
#: Seconds of standing queue a loss episode leaves the window: CoDel's target (RFC 8289).
_TOLERATED_QUEUE = 0.005


class CongestionControl:
    __slots__ = ("cwnd", "ssthresh", "in_recovery", "after_timeout", "recovery_point", "episode",
                 "_mss", "_max", "_initial", "_rates", "_round_end", "_round_started", "_round_delivered")

    def __init__(self, config: StreamConfig) -> None:
        self._mss = config.mss
        self._max = config.max_cwnd
        self._initial = config.initial_window
        self.cwnd = self._initial
        self.ssthresh = config.initial_ssthresh
        self.in_recovery = False
        self.after_timeout = False
        self.recovery_point = 0
        #: Numbers recovery episodes, so a segment knows whether it was resent in this one.
        self.episode = 0
        #: Bytes per second delivered in each of the last round trips, and the round under way:
        #: it ends once as many bytes are delivered as had been sent when it began.
        self._rates: deque[float] = deque(maxlen=_RATE_ROUNDS)
        self._round_end = 0
        self._round_started = 0.0
        self._round_delivered = 0

    def on_ack(self, acked: int) -> None:
        """``acked`` new bytes were cumulatively acknowledged outside fast recovery."""
        cwnd = self.cwnd
        if cwnd < self.ssthresh:
            cwnd += acked
        else:
            step = self._mss * acked // cwnd
            cwnd += step if step > 0 else 1
        self.cwnd = cwnd if cwnd < self._max else self._max

    def on_delivered(self, delivered: int, sent: int, now: float) -> None:
        """``delivered``: bytes confirmed so far (cumulatively or by SACK); ``sent``: bytes sent so far."""
        if delivered < self._round_end:
            return
        elapsed = now - self._round_started
        if elapsed > 0 and self._round_end:
            self._rates.append((delivered - self._round_delivered) / elapsed)
        self._round_end = sent
        self._round_started = now
        self._round_delivered = delivered

    def enter_fast_recovery(self, flight: int, recovery_point: int, min_rtt: float | None) -> None:
        self.episode += 1
        self.in_recovery = True
        self.after_timeout = False
        self.recovery_point = recovery_point
        kept = flight * _KEEP_TENTHS // 10
        if min_rtt is not None and self._rates:
            floor = round(max(self._rates) * (min_rtt + _TOLERATED_QUEUE))
            if floor > flight:
                floor = flight
            if floor > kept:
                kept = floor
        self.ssthresh = kept if kept > 2 * self._mss else 2 * self._mss
        self.cwnd = self.ssthresh

    def enter_timeout_recovery(self, flight: int, recovery_point: int) -> None:
        if not self.in_recovery:
            half = flight // 2
            self.ssthresh = half if half > 2 * self._mss else 2 * self._mss
        self.episode += 1
        self.in_recovery = True
        self.after_timeout = True
        self.recovery_point = recovery_point
        self.cwnd = self._initial if self._initial < self.ssthresh else self.ssthresh

    def exit_recovery(self) -> None:
        self.in_recovery = False
        if not self.after_timeout:
            self.cwnd = self.ssthresh
        self.after_timeout = False

    def on_extra_dupack(self) -> None:
        """A duplicate ACK beyond the threshold: a segment left the network (RFC 5681 inflation)."""
        cwnd = self.cwnd + self._mss
        self.cwnd = cwnd if cwnd < self._max else self._max
