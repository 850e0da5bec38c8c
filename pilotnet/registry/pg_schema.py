"""The registry's tables in PostgreSQL, and how directory entities map onto them.

Every statement here stays within what CockroachDB and YugabyteDB accept as
well (docs/scale-out.md lists the ones that matter): ``CREATE ... IF NOT
EXISTS``, sequences with ``INCREMENT``, ``INSERT ... ON CONFLICT ... DO UPDATE
... WHERE``, ``UPDATE ... FROM unnest(array, array)``, savepoints, and no
triggers, stored procedures or advisory locks.

Uniqueness the registries must agree on is a constraint, not a check in
memory: a hostname (``UNIQUE``), a public key and an owner (primary keys of
their index tables), a network name (``UNIQUE``).  Node and network IDs come
from sequences, handed out in blocks.

``pilot_changes`` is the change feed: one row per committed transaction, its
entities as JSON, under an ID taken from the single row of
``pilot_feed_position`` in the same transaction.  That row stays locked until
the transaction commits, so IDs are committed in order without gaps: a reader
that sees change N has every change before it.
"""

import json

# Node IDs are taken from the sequence in blocks of this many (one round trip per block).
NODE_ID_BLOCK = 256
# Each registry takes one block of audit event IDs (2^32 of them) when it loads, so the entries of
# registries on one database never share an ID.  The first block starts above any ID a registry
# counted alone (SQLite, or a database from before the sequence), so imported entries keep theirs.
EVENT_ID_BLOCK = 1 << 32

SCHEMA = (
    f"CREATE SEQUENCE IF NOT EXISTS pilot_node_ids START 1 INCREMENT {NODE_ID_BLOCK}",
    "CREATE SEQUENCE IF NOT EXISTS pilot_network_ids START 1 INCREMENT 1",
    f"CREATE SEQUENCE IF NOT EXISTS pilot_audit_event_ids START {EVENT_ID_BLOCK} INCREMENT {EVENT_ID_BLOCK}",
    """CREATE TABLE IF NOT EXISTS pilot_nodes (
        id BIGINT PRIMARY KEY,
        public_key TEXT NOT NULL,
        hostname TEXT UNIQUE,
        owner TEXT NOT NULL DEFAULT '',
        polo_score BIGINT NOT NULL DEFAULT 0,
        last_seen DOUBLE PRECISION NOT NULL DEFAULT 0,
        attributes TEXT NOT NULL,
        version BIGINT NOT NULL DEFAULT 0)""",
    # Databases made before node records were versioned.
    "ALTER TABLE pilot_nodes ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0",
    """CREATE TABLE IF NOT EXISTS pilot_keys (
        public_key TEXT PRIMARY KEY,
        node_id BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pilot_owners (
        owner TEXT PRIMARY KEY,
        node_id BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pilot_trust_consents (
        node_id BIGINT NOT NULL,
        peer_id BIGINT NOT NULL,
        PRIMARY KEY (node_id, peer_id))""",
    """CREATE TABLE IF NOT EXISTS pilot_handshake_inbox (
        node_id BIGINT NOT NULL,
        item TEXT NOT NULL,
        added DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (node_id, item))""",
    """CREATE TABLE IF NOT EXISTS pilot_networks (
        id BIGINT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        join_rule TEXT NOT NULL,
        token TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL)""",
    # A network's settings beyond its name and join rule (enterprise flag, policies, rules), as
    # JSON; added to tables created before networks had them.
    "ALTER TABLE pilot_networks ADD COLUMN IF NOT EXISTS attributes TEXT NOT NULL DEFAULT '{}'",
    """CREATE TABLE IF NOT EXISTS pilot_network_members (
        network_id BIGINT NOT NULL,
        node_id BIGINT NOT NULL,
        PRIMARY KEY (network_id, node_id))""",
    """CREATE TABLE IF NOT EXISTS pilot_changes (
        id BIGINT PRIMARY KEY,
        origin TEXT NOT NULL,
        entities TEXT NOT NULL,
        committed_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS pilot_feed_position (
        singleton INT PRIMARY KEY,
        last_change BIGINT NOT NULL)""",
    "INSERT INTO pilot_feed_position (singleton, last_change) VALUES (1, 0) "
    "ON CONFLICT (singleton) DO NOTHING",
    # Entity kinds without a table of their own (last-writer-wins JSON).
    """CREATE TABLE IF NOT EXISTS pilot_entities (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (kind, key))""",
    """CREATE TABLE IF NOT EXISTS pilot_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires TIMESTAMPTZ NOT NULL)""",
    # Nonces of fresh-signed writes, until their timestamps leave the window (Unix seconds).
    """CREATE TABLE IF NOT EXISTS pilot_nonces (
        signer TEXT NOT NULL,
        nonce TEXT NOT NULL,
        expires DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (signer, nonce))""",
    "CREATE INDEX IF NOT EXISTS pilot_nonces_expiry ON pilot_nonces (expires)",
)

