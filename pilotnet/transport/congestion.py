"""Congestion window: slow start, congestion avoidance with byte counting, recovery.

Units are bytes.  The policy is NewReno-shaped and SACK-aware; the *which
segment to resend* half lives in the connection and the send queue, this
module only owns the numbers:

* slow start while ``cwnd < ssthresh`` (cwnd += bytes acked), then congestion
  avoidance by appropriate byte counting (cwnd += MSS * acked / cwnd), capped;
* fast recovery (duplicate ACKs, SACK or RACK evidence): ``ssthresh =
  max(0.7 * FlightSize, 2 MSS)``, cwnd = ssthresh and held there until the
  recovery point is acknowledged, however many segments of the episode were
  lost -- one cut per loss episode, so a burst loss costs one reduction, not
  one per segment.  The factor is CUBIC's (RFC 9438 section 4.6) rather than
  Reno's one half: on a path with random loss a halving every few dozen
  segments keeps the window near its floor, and the reference's receivers
  see nothing of the difference (the sender's choice alone);
* timeout: ssthresh halves (unless already recovering from this episode's loss)
  and cwnd restarts at ``min(initial window, ssthresh)`` then slow-starts; the
  reference restarts at the initial window rather than 1 MSS, and so do we.
"""

from pilotnet.transport.config import StreamConfig

#: What a fast-recovery episode keeps of FlightSize, in tenths (integer arithmetic on the ACK path).
_KEEP_TENTHS = 7


class CongestionControl:
    __slots__ = ("cwnd", "ssthresh", "in_recovery", "after_timeout", "recovery_point", "episode",
                 "_mss", "_max", "_initial")

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

    def on_ack(self, acked: int) -> None:
        """``acked`` new bytes were cumulatively acknowledged outside fast recovery."""
        cwnd = self.cwnd
        if cwnd < self.ssthresh:
            cwnd += acked
        else:
            step = self._mss * acked // cwnd
            cwnd += step if step > 0 else 1
        self.cwnd = cwnd if cwnd < self._max else self._max

    def enter_fast_recovery(self, flight: int, recovery_point: int) -> None:
        self.episode += 1
        self.in_recovery = True
        self.after_timeout = False
        self.recovery_point = recovery_point
        kept = flight * _KEEP_TENTHS // 10
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
