"""Durable registry state in PostgreSQL, shared by several registries that all accept writes.

The same contract as the SQLite store (:class:`pilotnet.interfaces.IRegistryStore`):
the shell hands over the entities a request changed and replies once the
returned Deferred fires, i.e. once they are committed.  What changes with
several writers:

* **Uniqueness is the database's.**  Each request's changes are written in a
  savepoint of the group transaction; a hostname, key, owner or network name
  another registry took first fails that savepoint only, and the request's
  Deferred fails with :class:`StoreConflict`.  Its ``settled`` Deferred fires
  once this registry's directory holds the database's truth for everything
  the request touched (the winner's change included), so the shell can handle
  the request again and answer what the reference answers.
* **Merged, not overwritten.**  Handshake inboxes and network memberships are
  written as the rows this registry added or removed since it last knew the
  entity (its *shadow*, kept on the reactor thread), so a request relayed
  through another registry in the meantime is not lost.
* **No lost update of a node record.**  Each row of ``pilot_nodes`` carries a
  version (a random token each write sets); a registry writes a node only
  where the row still has the version it last knew (from loading, the feed,
  or its own previous write).  A write based on a record another registry
  changed meanwhile fails like a lost race: the directory takes the
  database's record and the request is handled again on it, so ``set_tags``
  on one registry and a polo score change on another both last.
  ``last_seen`` only ever moves forward.  Other entities are last-writer-wins
  per entity.
* **Every transaction is a change** in ``pilot_changes``, announced with
  ``NOTIFY`` (see :mod:`pilotnet.registry.pg_feed`, which applies the others'
  changes to the directory).
* **One use of a signature across registries.**  The nonce of each fresh-signed
  request is written (``pilot_nonces``, keyed by signer and nonce) in the
  request's own savepoint: a request replayed to another registry fails there
  on the key, and its Deferred fails with :class:`ReplayedElsewhere` once the
  directory is back to the database's values.  Rows outlive the signature
  window only until the reaper prunes them (:mod:`pilotnet.registry.scaleout`).
* **Heartbeats are soft state**: :meth:`commit_seen` writes only ``last_seen``,
  batched, and no change.

Database work runs in threads, never on the reactor: commits in one writer
thread (group commit, Deferreds fired in submission order, like SQLite), reads
and batches in a small second pool; connections come from a psycopg_pool
``ConnectionPool``.  docs/scale-out.md says why threads and not psycopg's
asyncio API.
"""

import json
import secrets
import uuid
from collections import Counter, deque
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg_pool import ConnectionPool
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pilotnet.errors import ALREADY_EXISTS, CONNECTION_FAILED, PilotError
from pilotnet.interfaces import IRegistryStore
from pilotnet.registry import pg_schema as schema
from pilotnet.registry.races import ReplayedElsewhere, StoreConflict
from pilotnet.registry.requests import RequestError

# Connections one registry holds at most: the writer, the readers, the feed's listener.
POOL_SIZE = 4
READER_THREADS = 3
# Node ID blocks kept in hand at first, and at most (after bursts emptied them).
INITIAL_RESERVE_BLOCKS = 4
MAX_RESERVE_BLOCKS = 64
# Node IDs are 32 bits on the wire (all ones is reserved), network IDs 16.
MAX_NODE_ID = 0xFFFFFFFE
MAX_NETWORK_ID = 0xFFFF


class _Conflict(Exception):
    """Raised inside a savepoint to roll one request's writes back."""


# A request's outcome in a batch (besides True, committed, and False, a unique value taken).
_REPLAYED = "replayed"


