"""The interfaces at the seams between pilotnet's rooms.

A leaf module: it imports nothing of pilotnet, so any room may depend on it
without depending on the room that implements it.  The daemon implements the
stream owners' side, the services and the control socket implement
:class:`IStreamOwner`, and neither has to import the other for it.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from zope.interface import Attribute, Interface, implementer

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


class AcceptedStream(Protocol):
    """What an owner may read of a stream handed to it (the daemon's stream objects have more)."""

    @property
    def conn_id(self) -> int: ...

    @property
    def remote(self) -> tuple[int, int]:
        """The peer's virtual address (a :class:`pilotnet.wire.address.Addr`: ``(network, node)``)."""

    @property
    def remote_port(self) -> int: ...


class IStreamOwner(Interface):
    """A local client that owns ports and streams (a control-socket client or a built-in service)."""

    def stream_accepted(port: int, conn: AcceptedStream) -> None:
        """A stream to ``port`` was accepted: ``conn`` has conn_id, remote, remote_port."""

    def stream_data(conn_id: int, data: bytes) -> "Deferred[Any] | None":
        """Bytes arrived; the returned Deferred fires when the owner has taken them."""

    def stream_closed(conn_id: int, code: str, message: str) -> None:
        """The stream ended: ``code`` empty for a clean end of the peer's data."""

    def datagram(src: tuple[int, int], src_port: int, dst_port: int, data: bytes) -> None:
        """A datagram arrived for a port this owner bound."""


class IEventEmitter(Interface):
    """Where the daemon's parts report what happened to them (the webhook events of docs/webhooks.md).

    ``emit`` must be cheap and do no I/O: it is called on the reactor's hot
    paths.  Values may be any objects (addresses, paths); the emitter turns
    them into text later, off the caller's path.
    """

    active = Attribute("False while events go nowhere: a loop emitting per item may skip itself")

    def emit(event: str, **data: object) -> None:
        """Report ``event`` (such as ``conn.fin``) with its fields."""


@implementer(IEventEmitter)
class _NoEvents:
    """The emitter of a part nobody listens to: every event is ignored."""

    active = False

    def emit(self, event: str, **data: object) -> None:
        pass


#: The default emitter of every part, until the daemon hands it a real one.
NO_EVENTS = _NoEvents()


class IRegistryStore(Interface):
    """Where a registry keeps every acknowledged change (SQLite file, or a shared PostgreSQL).

    The shell writes the entities a request changed -- ``(kind, key, value or
    None)``, see :class:`pilotnet.registry.directory.Directory` -- and replies
    only once the returned Deferred has fired, so an acknowledged change
    survives ``kill -9`` of the registry.
    """

    shares_replays = Attribute(
        "True when other registries write to the same database: each request's changes then "
        "include a ('nonce', 'signer nonce', expiry) entry per fresh signature it used, and a "
        "nonce committed before fails the commit with ReplayedElsewhere.")

    def load_into(directory: Any, others: Mapping[str, Callable[..., Any]] | None = None) -> int:
        """Restore every stored entity into ``directory`` (at start-up), the kinds in ``others``
        through the restorer it maps them to; returns how many."""

    def count() -> int:
        """How many entities (SQLite) or nodes (PostgreSQL) are stored; 0 for a new store."""

    def use_thread(reactor: Any) -> None:
        """From now on run database work off the reactor thread."""

    def commit(changes: Iterable[tuple[str, str, Any]]) -> "Deferred[Any]":
        """Store one request's changes; a Deferred that fires once they are committed."""

    def commit_seen(changes: Iterable[tuple[str, str, Any]]) -> "Deferred[Any]":
        """Store the ``last_seen`` times heartbeats moved (soft state, written in batches)."""

    def shutdown() -> "Deferred[Any]":
        """Commit what is queued, then release the database; a Deferred."""
