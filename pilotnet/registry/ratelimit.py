"""Per-key token buckets, fed ``now`` so tests drive them with a fake clock."""


class RateLimiter:
    """At most ``burst`` events at once per key, refilled continuously over ``window`` seconds.

    With ``burst=10, window=60`` a key may do 10 things at once and then one
    more every 6 seconds.  Idle keys are forgotten by :meth:`purge` so the table
    stays bounded by the number of recently active keys.
    """

    def __init__(self, burst, window):
        self.burst = burst
        self.window = window
        self._rate = burst / window
        self._buckets = {}

    def allow(self, key, now):
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self._rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def purge(self, now):
        """Forget keys idle for two windows (their buckets are full again anyway)."""
        cutoff = now - 2 * self.window
        for key in [k for k, (_, last) in self._buckets.items() if last < cutoff]:
            del self._buckets[key]

    def __len__(self):
        return len(self._buckets)