class IdBlocks:
    """Node and network IDs from the database's sequences, fetched ahead of need.

    The handlers allocate IDs synchronously, so each registry keeps IDs in
    hand: blocks of node IDs (one ``nextval`` reserves
    :data:`~pg_schema.NODE_ID_BLOCK`) and a network ID or two, and fetches more
    before it runs out.  How many node blocks it keeps grows (doubling, up to
    :data:`MAX_RESERVE_BLOCKS`) each time a burst of registrations empties
    them, so a busy registry stops running dry.  IDs in hand when a registry
    stops are never used: the space is 2^32.
    """

    log = Logger()

    def __init__(self, fetch) -> None:
        self._fetch = fetch  # (sequence, count) -> Deferred of a list of next values
        self._nodes: deque = deque()
        self._networks: deque = deque()
        self._events: Iterator[int] = iter(())
        self._reserve_blocks = INITIAL_RESERVE_BLOCKS
        self._refilling: set = set()

    def prime(self, node_starts, network_ids, event_start: int) -> None:
        for start in node_starts:
            self._nodes.extend(range(start, start + schema.NODE_ID_BLOCK))
        self._networks.extend(network_ids)
        self._events = iter(range(event_start, event_start + schema.EVENT_ID_BLOCK))

    def event_id(self) -> int:
        """An audit event ID of this registry's block (never runs dry: one block is 2^32 events)."""
        return next(self._events)

    def node_id(self) -> int:
        if not self._nodes:
            self._reserve_blocks = min(MAX_RESERVE_BLOCKS, self._reserve_blocks * 2)
        wanted = self._reserve_blocks - len(self._nodes) // schema.NODE_ID_BLOCK
        if wanted > self._reserve_blocks // 2:
            self._refill("pilot_node_ids", self._nodes, wanted, schema.NODE_ID_BLOCK)
        node_id = self._take(self._nodes, "node")
        if node_id > MAX_NODE_ID:
            raise RequestError("node ID space exhausted")
        return node_id

    def network_id(self) -> int:
        if len(self._networks) < 2:
            self._refill("pilot_network_ids", self._networks, 1, 1)
        network_id = self._take(self._networks, "network")
        if network_id > MAX_NETWORK_ID:
            raise RequestError("network ID space exhausted")
        return network_id

    def _take(self, pool: deque, what: str) -> int:
        if not pool:
            raise RequestError(f"the registry is fetching {what} IDs from its database; retry",
                               hint="this clears within a moment unless the database is down")
        return pool.popleft()

    def _refill(self, sequence: str, pool: deque, count: int, size: int) -> None:
        if sequence in self._refilling:
            return
        self._refilling.add(sequence)

        def got(starts):
            self._refilling.discard(sequence)
            for start in starts:
                pool.extend(range(start, start + size))

        def failed(failure):
            self._refilling.discard(sequence)
            self.log.failure("registry: could not fetch IDs from {sequence}", failure,
                             sequence=sequence)

        self._fetch(sequence, count).addCallbacks(got, failed)


def next_values(conn, sequence: str, count: int) -> list:
    """``count`` values of ``sequence`` (one of the schema's, never user input)."""
    return [value for (value,) in conn.execute(
        f"SELECT nextval('{sequence}') FROM generate_series(1, %s)", (count,))]


