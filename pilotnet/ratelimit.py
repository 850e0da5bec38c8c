"""Token buckets, fed ``now`` so tests drive them with a fake clock.

The registry limits requests with them, the daemon new streams.
"""

from collections.abc import Hashable


class RateLimiter:
    """At most ``burst`` events at once per key, refilled continuously over ``window`` seconds.

    With ``burst=10, window=60`` a key may do 10 things at once and then one
    more every 6 seconds.  Idle keys are forgotten by :meth:`purge` so the table
    stays bounded by the number of recently active keys.
    """

    def __init__(self, burst: float, window: float, max_keys: int | None = None) -> None:
        self.burst = burst
        self.window = window
        #: With a bound, a new key in a full table evicts the least recently used
        #: one (O(1)): spoofed keys cannot grow the table, only churn it.
        self.max_keys = max_keys
        self._rate = burst / window
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        buckets = self._buckets
        entry = buckets.pop(key, None)  # re-inserted below: the dict stays in last-use order
        if entry is None and self.max_keys is not None and len(buckets) >= self.max_keys:
            del buckets[next(iter(buckets))]
        tokens, last = entry if entry is not None else (self.burst, now)
        tokens = min(self.burst, tokens + (now - last) * self._rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def purge(self, now: float) -> None:
        """Forget keys idle for two windows (their buckets are full again anyway)."""
        cutoff = now - 2 * self.window
        for key in [k for k, (_, last) in self._buckets.items() if last < cutoff]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class TokenBucket:
    """One bucket of ``burst`` tokens, refilled continuously at ``rate`` per second.

    The per-connection request limits use one each and take a whole read's
    requests in one call, so the check costs one call per read, not one per
    request.
    """

    __slots__ = ("burst", "rate", "_tokens", "last")

    def __init__(self, burst: float, rate: float) -> None:
        self.burst = burst
        self.rate = rate
        self._tokens = float(burst)
        #: When tokens were last taken (None: never).
        self.last: float | None = None

    def take(self, count: int, now: float) -> int:
        """Take up to ``count`` tokens; returns how many there were (all of them when under the rate)."""
        tokens = self._tokens
        if self.last is not None:
            tokens = min(self.burst, tokens + (now - self.last) * self.rate)
        granted = min(count, int(tokens))
        self._tokens = tokens - granted
        self.last = now
        return granted