# The node fields with a column of their own; the others travel in ``attributes``.
NODE_COLUMNS = ("id", "public_key", "hostname", "owner", "polo_score", "last_seen")
#: What a query selects to read a node entity (:func:`node_value`).
NODE_SELECT = "id, public_key, hostname, owner, polo_score, last_seen, attributes, version"
#: The key under which a node entity read from the database (or the feed) carries its row's
#: version; the store takes it out before the directory sees the entity.  (A node's own
#: ``version`` field is the software version it registered with.)
VERSION = "_row_version"


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def node_row(value: dict) -> tuple:
    """The ``pilot_nodes`` row of a node entity (an empty hostname is NULL: many may have none)."""
    attributes = {name: field for name, field in value.items() if name not in NODE_COLUMNS}
    return (int(value["id"]), value["public_key"], value["hostname"] or None, value["owner"],
            int(value["polo_score"]), float(value["last_seen"]), compact(attributes))


def node_value(row: tuple) -> dict:
    """The node entity of a ``pilot_nodes`` row (:data:`NODE_SELECT`), its version included."""
    node_id, public_key, hostname, owner, polo_score, last_seen, attributes, version = row
    value = json.loads(attributes)
    value.update(id=node_id, public_key=public_key, hostname=hostname or "", owner=owner,
                 polo_score=polo_score, last_seen=last_seen)
    value[VERSION] = version
    return value


def inbox_items(value) -> dict:
    """A handshake inbox entity as ``{item text: timestamp}``, one row per request or response."""
    if value is None:
        return {}
    items = {}
    for kind in ("requests", "responses"):
        for entry in value[kind]:
            items[compact([kind, entry])] = float(entry["timestamp"])
    return items


def inbox_value(items: list):
    """The inbox entity of its rows ``(item text, added)``, in arrival order; None when empty."""
    value: dict[str, list[object]] = {"requests": [], "responses": []}
    for item, _ in sorted(items, key=lambda row: (row[1], row[0])):
        kind, entry = json.loads(item)
        value[kind].append(entry)
    return value if value["requests"] or value["responses"] else None


# The network fields with a column of their own (members have their table); the others
# travel in ``attributes``.
NETWORK_COLUMNS = ("id", "name", "join_rule", "token", "created", "members")
NETWORK_SELECT = "SELECT id, name, join_rule, token, created, attributes FROM pilot_networks"


def network_row(value: dict) -> tuple:
    """The ``pilot_networks`` row of a network entity."""
    attributes = {name: field for name, field in value.items() if name not in NETWORK_COLUMNS}
    return (int(value["id"]), value["name"], value["join_rule"], value["token"],
            float(value["created"]), compact(attributes))


def network_value(row: tuple, members) -> dict:
    network_id, name, join_rule, token, created, attributes = row
    value = json.loads(attributes)
    value.update(id=network_id, name=name, join_rule=join_rule, token=token,
                 members=sorted(members), created=created)
    return value