@implementer(IRegistryStore)
class PostgresStore:
    """The PostgreSQL database behind one of several registries."""

    log = Logger()
    shares_replays = True

    def __init__(self, url: str) -> None:
        self.url = url
        # Identifies this process's changes in the feed (a restart is a new origin).
        self.origin = uuid.uuid4().hex
        self.cursor = 0  # the last change applied to the directory
        # Opened with the threads (use_thread): twistd may fork after building the service.
        self._pool: ConnectionPool | None = None
        self._reactor: Any = None  # the reactor of use_thread, with the threads
        self._writer: ThreadPool | None = None
        self._readers: ThreadPool | None = None
        self._queue: list = []  # [(ops, deferred)] waiting for the running transaction
        self._busy = False
        # Entities with a write on its way: the feed must not overwrite them meanwhile.
        self.in_flight: Counter = Counter()
        # What this registry last knew of each inbox and network membership (see the module doc).
        self.shadow: dict = {}
        # The version of each node row this registry last knew or wrote (see the module doc).
        self.node_versions: dict[int, int] = {}
        self.ids = IdBlocks(self._next_values)
        # The pg_feed.ChangeFollower applying the others' changes, once started.
        self.follower = None

    # -- start-up (blocking, before the reactor runs) -------------------------

    @contextmanager
    def _connection(self):
        """A pooled connection, or a connection of its own before the pool is open."""
        if self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
        else:
            with psycopg.connect(self.url, autocommit=True) as conn:
                yield conn

    @staticmethod
    def _create_schema(conn) -> None:
        for attempt in range(3):
            try:
                with conn.transaction():
                    for statement in schema.SCHEMA:
                        conn.execute(statement)
                return
            except psycopg.errors.UniqueViolation:
                # Two registries creating the schema at once: the other one won; look again.
                if attempt == 2:
                    raise

    def load_into(self, directory, others=None) -> int:
        """Create the tables if needed, restore every entity into ``directory``, remember
        where the feed stands; how many.

        ``others`` maps the kinds kept beside the directory (the audit log's) to what restores them.
        """
        try:
            with self._connection() as conn:
                self._create_schema(conn)
                self.cursor, entities = read_snapshot(conn)
                self.learn_versions(entities)
                node_starts = next_values(conn, "pilot_node_ids", INITIAL_RESERVE_BLOCKS)
                network_ids = next_values(conn, "pilot_network_ids", 2)
                [event_start] = next_values(conn, "pilot_audit_event_ids", 1)
        except psycopg.OperationalError as error:
            raise PilotError(f"cannot use the PostgreSQL store: {error}".strip(),
                             code=CONNECTION_FAILED,
                             hint="check that the database server runs and the --store URL "
                                  "(and PGPASSWORD or ~/.pgpass) are right") from None
        for kind, key, value in restore_known(directory, entities, others):
            self.remember(kind, key, value)
        self.ids.prime(node_starts, network_ids, event_start)
        directory.ids = self.ids
        return len(entities)

    def count(self) -> int:
        """How many nodes the database holds (0 for a new one, whose tables are then made)."""
        try:
            with self._connection() as conn:
                self._create_schema(conn)
                return conn.execute("SELECT count(*) FROM pilot_nodes").fetchone()[0]
        except psycopg.Error as error:
            raise PilotError(f"cannot use the PostgreSQL store: {error}".strip(),
                             code=CONNECTION_FAILED,
                             hint="check that the database server runs and the --store URL is right") from None

    # -- threads -------------------------------------------------------------

    def use_thread(self, reactor) -> None:
        """Run commits in one writer thread, reads in a small pool, from now on."""
        self._reactor = reactor
        self._pool = ConnectionPool(self.url, min_size=1, max_size=POOL_SIZE, open=True,
                                    check=ConnectionPool.check_connection,
                                    kwargs={"autocommit": True}, name="pilot-registry")
        self._writer = ThreadPool(minthreads=1, maxthreads=1, name="registry-pg-writer")
        self._readers = ThreadPool(minthreads=1, maxthreads=READER_THREADS,
                                   name="registry-pg-readers")
        self._writer.start()
        self._readers.start()

    def run_reader(self, work, *args) -> Deferred:
        """``work(connection, *args)`` in a reader thread with a pooled connection."""
        def with_connection():
            with self._connection() as conn:
                return work(conn, *args)
        if self._readers is None:  # before use_thread (tests, tools): inline
            return maybeDeferred(with_connection)
        return deferToThreadPool(self._reactor, self._readers, with_connection)

    def _next_values(self, sequence: str, count: int) -> Deferred:
        return self.run_reader(next_values, sequence, count)

    # -- shadows of merged entities, versions of nodes (reactor thread) ----------

    def learn_version(self, kind: str, key: str, value) -> None:
        """Take a node entity's row version out of ``value`` (in place) and remember it."""
        if kind == "node" and value is not None and schema.VERSION in value:
            self.node_versions[int(key)] = value.pop(schema.VERSION)

    def learn_versions(self, entities) -> None:
        for kind, key, value in entities:
            self.learn_version(kind, key, value)

    def remember(self, kind: str, key: str, value) -> None:
        """Note ``value`` as this registry's last knowledge of a merged entity."""
        if kind == "inbox":
            self.shadow[kind, key] = schema.inbox_items(value)
        elif kind == "network":
            self.shadow[kind, key] = set(value["members"]) if value is not None else set()

    def _operations(self, changes) -> list:
        """The writes for ``changes``: whole values, or the rows added and removed for merged kinds."""
        ops: list[tuple] = []
        for kind, key, value in changes:
            if kind == "counter":
                continue  # IDs come from the database's sequences
            if kind == "nonce":
                ops.append((kind, key, value))
                continue
            if kind == "node":
                node_id = int(key)
                expected = self.node_versions.pop(node_id, None)
                if value is not None:
                    self.node_versions[node_id] = secrets.randbits(62) + 1
                ops.append((kind, key, value, expected, self.node_versions.get(node_id)))
                continue
            if kind == "inbox":
                before = self.shadow.get((kind, key), {})
                after = schema.inbox_items(value)
                ops.append((kind, key, [(item, added) for item, added in after.items()
                                        if item not in before],
                            [item for item in before if item not in after]))
            elif kind == "network":
                members_before = self.shadow.get((kind, key), set())
                members_after = set(value["members"]) if value is not None else set()
                ops.append((kind, key, value, sorted(members_after - members_before),
                            sorted(members_before - members_after)))
            else:
                ops.append((kind, key, value))
            self.remember(kind, key, value)
        return ops

    # -- commits -------------------------------------------------------------

    def commit(self, changes) -> Deferred:
        """Store one request's ``(kind, key, value or None)`` changes; fires once committed."""
        done: Deferred[None] = Deferred()
        keys = [(kind, key) for kind, key, _ in changes]
        self.in_flight.update(keys)
        self._queue.append((self._operations(changes), keys, done))
        if not self._busy:
            self._next()
        return done

    def commit_replace(self, entities):
        raise NotImplementedError("a registry on PostgreSQL cannot be a standby")

    def _next(self) -> None:
        if not self._queue:
            self._busy = False
            return
        self._busy = True
        batch, self._queue = self._queue, []
        work = [ops for ops, _, _ in batch]

        def finished(result):
            for index, (_, keys, done) in enumerate(batch):
                self.in_flight.subtract(keys)
                if isinstance(result, Failure):
                    self._unsure(keys)
                    done.errback(result)
                elif result[index] == _REPLAYED:
                    done.errback(ReplayedElsewhere(self._settle(keys)))
                elif result[index]:
                    done.callback(None)
                else:
                    done.errback(StoreConflict(self._settle(keys)))
            self.in_flight += Counter()  # drop the zero counts
            self._next()

        self._run_write(lambda: self._transaction(work)).addBoth(finished)

    def _run_write(self, work) -> Deferred:
        if self._writer is None:  # before use_thread (tests, tools): inline
            return maybeDeferred(work)
        return deferToThreadPool(self._reactor, self._writer, work)

    def _transaction(self, work) -> list:
        """Write a batch of requests; True per request that committed.

        First all together, pipelined (no round trip per statement); if any
        request lost a race, again with each request in a savepoint of its own,
        so that only the losers are refused.
        """
        with self._connection() as conn:
            try:
                with conn.transaction(), conn.pipeline():
                    claims: list = []
                    entries = [_write(conn, op, claims) for ops in work for op in ops]
                    _verify(conn, claims)
                    self._log_change(conn, entries)
                return [True] * len(work)
            except (_Conflict, psycopg.errors.UniqueViolation):
                pass
            outcomes, entries = [], []
            with conn.transaction():
                for ops in work:
                    try:
                        with conn.transaction():
                            claims = []
                            written = [_write(conn, op, claims) for op in ops]
                            _verify(conn, claims)
                    except psycopg.errors.UniqueViolation as error:
                        outcomes.append(_REPLAYED if error.diag.table_name == "pilot_nonces" else False)
                        continue
                    except _Conflict:
                        outcomes.append(False)
                        continue
                    outcomes.append(True)
                    entries.extend(written)
                self._log_change(conn, entries)
        return outcomes

    def _log_change(self, conn, entries) -> None:
        """The batch's entities as the next change of the feed, announced at commit."""
        entries = [entry for entry in entries if entry is not None]
        if not entries:
            return
        change_id = conn.execute(
            "UPDATE pilot_feed_position SET last_change = last_change + 1 "
            "WHERE singleton = 1 RETURNING last_change").fetchone()[0]
        conn.execute("INSERT INTO pilot_changes (id, origin, entities) VALUES (%s, %s, %s)",
                     (change_id, self.origin, schema.compact(entries)))
        conn.execute("SELECT pg_notify('pilot_changes', %s)", (str(change_id),))

    def _settle(self, keys) -> Deferred:
        """Bring the directory to the database's truth for ``keys`` (after a lost race)."""
        if self.follower is None:
            return succeed(None)
        return self.follower.settle([(kind, key) for kind, key in keys if kind != "nonce"])

    def _unsure(self, keys) -> None:
        """A transaction failed: whether it committed is unknown; reload once the database answers."""
        if self.follower is not None:
            self.follower.reload_later()

    def commit_seen(self, changes) -> Deferred:
        """Write the ``last_seen`` heartbeats moved, in one statement; no change in the feed."""
        seen = [(value["id"], value["last_seen"]) for kind, _, value in changes
                if kind == "node" and value is not None]
        if not seen:
            return succeed(None)
        ids, times = zip(*seen)
        return self.run_reader(_write_seen, list(ids), list(times))

    def shutdown(self) -> Deferred:
        """Commit what is queued, then stop the threads and close the pool."""
        if not self._busy:
            self._close()
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._queue.append(([], [], done))
        return done.addBoth(lambda _: self._close())

    def _close(self) -> None:
        for pool in (self._writer, self._readers):
            if pool is not None:
                pool.stop()
        self._writer = self._readers = None
        self.close()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def write(self, changes):
        raise NotImplementedError("use commit() on a PostgreSQL store")

    def replace_all(self, entities) -> None:
        """Fill a new, empty database with ``entities`` (an import), in one transaction.

        Blocking, before the registry serves (no other registry may use the
        database yet).  The sequences continue after the highest imported IDs.
        """
        entities = list(entities)
        counters = {key: value for kind, key, value in entities if kind == "counter"}
        next_node = max([counters.get("next_node", 1)] +
                        [int(key) + 1 for kind, key, value in entities if kind == "node"])
        next_network = max([counters.get("next_net", 1)] +
                           [int(key) + 1 for kind, key, value in entities if kind == "network"])
        try:
            self._fill(entities, next_node, next_network)
        except psycopg.Error as error:
            raise PilotError(f"cannot import into the PostgreSQL store: {error}".strip(),
                             code=CONNECTION_FAILED,
                             hint="check that the database server runs and the --store URL is right; "
                                  "nothing was imported") from None

    def _fill(self, entities, next_node: int, next_network: int) -> None:
        with self._connection() as conn:
            self._create_schema(conn)
            with conn.transaction():
                used = conn.execute("SELECT EXISTS (SELECT 1 FROM pilot_nodes) OR "
                                    "(SELECT last_change FROM pilot_feed_position) > 0").fetchone()[0]
                if used:
                    raise PilotError("the PostgreSQL database already holds registry state",
                                     code=ALREADY_EXISTS,
                                     hint="import into a new database (createdb), or drop the import "
                                          "option (it was probably imported already)")
                with conn.pipeline():
                    claims: list = []
                    for op in self._operations(entities):
                        _write(conn, op, claims)
                    _verify(conn, claims)
                conn.execute("SELECT setval('pilot_node_ids', %s, false)", (next_node,))
                conn.execute("SELECT setval('pilot_network_ids', %s, false)", (next_network,))


