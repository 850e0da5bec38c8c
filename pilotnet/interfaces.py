"""The interfaces at the seams between pilotnet's rooms.

A leaf module: it imports nothing of pilotnet, so any room may depend on it
without depending on the room that implements it.  The daemon implements the
stream owners' side, the services and the control socket implement
:class:`IStreamOwner`, and neither has to import the other for it.
"""

from typing import TYPE_CHECKING, Any, Protocol

from zope.interface import Interface

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
