"""Following the other registries on the same PostgreSQL database.

Each registry answers reads from its own in-memory directory; this module
keeps that directory up to date with what the others commit:

* a listener thread holds one connection in ``LISTEN pilot_changes``; every
  commit's ``NOTIFY`` carries its change ID and wakes a catch-up at once;
* a catch-up reads ``pilot_changes`` after the last ID applied, in order, and
  applies each entity to the directory (the SQLite standby's
  ``(kind, key, value)`` changes, so the commit observers -- the dashboard --
  hear of them the same way); a poll every :data:`POLL_INTERVAL` catches up
  without notifications too (after a reconnect, or on databases without
  ``LISTEN``, such as CockroachDB);
* change IDs have no gaps (see :mod:`pilotnet.registry.pg_schema`), so a jump
  means the changes were pruned while this registry was away: it then reloads
  the whole state.

An entity this registry is still writing is not overwritten by the feed: its
own commit comes through the feed later with the value the database kept.
``last_seen`` never moves back (heartbeats reach only one registry).
"""

import threading

import psycopg
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pilotnet.registry.pg_store import read_changes, read_entity, read_snapshot, restore_known

POLL_INTERVAL = 1.0
NOTIFY_TIMEOUT = 1.0
RECONNECT_DELAY = 1.0
FETCH_LIMIT = 1000