def restore_known(directory, entities, others=None) -> list:
    """Restore ``entities`` into ``directory`` (kinds in ``others`` through their own restorer);
    those of kinds it does not know are left out.

    A newer registry on the same database may write kinds this one has no
    use for; they must not stop it from starting.
    """
    restored = []
    for kind, key, value in entities:
        restore = others.get(kind, directory.restore) if others else directory.restore
        try:
            restore(kind, key, value)
        except ValueError:
            continue
        restored.append((kind, key, value))
    return restored


def _write_seen(conn, ids: list, times: list) -> None:
    conn.execute(
        "UPDATE pilot_nodes AS n SET last_seen = s.seen "
        "FROM unnest(%s::BIGINT[], %s::DOUBLE PRECISION[]) AS s(id, seen) "
        "WHERE n.id = s.id AND n.last_seen < s.seen", (ids, times))


_CLAIMED = {"key": ("pilot_keys", "public_key"), "owner": ("pilot_owners", "owner")}


def _verify(conn, claims) -> None:
    """Raise :class:`_Conflict` if a key or owner claimed here is held by another node, or a
    node written here was changed by another registry since this one knew it.

    One query per kind after the writes (rather than a row count per statement)
    keeps the writes pipelined.
    """
    versions = [(node_id, version) for claimed, node_id, version in claims if claimed == "version"]
    if versions:
        nodes, written = zip(*versions)
        ours = conn.execute(
            "SELECT count(*) FROM pilot_nodes AS t, unnest(%s::BIGINT[], %s::BIGINT[]) AS c(n, v) "
            "WHERE t.id = c.n AND t.version = c.v", (list(nodes), list(written))).fetchone()[0]
        if ours != len(versions):
            raise _Conflict("node")
    for kind, (table, column) in _CLAIMED.items():
        mine = [(key, node_id) for claimed, key, node_id in claims if claimed == kind]
        if not mine:
            continue
        keys, nodes = zip(*mine)
        taken = conn.execute(
            f"SELECT count(*) FROM {table} AS t, unnest(%s::TEXT[], %s::BIGINT[]) AS c(k, n) "
            f"WHERE t.{column} = c.k AND t.node_id <> c.n", (list(keys), list(nodes))).fetchone()[0]
        if taken:
            raise _Conflict(kind)


