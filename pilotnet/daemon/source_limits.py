"""How much work unauthenticated datagrams may make the daemon do, per source and in all.

A PILA costs a signature check (~60 us with a real key) and perhaps a registry
lookup; a sealed frame from a node we hold no session for costs a reply.
Neither may be had for free: each source address gets a token bucket, checked
before any signature or lookup, and all sources share one more, so a flood
from one address (or from many spoofed ones) buys a bounded amount of work
per second while authenticated traffic (sessions already keyed) is untouched.
"""

from pilotnet.ratelimit import RateLimiter, TokenBucket

#: Key exchanges (PILA checks, key replies) one source may cause per second, and at once.
PER_SOURCE_RATE = 10.0
PER_SOURCE_BURST = 20
#: The same, for every source together.
TOTAL_RATE = 200.0
#: Sources remembered at most (least recently seen forgotten first).
MAX_SOURCES = 4096


class SourceLimits:
    """A bucket per source plus a shared one; fed ``now`` like the rest of :mod:`pilotnet.ratelimit`."""

    def __init__(self, *, per_source_rate: float = PER_SOURCE_RATE, per_source_burst: int = PER_SOURCE_BURST,
                 total_rate: float = TOTAL_RATE, max_sources: int = MAX_SOURCES) -> None:
        self._sources = RateLimiter(per_source_burst, per_source_burst / per_source_rate, max_keys=max_sources)
        self._total = TokenBucket(max(total_rate, 1.0), total_rate)

    def allow(self, source: object, now: float) -> bool:
        """True when ``source`` (a host, or a relayed node) may cause one more unit of work now.

        The source's own bucket is asked first, so one flooding source spends
        only its own share of the shared bucket.
        """
        return self._sources.allow(source, now) and self._total.take(1, now) == 1

    def __len__(self) -> int:
        return len(self._sources)
