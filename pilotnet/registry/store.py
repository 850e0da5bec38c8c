"""Durable registry state in SQLite (stdlib ``sqlite3``, WAL journal).

One table of ``(kind, key) -> JSON`` entities mirrors the :class:`Directory`
(see its docstring for the kinds).  The shell writes the entities a request
changed in one transaction *before* it sends the reply, so whatever a client
saw acknowledged survives ``kill -9``: in WAL mode with ``synchronous=NORMAL``
a committed transaction is in the WAL file when ``commit()`` returns, which a
process crash cannot undo (only an operating-system crash or power loss can
lose the last commits; ``durable=True`` adds an fsync per commit for that).

Heartbeats only move ``last_seen``; those are written by the periodic
:meth:`RegistryStore.write` of :meth:`Directory.take_seen`, so after a crash a
node's ``last_seen`` may lag by one flush interval.
"""

import json
import os
import sqlite3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    kind  TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID
"""


class RegistryStore:
    """The SQLite file behind one registry."""

    def __init__(self, path, *, durable=False):
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute(_SCHEMA)

    def load_into(self, directory):
        """Restore every stored entity into ``directory``; returns how many."""
        count = 0
        for kind, key, value in self._db.execute("SELECT kind, key, value FROM entities"):
            directory.restore(kind, key, json.loads(value))
            count += 1
        return count

    def count(self):
        """How many entities are stored (0 for a new store)."""
        return self._db.execute("SELECT COUNT(*) FROM entities").fetchone()[0]

    def write(self, changes):
        """Apply ``(kind, key, value or None)`` changes in one transaction."""
        if changes:
            self._transaction(changes, replace=False)

    def replace_all(self, entities):
        """Make ``entities`` the whole stored state, in one transaction."""
        self._transaction(entities, replace=True)

    def _transaction(self, changes, replace):
        upserts = [(kind, key, json.dumps(value, separators=(",", ":")))
                   for kind, key, value in changes if value is not None]
        deletes = [(kind, key) for kind, key, value in changes if value is None]
        db = self._db
        db.execute("BEGIN")
        try:
            if replace:
                db.execute("DELETE FROM entities")
            if upserts:
                db.executemany("INSERT OR REPLACE INTO entities (kind, key, value) "
                               "VALUES (?, ?, ?)", upserts)
            if deletes:
                db.executemany("DELETE FROM entities WHERE kind = ? AND key = ?", deletes)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self):
        self._db.close()