def _write(conn, op, claims: list) -> tuple | None:
    """Apply one operation, noting key and owner claims; the ``(kind, key, value)`` the feed carries.

    None for a nonce: other registries need not hear of it (the key refuses its reuse).
    """
    kind, key = op[0], op[1]
    if kind == "nonce":
        signer, nonce = key.split(" ", 1)
        conn.execute("INSERT INTO pilot_nonces (signer, nonce, expires) VALUES (%s, %s, %s)",
                     (signer, nonce, op[2]))
        return None
    if kind == "node":
        _, _, value, expected, version = op
        if value is None:
            conn.execute("DELETE FROM pilot_nodes WHERE id = %s", (int(key),))
            return kind, key, value
        # Written only over the version this registry knew (none: a new node); _verify checks.
        conn.execute(
            "INSERT INTO pilot_nodes (id, public_key, hostname, owner, polo_score, last_seen, "
            "attributes, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
            "SET public_key = excluded.public_key, hostname = excluded.hostname, "
            "owner = excluded.owner, polo_score = excluded.polo_score, "
            "last_seen = GREATEST(pilot_nodes.last_seen, excluded.last_seen), "
            "attributes = excluded.attributes, version = excluded.version "
            "WHERE pilot_nodes.version = %s",
            schema.node_row(value) + (version, -1 if expected is None else expected))
        claims.append(("version", int(key), version))
        return kind, key, dict(value, **{schema.VERSION: version})
    if kind in ("key", "owner"):
        table, column = _CLAIMED[kind]
        value = op[2]
        if value is None:
            conn.execute(f"DELETE FROM {table} WHERE {column} = %s", (key,))
        else:
            # Held by another node already: left alone here, refused by _verify.
            conn.execute(
                f"INSERT INTO {table} ({column}, node_id) VALUES (%s, %s) "
                f"ON CONFLICT ({column}) DO UPDATE SET node_id = excluded.node_id "
                f"WHERE {table}.node_id = excluded.node_id", (key, value))
            claims.append((kind, key, value))
        return kind, key, value
    if kind == "consent":
        node_id, peer_id = (int(part) for part in key.split(":"))
        if op[2] is None:
            conn.execute("DELETE FROM pilot_trust_consents WHERE node_id = %s AND peer_id = %s",
                         (node_id, peer_id))
        else:
            conn.execute("INSERT INTO pilot_trust_consents (node_id, peer_id) VALUES (%s, %s) "
                         "ON CONFLICT (node_id, peer_id) DO NOTHING", (node_id, peer_id))
        return kind, key, op[2]
    if kind == "inbox":
        _, _, added, removed = op
        node_id = int(key)
        for item in removed:
            conn.execute("DELETE FROM pilot_handshake_inbox WHERE node_id = %s AND item = %s",
                         (node_id, item))
        for item, when in added:
            conn.execute("INSERT INTO pilot_handshake_inbox (node_id, item, added) "
                         "VALUES (%s, %s, %s) ON CONFLICT (node_id, item) DO NOTHING",
                         (node_id, item, when))
        rows = conn.execute("SELECT item, added FROM pilot_handshake_inbox WHERE node_id = %s",
                            (node_id,)).fetchall()
        return kind, key, schema.inbox_value(rows)
    if kind == "network":
        _, _, value, added, removed = op
        network_id = int(key)
        if value is None:
            conn.execute("DELETE FROM pilot_network_members WHERE network_id = %s", (network_id,))
            conn.execute("DELETE FROM pilot_networks WHERE id = %s", (network_id,))
            return kind, key, None
        conn.execute(
            "INSERT INTO pilot_networks (id, name, join_rule, token, created, attributes) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
            "join_rule = excluded.join_rule, token = excluded.token, "
            "attributes = excluded.attributes", schema.network_row(value))
        for node_id in removed:
            conn.execute("DELETE FROM pilot_network_members WHERE network_id = %s AND node_id = %s",
                         (network_id, node_id))
        for node_id in added:
            conn.execute("INSERT INTO pilot_network_members (network_id, node_id) VALUES (%s, %s) "
                         "ON CONFLICT (network_id, node_id) DO NOTHING", (network_id, node_id))
        return kind, key, read_entity(conn, kind, key)
    value = op[2]
    if value is None:
        conn.execute("DELETE FROM pilot_entities WHERE kind = %s AND key = %s", (kind, key))
    else:
        conn.execute("INSERT INTO pilot_entities (kind, key, value) VALUES (%s, %s, %s) "
                     "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
                     (kind, key, schema.compact(value)))
    return kind, key, value


