"""Races between registries on one database for a unique value (hostname, key, owner, name).

The database's constraints decide who wins; the loser's store fails the
request's commit with :class:`StoreConflict` once it has brought the
directory up to date, and the shell handles the request again
(:func:`handle_again`) so its reply is what the reference answers when the
value is already taken.  No database driver is imported here: the shell
uses this module whichever store it has.
"""

from contextlib import contextmanager


class StoreConflict(Exception):
    """Another registry committed a conflicting unique value first.

    ``settled`` fires once the directory holds the database's truth for the
    request's entities; handle the request again then.
    """

    def __init__(self, settled) -> None:
        super().__init__("a unique value was taken by another registry")
        self.settled = settled


class ReplayedElsewhere(Exception):
    """The request's nonce was committed by another registry on the database first: a replay.

    ``settled`` fires once the directory holds the database's truth for the
    request's entities again (its effect in memory undone); refuse it then.
    """

    def __init__(self, settled) -> None:
        super().__init__("a replayed request: its nonce was used at another registry")
        self.settled = settled


class _Readmitting:
    """A replay cache that checks timestamps as ``cache`` does but admits nothing new."""

    def __init__(self, cache) -> None:
        self._cache = cache

    def admit(self, signer, nonce, timestamp, now) -> None:
        """The first handling admitted this nonce already; the request is the same one."""

    def __getattr__(self, name):
        return getattr(self._cache, name)


@contextmanager
def _readmitted(registry):
    """Handle a request a second time without its nonce counting as a replay."""
    cache = registry.replays
    registry.replays = _Readmitting(cache)
    try:
        yield
    finally:
        registry.replays = cache


def handle_again(registry, request, peer, now, over_tls):
    """The reply to ``request`` handled again on the directory as the database left it."""
    with _readmitted(registry):
        return registry.handle(request, peer, now, over_tls=over_tls)
