"""Retransmission timeout estimation (RFC 6298), with the reference's clamps and backoff.

Callers feed only Karn-valid samples (segments acknowledged on their first
transmission).  Backoff follows the Go reference: a timeout doubles the RTO once
per recovery episode (capped), and any new acknowledgment undoes the doubling.
That keeps dead-peer detection near 15 s with the default 1 s RTO, which Go
peers also assume.
"""

from pilotnet.transport.config import StreamConfig

# RFC 6298's clock-granularity term G.
_GRANULARITY = 0.010


class RtoEstimator:
    __slots__ = ("srtt", "rttvar", "min_rtt", "base", "backed_off", "_min", "_max")

    #: Both None until the first sample.
    srtt: float | None
    rttvar: float | None

    def __init__(self, config: StreamConfig) -> None:
        self.srtt = None
        self.rttvar = None
        #: The lowest sample: the path's round trip without queues.
        self.min_rtt: float | None = None
        self.base = config.initial_rto
        self.backed_off = False
        self._min = config.min_rto
        self._max = config.max_rto

    @property
    def rto(self) -> float:
        """The timeout to arm now."""
        if self.backed_off:
            return min(self.base * 2, self._max)
        return self.base

    def sample(self, rtt: float) -> None:
        srtt = self.srtt
        if srtt is None:
            self.srtt = self.min_rtt = srtt = rtt
            self.rttvar = rttvar = rtt / 2
        else:
            # rttvar is set whenever srtt is.
            rttvar = self.rttvar = 0.75 * self.rttvar + 0.25 * abs(srtt - rtt)  # type: ignore[operator]
            self.srtt = srtt = 0.875 * srtt + 0.125 * rtt
            if rtt < self.min_rtt:  # type: ignore[operator]  # set with srtt
                self.min_rtt = rtt
        variance = 4 * rttvar
        rto = srtt + (variance if variance > _GRANULARITY else _GRANULARITY)
        self.base = self._min if rto < self._min else (self._max if rto > self._max else rto)

    def back_off(self) -> None:
        self.backed_off = True

    def forgive(self) -> None:
        """New data was acknowledged: the path works, drop the backoff."""
        self.backed_off = False
