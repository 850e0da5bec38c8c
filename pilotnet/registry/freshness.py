"""Freshness and single use of fresh-form signed requests (sans-IO: callers pass ``now``).

A fresh-form request (:mod:`pilotnet.registry.challenges`) carries a
``timestamp`` and a ``nonce`` under its signature.  It is accepted only while
the timestamp is within ``window`` seconds of the registry's clock, and only
once: its nonce is remembered until the timestamp leaves the window, after
which the timestamp alone refuses it.  Memory is bounded twice, so neither a
busy registry nor one node can grow the cache without limit: at most
``max_entries`` nonces in all and ``max_per_signer`` per node.  When a bound
is reached the request is refused (the client retries after the window moves
on), never accepted unchecked.

The cache is one registry's.  Registries sharing a database also commit each
admitted nonce with the changes its request made (:meth:`ReplayCache.take_admitted`
hands them to the shell; see :mod:`pilotnet.registry.pg_store`), so the
database refuses a request replayed to another registry.
"""

from collections import Counter, deque
from typing import Deque, Dict, List, Tuple

from pilotnet.registry.requests import RequestError

DEFAULT_WINDOW = 300.0
DEFAULT_MAX_ENTRIES = 65_536
DEFAULT_MAX_PER_SIGNER = 256
# Admitted nonces kept for take_admitted (a request admits one; a caller that never takes stays bounded).
MAX_UNTAKEN = 64
MAX_NONCE_LENGTH = 64


def replayed() -> RequestError:
    """The refusal of a request whose nonce was used before (here, or at another registry)."""
    return RequestError("replayed request: this signed request was already used",
                        hint="sign every request with a new nonce")


class ReplayCache:
    """The nonces of accepted fresh-form requests, each kept until its timestamp goes stale."""

    def __init__(self, window: float = DEFAULT_WINDOW, max_entries: int = DEFAULT_MAX_ENTRIES,
                 max_per_signer: int = DEFAULT_MAX_PER_SIGNER) -> None:
        self.window = window
        self.max_entries = max_entries
        self.max_per_signer = max_per_signer
        self._expiry: Dict[Tuple[str, str], float] = {}
        self._per_signer: Counter = Counter()
        self._admitted: Deque[Tuple[str, str, float]] = deque(maxlen=MAX_UNTAKEN)

    def check_timestamp(self, timestamp: int, now: float) -> None:
        """Refuse a timestamp outside ``now ± window`` (clocks must agree that closely)."""
        if abs(timestamp - now) > self.window:
            raise RequestError(
                f"stale signature: request timestamp {timestamp} is more than "
                f"{self.window:g} s from the registry's clock ({int(now)})",
                hint="check the clock of this machine (NTP) and retry")

    def admit(self, signer: str, nonce: str, timestamp: int, now: float) -> None:
        """Accept (``signer``, ``nonce``) once; :class:`RequestError` if stale, seen or over a bound.

        Call only after the signature verified, so only a key's holder can
        take room in the cache.
        """
        self.check_timestamp(timestamp, now)
        key = (signer, nonce)
        if key in self._expiry:
            raise replayed()
        if len(self._expiry) >= self.max_entries:
            self.purge(now)
        if len(self._expiry) >= self.max_entries or self._per_signer[signer] >= self.max_per_signer:
            raise RequestError("too many signed requests in the replay window; retry shortly")
        self._expiry[key] = timestamp + self.window
        self._per_signer[signer] += 1
        self._admitted.append((signer, nonce, timestamp + self.window))

    def take_admitted(self) -> List[Tuple[str, str, float]]:
        """``(signer, nonce, expiry)`` admitted since the last call (the request just handled)."""
        if not self._admitted:
            return []
        admitted = list(self._admitted)
        self._admitted.clear()
        return admitted

    def purge(self, now: float) -> None:
        """Forget nonces whose timestamps the window refuses anyway."""
        for key in [key for key, expiry in self._expiry.items() if expiry < now]:
            del self._expiry[key]
            self._per_signer[key[0]] -= 1
            if not self._per_signer[key[0]]:
                del self._per_signer[key[0]]

    def __len__(self) -> int:
        return len(self._expiry)
