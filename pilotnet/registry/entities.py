"""State a registry concern keeps beside the directory, stored and replicated with it.

The directory's entities (nodes, keys, networks, ...) are not the only state
a registry must keep: the audit log, node identities and provisioning records
belong to their own concerns.  A concern's state is an :class:`EntityPart`:
entities of the concern's own kinds, with the same ``(kind, key, value or
None)`` changes the directory records.  Attached to the directory
(:meth:`~pilotnet.registry.directory.Directory.attach`), a part travels with
it: its changes are written to the store with the request that made them,
standbys get its entities in the snapshot and its changes in the stream, and
a restart restores them.  Nothing here does I/O.
"""

from typing import Any, Protocol

Change = tuple[str, str, Any]


class EntityPart(Protocol):
    """What the directory asks of an attached part."""

    #: The entity kinds the part owns (no two parts, and not the directory, share one).
    kinds: tuple[str, ...]

    def take_changes(self) -> list[Change]:
        """The part's entities changed since the last call, ``None`` for deleted."""

    def entities(self) -> list[Change]:
        """Every entity of the part: its share of a full snapshot."""

    def restore(self, kind: str, key: str, value: Any) -> None:
        """Put back one stored entity (records no change)."""

    def apply(self, kind: str, key: str, value: Any) -> None:
        """Put one replicated change in place, ``None`` deleting (records no change)."""

    def clear(self) -> None:
        """Forget everything (a standby is about to take a snapshot)."""


class KeyedEntities:
    """``kind -> key -> JSON value`` with change tracking: the plain :class:`EntityPart`.

    Values are JSON-ready dictionaries the owner treats as immutable: to change
    one, :meth:`put` a new one.
    """

    def __init__(self, *kinds: str) -> None:
        self.kinds = kinds
        self._values: dict[str, dict[str, Any]] = {kind: {} for kind in kinds}
        self._dirty: dict[tuple[str, str], None] = {}

    def get(self, kind: str, key: str, default: Any = None) -> Any:
        return self._values[kind].get(key, default)

    def items(self, kind: str) -> dict[str, Any]:
        """The entities of one kind (read only: change them through :meth:`put`)."""
        return self._values[kind]

    def put(self, kind: str, key: str, value: Any) -> None:
        self._values[kind][key] = value
        self._dirty[kind, key] = None

    def delete(self, kind: str, key: str) -> None:
        if self._values[kind].pop(key, None) is not None:
            self._dirty[kind, key] = None

    def take_changes(self) -> list[Change]:
        if not self._dirty:
            return []
        changes = [(kind, key, self._values[kind].get(key)) for kind, key in self._dirty]
        self._dirty.clear()
        return changes

    def entities(self) -> list[Change]:
        return [(kind, key, value) for kind, values in self._values.items() for key, value in values.items()]

    def restore(self, kind: str, key: str, value: Any) -> None:
        self._values[kind][key] = value

    def apply(self, kind: str, key: str, value: Any) -> None:
        if value is None:
            self._values[kind].pop(key, None)
        else:
            self._values[kind][key] = value

    def clear(self) -> None:
        for values in self._values.values():
            values.clear()
        self._dirty.clear()