def read_entity(conn, kind: str, key: str):
    """One entity as the database holds it now, or None."""
    if kind == "node":
        row = conn.execute(f"SELECT {schema.NODE_SELECT} FROM pilot_nodes WHERE id = %s",
                           (int(key),)).fetchone()
        return schema.node_value(row) if row else None
    if kind in ("key", "owner"):
        table, column = _CLAIMED[kind]
        row = conn.execute(f"SELECT node_id FROM {table} WHERE {column} = %s", (key,)).fetchone()
        return row[0] if row else None
    if kind == "consent":
        node_id, peer_id = (int(part) for part in key.split(":"))
        row = conn.execute("SELECT 1 FROM pilot_trust_consents WHERE node_id = %s AND peer_id = %s",
                           (node_id, peer_id)).fetchone()
        return True if row else None
    if kind == "inbox":
        rows = conn.execute("SELECT item, added FROM pilot_handshake_inbox WHERE node_id = %s",
                            (int(key),)).fetchall()
        return schema.inbox_value(rows)
    if kind == "network":
        row = conn.execute(schema.NETWORK_SELECT + " WHERE id = %s", (int(key),)).fetchone()
        if row is None:
            return None
        members = [member for (member,) in conn.execute(
            "SELECT node_id FROM pilot_network_members WHERE network_id = %s", (int(key),))]
        return schema.network_value(row, members)
    if kind == "counter":
        return None  # counters live in sequences
    row = conn.execute("SELECT value FROM pilot_entities WHERE kind = %s AND key = %s",
                       (kind, key)).fetchone()
    return json.loads(row[0]) if row else None


