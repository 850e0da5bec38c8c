"""The registry's route table: each message registered once, with what it may do.

A concern of the registry (nodes, trust, networks, polo, beacons, audit...)
is a class built from the :class:`RegistryCore` that lists its messages as
:class:`Route` values.  The properties that used to live in hand-kept lists
beside the handlers -- whether a standby answers the message, whether the
admin token may stand in for the node's signature -- are stated where the
message is registered, so adding a message is one line in one place.

Sans-IO: no sockets and no clock; handlers take ``now``.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Protocol, Tuple

Request = Mapping[str, Any]
Peer = Tuple[str, int]
Reply = Dict[str, Any]
Handler = Callable[[Request, Peer, float], Reply]


@dataclass(frozen=True)
class Route:
    """One message kind and how the registry treats it."""

    kind: str
    handler: Handler
    # A standby (following a primary) answers it: reads, and soft local state.
    on_standby: bool = False
    # The admin token stands in for the node's signature.
    admin_override: bool = False


class RegistryCore(Protocol):
    """What every concern may use of the registry: its directory and its shared checks."""

    directory: Any
    audit: Any

    def node(self, node_id: int) -> Any:
        """The node with ``node_id``, or a ``not_found`` refusal."""

    def authenticate(self, request: Request, kind: str, values: Mapping[str, Any],
                     signer_id: int, now: float) -> Any:
        """The signing node, after its signature over ``values`` (or the admin token) checked."""

    def check_fresh(self, public_key: str, request: Request, now: float) -> None:
        """Refuse a fresh-form signature that is stale, invalid over its fields, or seen before."""

    def is_admin(self, request: Request) -> bool:
        """Whether ``request`` carries the registry's admin token."""

    def require_admin(self, request: Request) -> None:
        """Refuse ``request`` unless it carries the registry's admin token."""

    def visible_to(self, target: Any, requester_id: int) -> bool:
        """May ``requester_id`` learn ``target``'s endpoint?"""


class RouteTable:
    """Every message the registry answers, each registered exactly once."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._routes: Dict[str, Route] = {}
        self.add_all(routes)

    def add_all(self, routes: Iterable[Route]) -> None:
        for route in routes:
            if route.kind in self._routes:
                raise ValueError(f"registry message {route.kind!r} registered twice")
            self._routes[route.kind] = route

    def get(self, kind: object) -> Optional[Route]:
        return self._routes.get(kind) if isinstance(kind, str) else None

    def replace(self, kind: str, handler: Handler) -> None:
        """Swap one handler, keeping its properties (tests make a handler fail this way)."""
        route = self._routes[kind]
        self._routes[kind] = Route(kind, handler, route.on_standby, route.admin_override)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes.values())

    def kinds(self) -> Tuple[str, ...]:
        return tuple(self._routes)

    def standby_kinds(self) -> frozenset:
        return frozenset(route.kind for route in self._routes.values() if route.on_standby)