class ChangeFollower:
    """Applies the changes other registries commit to this registry's directory."""

    log = Logger()

    def __init__(self, reactor, store, directory, observers) -> None:
        self._reactor = reactor
        self._store = store
        self._directory = directory
        self._observers = observers
        self._fetching = False
        self._again = False
        self._reload = False
        self._unknown_kinds: set = set()
        self._unreadable = False
        self._stopping = threading.Event()
        self._listener: threading.Thread | None = None
        self._poll = LoopingCall(self.catch_up)
        self._poll.clock = reactor
        store.follower = self

    def start(self) -> None:
        # An event per start: a listener of an earlier start may still be finishing.
        self._stopping = threading.Event()
        self._listener = threading.Thread(target=self._listen, args=(self._stopping,),
                                          name="registry-pg-listen", daemon=True)
        self._listener.start()
        self._poll.start(POLL_INTERVAL, now=True)

    def stop(self) -> None:
        self._stopping.set()
        if self._poll.running:
            self._poll.stop()

    # -- notifications (listener thread) -------------------------------------

    def _listen(self, stopping: threading.Event) -> None:
        lost = False
        while not stopping.is_set():
            try:
                with psycopg.connect(self._store.url, autocommit=True) as conn:
                    conn.execute("LISTEN pilot_changes")
                    if lost:
                        self.log.info("registry: change feed listener reconnected")
                    lost = False
                    # Changes committed while we were not listening.
                    self._reactor.callFromThread(self.catch_up)
                    while not stopping.is_set():
                        for _ in conn.notifies(timeout=NOTIFY_TIMEOUT):
                            self._reactor.callFromThread(self.catch_up)
                            break
            except psycopg.Error as error:
                if not lost:
                    self.log.warn("registry: change feed listener lost the database ({error}); "
                                  "reconnecting every {delay:g} s", error=error,
                                  delay=RECONNECT_DELAY)
                lost = True
                stopping.wait(RECONNECT_DELAY)

    # -- catching up (reactor thread) ------------------------------------------

    def catch_up(self) -> Deferred:
        """Fetch and apply what was committed after the last applied change."""
        if self._stopping.is_set():
            return succeed(None)
        if self._fetching:
            self._again = True
            return succeed(None)
        self._fetching = True
        if self._reload:
            work = self._store.run_reader(read_snapshot)
            work.addCallback(self._unless_stopped, self._replace)
        else:
            work = self._store.run_reader(read_changes, self._store.cursor, FETCH_LIMIT)
            work.addCallback(self._unless_stopped, self._apply_changes)
        return work.addErrback(self._failed).addBoth(self._fetched)

    def _unless_stopped(self, fetched, apply):
        """Apply what a read fetched, unless :meth:`stop` came meanwhile (the next start reads it again)."""
        if self._stopping.is_set():
            return None
        return apply(fetched)

    def _fetched(self, more) -> None:
        self._fetching = False
        if isinstance(more, Failure):  # a defect, not the database: the next poll tries again
            self.log.failure("registry: applying the change feed failed", more)
            return
        if more is not None and self._unreadable:
            self._unreadable = False
            self.log.info("registry: reading the change feed again")
        if more or self._again:
            self._again = False
            self.catch_up()

    def _failed(self, failure) -> None:
        """Log a feed that cannot be read; None tells :meth:`_fetched` it failed."""
        failure.trap(psycopg.Error)
        if not self._unreadable:  # once per outage, not once per poll
            self.log.warn("registry: cannot read the change feed ({error}); retrying every "
                          "{interval:g} s", error=failure.value, interval=POLL_INTERVAL)
        self._unreadable = True

    def reload_later(self) -> None:
        """Whether a failed transaction committed is unknown: reload everything next time."""
        self._reload = True

    def _apply_changes(self, changes) -> bool:
        """Apply fetched changes in order; True when more may be waiting."""
        store = self._store
        for change_id, origin, entities in changes:
            if change_id <= store.cursor:
                continue  # already applied by a concurrent settle
            if change_id != store.cursor + 1:
                self.log.warn("registry: changes {first}..{last} were pruned while we were away; "
                              "reloading the whole state", first=store.cursor + 1,
                              last=change_id - 1)
                self._reload = True
                return True
            applied = [entity for entity in entities if self._apply(*entity)]
            store.cursor = change_id
            if origin != store.origin and applied:
                self._notify(applied)
        return len(changes) == FETCH_LIMIT

    def _apply(self, kind: str, key: str, value) -> bool:
        """Put one entity in place unless this registry is still writing it."""
        if self._store.in_flight[kind, key]:
            return False
        self._store.learn_version(kind, key, value)
        if kind == "node" and value is not None:
            known = self._directory.nodes.get(int(key))
            if known is not None and known.last_seen > value["last_seen"]:
                value = dict(value, last_seen=known.last_seen)
        try:
            self._directory.apply(kind, key, value)
        except ValueError:
            # A kind a newer registry on the same database writes: not ours to show.
            if kind not in self._unknown_kinds:
                self._unknown_kinds.add(kind)
                self.log.warn("registry: ignoring entity kind {kind!r} from the change feed "
                              "(written by a newer registry?)", kind=kind)
            return False
        self._store.remember(kind, key, value)
        return True

    def _notify(self, changes) -> None:
        for observer in self._observers:
            observer(changes)

    def _replace(self, snapshot) -> bool:
        cursor, entities = snapshot
        directory = self._directory
        seen = {node_id: node.last_seen for node_id, node in directory.nodes.items()}
        directory.replace(())
        self._store.learn_versions(entities)
        entities = restore_known(directory, entities)
        for node_id, node in directory.nodes.items():
            node.last_seen = max(node.last_seen, seen.get(node_id, 0.0))
        self._store.shadow.clear()
        for kind, key, value in entities:
            self._store.remember(kind, key, value)
        self._store.cursor = cursor
        self._reload = False
        gone = [("node", str(node_id), None) for node_id in seen if node_id not in directory.nodes]
        self._notify(entities + gone)
        self.log.info("registry: reloaded {count} entities from the database", count=len(entities))
        return True

    def settle(self, keys) -> Deferred:
        """After a lost race: catch up, then take the database's values of ``keys``."""
        def read(conn):
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                changes = read_changes(conn, self._store.cursor, FETCH_LIMIT)
                return changes, [(kind, key, read_entity(conn, kind, key)) for kind, key in keys]

        def apply(result):
            changes, entities = result
            self._apply_changes(changes)
            for kind, key, value in entities:
                if kind != "counter":
                    self._apply(kind, key, value)
            self.catch_up()

        return self._store.run_reader(read).addCallback(apply)