def read_snapshot(conn) -> tuple:
    """``(last change, every entity)`` as ``(kind, key, value)``, from one consistent snapshot."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _read_all(conn)


def _read_all(conn) -> tuple:
    cursor = conn.execute("SELECT last_change FROM pilot_feed_position").fetchone()[0]
    entities: list[tuple[str, str, object]] = []
    for row in conn.execute(f"SELECT {schema.NODE_SELECT} FROM pilot_nodes"):
        entities.append(("node", str(row[0]), schema.node_value(row)))
    for key, node_id in conn.execute("SELECT public_key, node_id FROM pilot_keys"):
        entities.append(("key", key, node_id))
    for owner, node_id in conn.execute("SELECT owner, node_id FROM pilot_owners"):
        entities.append(("owner", owner, node_id))
    for node_id, peer_id in conn.execute("SELECT node_id, peer_id FROM pilot_trust_consents"):
        entities.append(("consent", f"{node_id}:{peer_id}", True))
    inboxes: dict = {}
    for node_id, item, added in conn.execute(
            "SELECT node_id, item, added FROM pilot_handshake_inbox"):
        inboxes.setdefault(node_id, []).append((item, added))
    for node_id, rows in inboxes.items():
        entities.append(("inbox", str(node_id), schema.inbox_value(rows)))
    members: dict = {}
    for network_id, node_id in conn.execute(
            "SELECT network_id, node_id FROM pilot_network_members"):
        members.setdefault(network_id, []).append(node_id)
    for row in conn.execute(schema.NETWORK_SELECT):
        entities.append(("network", str(row[0]), schema.network_value(row, members.get(row[0], ()))))
    for kind, key, value in conn.execute("SELECT kind, key, value FROM pilot_entities"):
        entities.append((kind, key, json.loads(value)))
    return cursor, entities


def read_changes(conn, after: int, limit: int = 1000) -> list:
    """Changes after ``after`` as ``(id, origin, entities)``, oldest first."""
    return [(change_id, origin, json.loads(entities)) for change_id, origin, entities in
            conn.execute("SELECT id, origin, entities FROM pilot_changes WHERE id > %s "
                         "ORDER BY id LIMIT %s", (after, limit))]
