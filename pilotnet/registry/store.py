"""Durable registry state in SQLite (stdlib ``sqlite3``, WAL journal).

One table of ``(kind, key) -> JSON`` entities mirrors the :class:`Directory`
(see its docstring for the kinds).  The shell writes the entities a request
changed in one transaction *before* it sends the reply, so whatever a client
saw acknowledged survives ``kill -9``: in WAL mode with ``synchronous=NORMAL``
a committed transaction is in the WAL file when ``commit()`` returns, which a
process crash cannot undo (only an operating-system crash or power loss can
lose the last commits; ``durable=True`` adds an fsync per commit for that).

Heartbeats only move ``last_seen``; those are written by the periodic
:meth:`RegistryStore.commit` of :meth:`Directory.seen_changes`, so after a crash a
node's ``last_seen`` may lag by one flush interval.

A commit (and the WAL checkpoint SQLite runs inside one) can take tens of
milliseconds, so a serving registry does no database work on the reactor:
after :meth:`RegistryStore.use_thread` every :meth:`~RegistryStore.commit` runs
in one writer thread, and the changes of requests that arrive while a commit is
running are written together in the next transaction (group commit).  The
returned Deferreds fire on the reactor in submission order, which is the order
the changes happened in memory.  Without a thread (tests, snapshot import) the
same code runs inline.
"""

import json
import os
import sqlite3
from collections import deque

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pilotnet.interfaces import IRegistryStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    kind  TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID
"""


_NODES = "SELECT kind, key, value FROM entities WHERE kind = 'node'"
# A key's value is a node ID: SQLite reads the number itself (one JSON decode less per node).
_NOT_NODES = ("SELECT kind, key, CASE kind WHEN 'key' THEN CAST(value AS INTEGER) ELSE value END "
              "FROM entities WHERE kind <> 'node'")
_DECODER = json.JSONDecoder()
# Commits acknowledged per reactor turn once the writer thread is used: each
# runs its request's reply chain (tens of µs), and one transaction may carry
# a thousand of them, tens of milliseconds in which no heartbeat is answered.
ACKNOWLEDGED_PER_TURN = 64

# SQLite's companions of the database file (it creates them with the file's mode).
_COMPANIONS = ("", "-wal", "-shm", "-journal")


def _owner_only(path):
    """Create ``path`` readable by its owner only, and tighten it and its companions if they exist.

    The store holds network join tokens and who trusts whom; a registry
    started under a permissive umask (or by an older version) must not leave
    them readable by other local users.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(descriptor)
    for suffix in _COMPANIONS:
        try:
            os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass


@implementer(IRegistryStore)
class RegistryStore:
    """The SQLite file behind one registry."""

    #: One registry per file: its replay cache alone sees every request.
    shares_replays = False

    def __init__(self, path, *, durable=False, run=maybeDeferred, call_later=None):
        """``run(work)`` is where commits execute, returning a Deferred of
        ``work()``: inline by default, the writer thread after :meth:`use_thread`
        (tests inject one that runs when they say).  ``call_later`` is the
        reactor's (set by :meth:`use_thread`): with it, committed changes are
        acknowledged :data:`ACKNOWLEDGED_PER_TURN` per reactor turn."""
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _owner_only(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute(_SCHEMA)
        self._run = run
        self._pool = None
        self._queue = []  # [(changes, replace, deferred)] waiting for the running commit
        self._busy = False
        # (deferred, result) of committed transactions, fired in order a slice per turn.
        self._committed = deque()
        self._call_later = call_later

    def use_thread(self, reactor):
        """Run commits from now on in a single writer thread owned by this store.

        One thread keeps transactions in order and SQLite single-writer; the
        synchronous methods must not be used after this (they would race it).
        """
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="registry-store")
        self._pool.start()
        self._run = lambda work: deferToThreadPool(reactor, self._pool, work)
        self._call_later = reactor.callLater

    def commit(self, changes):
        """Store ``(kind, key, value or None)`` changes; a Deferred that fires once committed."""
        return self._submit(changes, replace=False)

    # One writer: heartbeats' last-seen times go through the same group commit.
    commit_seen = commit

    def commit_replace(self, entities):
        """Make ``entities`` the whole stored state, after every earlier commit."""
        return self._submit(entities, replace=True)

    def _submit(self, changes, replace):
        done = Deferred()
        self._queue.append((changes, replace, done))
        if not self._busy:
            self._next()
        return done

    def _next(self):
        """Write everything queued in one transaction; then fire its Deferreds, in order."""
        if not self._queue:
            self._busy = False
            return
        self._busy = True
        batch, self._queue = self._queue, []
        merged, replace = {}, False
        for changes, whole, _ in batch:
            if whole:
                merged, replace = {}, True
            for kind, key, value in changes:
                merged[kind, key] = value  # the latest value of an entity wins
        rows = [(kind, key, value) for (kind, key), value in merged.items()]

        def finished(result):
            firing = bool(self._committed)
            self._committed.extend((done, result) for _, _, done in batch)
            if not firing:
                self._acknowledge()
            self._next()

        self._run(lambda: self._transaction(rows, replace)).addBoth(finished)

    def _acknowledge(self):
        """Fire the Deferreds of committed changes, in commit order; a slice per reactor turn."""
        committed = self._committed
        # Without the writer thread (tests, tools) everything at once.
        left = ACKNOWLEDGED_PER_TURN if self._call_later is not None else float("inf")
        while committed and left:
            done, result = committed[0]
            left -= 1
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(None)
            # Taken off only now: a commit finishing meanwhile must not start a second slicer.
            committed.popleft()
        if committed:
            self._call_later(0, self._acknowledge)

    def shutdown(self):
        """Commit what is queued, then close the file and stop the writer thread."""
        if not self._busy:
            return maybeDeferred(self._close)
        return self._submit([], replace=False).addBoth(lambda _: self._close())

    def _close(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
        self.close()
        return succeed(None)

    def load_into(self, directory, others=None):
        """Restore every stored entity into ``directory``; returns how many.

        ``others`` maps the kinds kept beside the directory (the audit log's) to what restores them.
        """
        count = 0
        # Our own compact JSON, one value per row: the C scanner alone, without
        # json.loads' wrapper and whitespace checks (a third of the load time).
        decode = _DECODER.raw_decode
        # Nodes first: the entities naming them then share their strings (Directory.restore).
        for query in (_NODES, _NOT_NODES):
            for kind, key, value in self._db.execute(query):
                restore = others.get(kind, directory.restore) if others else directory.restore
                restore(kind, key, decode(value)[0] if isinstance(value, str) else value)
                count += 1
        return count

    def entities(self):
        """Every stored entity as ``(kind, key, value)`` (to move the state to another store)."""
        return [(kind, key, json.loads(value))
                for kind, key, value in self._db.execute("SELECT kind, key, value FROM entities")]

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
