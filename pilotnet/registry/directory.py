"""The registry's state: nodes, their indexes, trust consents, handshake inboxes, networks.

Plain data with the invariants kept in one place (a hostname maps to at most
one live node, a public key keeps its node ID even after the node is gone).
Every mutation records which stored entity it changed, so the shell can write
exactly those to the store before it acknowledges the request; heartbeats only
move ``last_seen``, which is written lazily (see :meth:`Directory.take_seen`).

Stored entities are ``(kind, key) -> JSON value`` pairs; ``None`` means
deleted.  Kinds: ``node``, ``key`` (public key -> node ID), ``owner`` (owner ->
node ID), ``consent`` ("a:b": a consents to trust b), ``inbox`` (relayed
handshake requests and responses waiting for a node), ``network``,
``member`` ("net:node": a member's role other than ``member`` and its member
tags), ``invite`` ("target:net": a pending invitation), ``counter``; the kinds
of attached parts (:meth:`Directory.attach`) travel with them.

Roles and invitations are entities of their own rather than fields of the
network, so that registries sharing a database (which merge network
memberships) never overwrite one member's role with another's.
"""

import math
import sys
from array import array
from dataclasses import dataclass, asdict, field

from pilotnet.errors import ALREADY_EXISTS
from pilotnet.registry.requests import RequestError
from pilotnet.wire.address import Addr

BACKBONE = 0


@dataclass(slots=True)
class SeldomSet:
    """The fields of a :class:`Node` that most nodes leave at their defaults.

    A node keeps them in one slot that points at the shared :data:`UNSET`
    until one of them is set: 8 bytes a node instead of 48 for six slots,
    and 80 more for the nodes that do set one (few do).
    """

    owner: str = ""
    polo_score: int = 0
    task_exec: bool = False
    # Key lifecycle (reference get_key_info): Unix seconds, 0 = unknown / never.
    key_rotated: float = 0.0
    key_rotations: int = 0
    key_expires: float = 0.0


#: The defaults every node shares until it sets one of its seldom-set fields (never modified).
UNSET = SeldomSet()


def _seldom(name: str) -> property:
    """A :class:`Node` attribute kept in its :class:`SeldomSet`, copied on the first write."""
    default = getattr(UNSET, name)

    def read(node):
        return getattr(node.seldom, name)

    def write(node, value):
        seldom = node.seldom
        if seldom is UNSET:
            if type(value) is type(default) and value == default:
                return
            seldom = node.seldom = SeldomSet()
        setattr(seldom, name, value)

    return property(read, write, doc=f"``{name}``, kept in the node's :class:`SeldomSet`.")


@dataclass(slots=True, init=False)
class Node:
    """One registered node.

    A million of these live in a big registry, so each costs as little as it
    can: ``tags`` and ``lan_addrs`` are tuples, not lists (a tuple of strings
    is untracked by the garbage collector: a full collection visits one object
    per node instead of three), and the fields most nodes leave at their
    defaults (owner, polo score, task execution, key rotation and expiry) live
    in one :class:`SeldomSet` slot, read and written as attributes all the same.

    The last three fields are not stored: when the node last proved possession
    of its key (a verified signature, or the first registration of a key
    nobody held), the source IP of its last accepted registration, and the
    digest of its last verified legacy heartbeat
    (:func:`~pilotnet.registry.challenges.heartbeat_proof`), kept in memory
    only (after a restart the next heartbeat proves the node again).  Slots
    here cost 8 bytes a node each; dicts keyed by node ID cost about 90.
    """

    id: int
    public_key: str
    real_addr: str
    public: bool
    hostname: str
    tags: tuple
    last_seen: float
    lan_addrs: tuple
    version: str
    key_created: float
    seldom: SeldomSet
    proven_at: float | None = field(compare=False)
    registered_from: str | None = field(compare=False)
    heartbeat_proof: bytes | None = field(compare=False)

    owner = _seldom("owner")
    polo_score = _seldom("polo_score")
    task_exec = _seldom("task_exec")
    key_rotated = _seldom("key_rotated")
    key_rotations = _seldom("key_rotations")
    key_expires = _seldom("key_expires")

    def __init__(self, id: int, public_key: str, owner: str = "", real_addr: str = "",
                 public: bool = False, hostname: str = "", tags: tuple = (), polo_score: int = 0,
                 task_exec: bool = False, last_seen: float = 0.0, lan_addrs: tuple = (),
                 version: str = "", key_created: float = 0.0, key_rotated: float = 0.0,
                 key_rotations: int = 0, key_expires: float = 0.0,
                 proven_at: float | None = None, registered_from: str | None = None,
                 heartbeat_proof: bytes | None = None) -> None:
        self.id = id
        self.public_key = public_key
        self.real_addr = real_addr
        self.public = public
        self.hostname = hostname
        self.tags = tags
        self.last_seen = last_seen
        self.lan_addrs = lan_addrs
        self.version = version
        self.key_created = key_created
        self.seldom = UNSET
        # A million of these are built at start: the usual all-default case costs six tests.
        if owner or polo_score or task_exec or key_rotated or key_rotations or key_expires:
            self.seldom = SeldomSet(owner, polo_score, task_exec, key_rotated, key_rotations,
                                    key_expires)
        self.proven_at = proven_at
        self.registered_from = registered_from
        self.heartbeat_proof = heartbeat_proof


@dataclass(slots=True)
class Network:
    """A network other than the backbone, with its settings (controlplane §1.9.2)."""

    id: int
    name: str
    join_rule: str
    token: str
    members: set
    created: float
    enterprise: bool = False
    # A token that manages this network only (the global admin token manages all).
    admin_token: str = ""
    max_members: int = 0  # 0: no limit
    allowed_ports: tuple = ()  # empty: every port
    description: str = ""
    rules: dict | None = None  # managed-network rules (network_rules.parse_rules)
    expr_policy: dict | None = None  # expression policy document


OWNER, ADMIN, MEMBER = "owner", "admin", "member"


@dataclass(slots=True)
class Invite:
    inviter_id: int
    timestamp: float


@dataclass(slots=True)
class HandshakeRequest:
    from_node_id: int
    justification: str
    timestamp: float


@dataclass(slots=True)
class HandshakeResponse:
    from_node_id: int
    accept: bool
    timestamp: float


#: A node's stored fields, in the order they have always been stored.
_NODE_FIELDS = ("id", "public_key", "owner", "real_addr", "public", "hostname", "tags",
                "polo_score", "task_exec", "last_seen", "lan_addrs", "version", "key_created",
                "key_rotated", "key_rotations", "key_expires")
_STORED_NAMES = frozenset(_NODE_FIELDS)
#: The directory's own entity kinds.
_KINDS = frozenset({"node", "key", "owner", "consent", "inbox", "network", "member", "invite", "counter"})


def _restored_node(value):
    """The :class:`Node` of a stored value (fields it lacks keep their defaults).

    This runs once per node at start-up, a million times for a big
    directory: the stored fields go to the constructor as they are, and only
    a value with fields this version does not store is filtered first.
    """
    if _STORED_NAMES.issuperset(value):
        node = Node(**value)
    else:
        node = Node(**{name: value[name] for name in _NODE_FIELDS if name in value})
    node.tags = tuple(node.tags)
    node.lan_addrs = tuple(node.lan_addrs)
    if type(node.version) is str:  # the same few versions on every node: one string each
        node.version = sys.intern(node.version)
    return node


def stored_node(node):
    """A node's stored form (``dataclasses.asdict`` deep-copies; this runs per request)."""
    value = {name: getattr(node, name) for name in _NODE_FIELDS}
    value["tags"] = list(node.tags)
    value["lan_addrs"] = list(node.lan_addrs)
    return value


def address_text(network, node_id):
    return str(Addr(network, node_id))


def _pair(key):
    first, second = (int(part) for part in key.split(":"))
    return first, second


class Directory:
    """All registry state, in memory; the store holds a copy of every acknowledged change."""

    def __init__(self, started=0.0):
        self.started = started
        # Where node and network IDs come from when several registries share a
        # database (its sequences); None: the counters below.
        self.ids = None
        # kind -> the EntityPart (pilotnet.registry.entities) of a concern that owns it.
        self._parts = {}
        # The parts, each once, in the order they were attached (read for every request).
        self._part_list = []
        # The whole second nodes are being stamped with (see second()).
        self._second = float("-inf")
        self._clear()

    def attach(self, part):
        """Store, replicate and restore ``part``'s entities with the directory's.

        Entities of its kinds restored before (the store is read before or
        after the concerns are composed) are handed over to it.
        """
        for kind in part.kinds:
            if kind in self._parts or kind in _KINDS:
                raise ValueError(f"entity kind {kind!r} has an owner already")
            self._parts[kind] = part
        self._part_list = list(dict.fromkeys(self._parts.values()))
        for kind, key in [entity for entity in self._unowned if entity[0] in part.kinds]:
            part.restore(kind, key, self._unowned.pop((kind, key)))

    def _attached(self):
        return self._part_list

    def _to_part(self, action, kind, key, value):
        """Restore or apply a part's entity; one it cannot read is a ValueError, as an unknown kind is."""
        try:
            getattr(self._parts[kind], action)(kind, key, value)
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"malformed {kind} entity {key!r}: {error}") from None

    def _clear(self):
        self.nodes = {}
        self.key_index = {}
        self.owner_index = {}
        self.hostname_index = {}
        self.consents = set()
        self.handshake_requests = {}
        self.handshake_responses = {}
        self.networks = {}
        # (network, node) -> role, for roles other than MEMBER; (network, node) -> member tags.
        self.member_roles = {}
        self.member_tags = {}
        # target node -> {network: Invite}
        self.invites = {}
        self.next_node = 1
        self.next_net = 1
        self._dirty = set()
        self._seen = set()
        # Entities of kinds no attached part owns (yet): kept as they are, so a
        # directory without its concerns (a tool, a test) carries them along.
        self._unowned = {}
        # The IDs of the reaper's sweep in progress and how far it got (stale_nodes).
        self._sweep = []
        self._sweep_at = 0

    # -- change tracking ---------------------------------------------------

    def _mark(self, kind, key):
        self._dirty.add((kind, key))

    def take_changes(self):
        """The entities changed since the last call, as ``(kind, key, value or None)``."""
        dirty = self._dirty
        # Reads change nothing: they skip building the list of what changed.
        changes = [(kind, key, self.entity(kind, key)) for kind, key in dirty] if dirty else []
        dirty.clear()
        for part in self._part_list:
            taken = part.take_changes()
            if taken:
                changes += taken
        return changes

    def take_seen(self):
        """IDs of the nodes whose ``last_seen`` moved (heartbeats) since the last call."""
        seen, self._seen = list(self._seen), set()
        return seen

    def seen_changes(self, node_ids):
        """The stored form of these nodes, as changes (``take_seen`` said which moved)."""
        return [("node", str(i), self.entity("node", str(i))) for i in node_ids]

    def entity(self, kind, key):
        """The stored form of one entity, or ``None`` if it no longer exists."""
        if kind == "node":
            node = self.nodes.get(int(key))
            return None if node is None else stored_node(node)
        if kind == "key":
            return self.key_index.get(key)
        if kind == "owner":
            return self.owner_index.get(key)
        if kind == "consent":
            a, b = (int(part) for part in key.split(":"))
            return True if (a, b) in self.consents else None
        if kind == "inbox":
            node_id = int(key)
            requests = self.handshake_requests.get(node_id, [])
            responses = self.handshake_responses.get(node_id, [])
            if not requests and not responses:
                return None
            return {"requests": [asdict(r) for r in requests],
                    "responses": [asdict(r) for r in responses]}
        if kind == "network":
            network = self.networks.get(int(key))
            if network is None:
                return None
            stored = asdict(network)
            stored["members"] = sorted(network.members)
            stored["allowed_ports"] = list(network.allowed_ports)
            return stored
        if kind == "member":
            pair = _pair(key)
            role = self.member_roles.get(pair)
            tags = self.member_tags.get(pair)
            if role is None and not tags:
                return None
            return {"role": role or MEMBER, "tags": list(tags or ())}
        if kind == "invite":
            target, network_id = _pair(key)
            invite = self.invites.get(target, {}).get(network_id)
            return None if invite is None else asdict(invite)
        if kind == "counter":
            return getattr(self, key)
        raise ValueError(f"unknown entity kind {kind!r}")

    def restore(self, kind, key, value):
        """Put back one entity read from the store (no change is recorded)."""
        if kind in self._parts:
            self._to_part("restore", kind, key, value)
        elif kind == "node":
            node = _restored_node(value)
            self.nodes[node.id] = node
            if node.hostname:
                self.hostname_index[node.hostname] = node.id
        elif kind == "key":
            # Stores list nodes first: the index then holds the node's own key
            # text and ID instead of copies (about 120 bytes a node).
            node = self.nodes.get(value)
            if node is not None and node.public_key == key:
                key, value = node.public_key, node.id
            self.key_index[key] = value
        elif kind == "owner":
            self.owner_index[key] = value
        elif kind == "consent":
            a, b = (int(part) for part in key.split(":"))
            self.consents.add((a, b))
        elif kind == "inbox":
            node_id = int(key)
            self.handshake_requests[node_id] = [HandshakeRequest(**r) for r in value["requests"]]
            self.handshake_responses[node_id] = [HandshakeResponse(**r) for r in value["responses"]]
        elif kind == "network":
            value = dict(value, members=set(value["members"]),
                         allowed_ports=tuple(value.get("allowed_ports", ())))
            self.networks[value["id"]] = Network(**value)
        elif kind == "member":
            pair = _pair(key)
            if value["role"] != MEMBER:
                self.member_roles[pair] = value["role"]
            if value["tags"]:
                self.member_tags[pair] = tuple(value["tags"])
        elif kind == "invite":
            target, network_id = _pair(key)
            self.invites.setdefault(target, {})[network_id] = Invite(**value)
        elif kind == "counter":
            setattr(self, key, value)
        else:
            self._unowned[kind, key] = value

    def entities(self):
        """Every stored entity as ``(kind, key, value)``: a full snapshot of the state."""
        keys = [("node", str(node_id)) for node_id in self.nodes]
        keys += [("key", key) for key in self.key_index]
        keys += [("owner", owner) for owner in self.owner_index]
        keys += [("consent", f"{a}:{b}") for a, b in self.consents]
        keys += [("inbox", str(node_id))
                 for node_id in set(self.handshake_requests) | set(self.handshake_responses)]
        keys += [("network", str(network_id)) for network_id in self.networks]
        keys += [("member", f"{n}:{m}") for n, m in set(self.member_roles) | set(self.member_tags)]
        keys += [("invite", f"{target}:{network_id}")
                 for target, pending in self.invites.items() for network_id in pending]
        keys += [("counter", "next_node"), ("counter", "next_net")]
        snapshot = [(kind, key, self.entity(kind, key)) for kind, key in keys]
        for part in self._attached():
            snapshot.extend(part.entities())
        snapshot.extend((kind, key, value) for (kind, key), value in self._unowned.items())
        return [entity for entity in snapshot if entity[2] is not None]

    def replace(self, entities):
        """Drop all state and restore ``entities`` (a standby taking a primary's snapshot)."""
        self._clear()
        for part in self._attached():
            part.clear()
        for kind, key, value in entities:
            self.restore(kind, key, value)

    def apply(self, kind, key, value):
        """Put one changed entity in place, ``None`` deleting it (no change is recorded)."""
        if kind in self._parts:
            self._to_part("apply", kind, key, value)
            return
        if kind == "node":
            old = self.nodes.pop(int(key), None)
            if old is not None and self.hostname_index.get(old.hostname) == old.id:
                del self.hostname_index[old.hostname]
            if old is not None and value is not None:
                self.restore(kind, key, value)
                # What this registry saw the node prove is not in the stored value.
                new = self.nodes[old.id]
                new.proven_at, new.registered_from = old.proven_at, old.registered_from
                new.heartbeat_proof = old.heartbeat_proof
                return
        elif value is None:
            if kind == "key":
                self.key_index.pop(key, None)
            elif kind == "owner":
                self.owner_index.pop(key, None)
            elif kind == "consent":
                a, b = (int(part) for part in key.split(":"))
                self.consents.discard((a, b))
            elif kind == "inbox":
                self.handshake_requests.pop(int(key), None)
                self.handshake_responses.pop(int(key), None)
            elif kind == "network":
                self.networks.pop(int(key), None)
            elif kind == "member":
                self.member_roles.pop(_pair(key), None)
                self.member_tags.pop(_pair(key), None)
            elif kind == "invite":
                self._drop_invite(*_pair(key))
            elif kind in _KINDS:
                raise ValueError(f"cannot delete entity kind {kind!r}")
            else:
                self._unowned.pop((kind, key), None)
        if value is not None:
            if kind == "member":
                # A value replaces both halves: a role back to MEMBER, tags cleared.
                self.member_roles.pop(_pair(key), None)
                self.member_tags.pop(_pair(key), None)
            self.restore(kind, key, value)

    # -- nodes ---------------------------------------------------------------

    def allocate_event_id(self):
        """An audit event ID unique among the registries on a shared database; None for a registry alone."""
        return self.ids.event_id() if self.ids is not None else None

    def allocate_node_id(self):
        if self.ids is not None:
            return self.ids.node_id()
        node_id = self.next_node
        if node_id > 0xFFFFFFFE:
            raise RequestError("node ID space exhausted")
        self.next_node += 1
        self._mark("counter", "next_node")
        return node_id

    def save_node(self, node):
        """Insert or update ``node``; call after changing any of its fields."""
        self.nodes[node.id] = node
        self._mark("node", str(node.id))

    def remove_node(self, node_id):
        """Delete a live node, freeing its hostname; its key keeps the ID reserved."""
        node = self.nodes.pop(node_id, None)
        if node is None:
            return None
        if node.hostname and self.hostname_index.get(node.hostname) == node_id:
            del self.hostname_index[node.hostname]
        self._mark("node", str(node_id))
        return node

    def second(self, now):
        """``now`` down to the whole second: one float object for every node stamped within it.

        Each float is 32 bytes of memory: a million nodes holding their own
        last-seen and proof times would hold 30-60 MiB of them; nodes heard
        within the same second (thousands of them, in a big registry) share
        one.  Times on the wire are whole seconds anyway.
        """
        shared = self._second
        if not shared <= now < shared + 1.0:
            shared = self._second = float(math.floor(now))
        return shared

    def touch(self, node, now):
        node.last_seen = self.second(now)
        self._seen.add(node.id)

    def index_key(self, public_key, node_id):
        self.key_index[public_key] = node_id
        self._mark("key", public_key)

    def unindex_key(self, public_key):
        self.key_index.pop(public_key, None)
        self._mark("key", public_key)

    def rekey(self, node, public_key):
        """Give ``node`` a new key: the old one stops naming it, the new one does."""
        self.unindex_key(node.public_key)
        node.public_key = public_key
        self.index_key(public_key, node.id)
        self.save_node(node)

    def unindex_keys_of(self, node_id):
        """Forget every key that names ``node_id`` (its node is recovered under a new key)."""
        for public_key in [k for k, v in self.key_index.items() if v == node_id]:
            self.unindex_key(public_key)

    def index_owner(self, owner, node_id):
        self.owner_index[owner] = node_id
        self._mark("owner", owner)

    def hostname_holder(self, hostname):
        return self.hostname_index.get(hostname)

    def set_hostname(self, node, hostname):
        """Attach ``hostname`` (validated by the caller) or clear it with ""."""
        holder = self.hostname_index.get(hostname) if hostname else None
        if holder is not None and holder != node.id:
            raise RequestError(f'hostname "{hostname}" already in use by node {holder}',
                               code=ALREADY_EXISTS)
        if node.hostname and self.hostname_index.get(node.hostname) == node.id:
            del self.hostname_index[node.hostname]
        node.hostname = hostname
        if hostname:
            self.hostname_index[hostname] = node.id
        self.save_node(node)

    def stale_nodes(self, now, threshold, budget=None):
        """IDs of nodes not seen for longer than ``threshold`` seconds.

        With a ``budget``, at most that many nodes are looked at: the call
        goes on from where the previous one stopped, through a list of the
        IDs taken when the sweep began, so that a big directory is swept over
        several calls instead of holding up the reactor for one long scan.
        A node registered during a sweep waits for the next one (it is not
        stale yet anyway).
        """
        cutoff = now - threshold
        if budget is None:
            return [node.id for node in self.nodes.values() if node.last_seen < cutoff]
        if self._sweep_at >= len(self._sweep):
            # Node IDs are 32-bit: 4 bytes each in an array, 8 in a list.
            self._sweep, self._sweep_at = array("I", self.nodes), 0
        start, self._sweep_at = self._sweep_at, self._sweep_at + budget
        nodes = self.nodes
        stale = []
        for node_id in self._sweep[start:self._sweep_at]:
            node = nodes.get(node_id)
            if node is not None and node.last_seen < cutoff:
                stale.append(node_id)
        if self._sweep_at >= len(self._sweep):
            self._sweep = []
        return stale

    # -- trust ---------------------------------------------------------------

    def consent(self, node_id, peer_id):
        self.consents.add((node_id, peer_id))
        self._mark("consent", f"{node_id}:{peer_id}")

    def withdraw(self, node_id, peer_id):
        self.consents.discard((node_id, peer_id))
        self._mark("consent", f"{node_id}:{peer_id}")

    def trust_pair(self, a, b):
        """True when both nodes consented to trust each other."""
        return (a, b) in self.consents and (b, a) in self.consents

    def trust_pair_count(self):
        return sum(1 for a, b in self.consents if a < b and (b, a) in self.consents)

    # -- handshake inboxes ---------------------------------------------------

    def pending_requests(self, node_id):
        return self.handshake_requests.get(node_id, [])

    def add_request(self, node_id, request):
        self.handshake_requests.setdefault(node_id, []).append(request)
        self._mark("inbox", str(node_id))

    def add_response(self, node_id, response):
        self.handshake_responses.setdefault(node_id, []).append(response)
        self._mark("inbox", str(node_id))

    def drain_inbox(self, node_id):
        """Remove and return the node's pending requests and responses."""
        requests = self.handshake_requests.pop(node_id, [])
        responses = self.handshake_responses.pop(node_id, [])
        if requests or responses:
            self._mark("inbox", str(node_id))
        return requests, responses

    # -- networks ------------------------------------------------------------

    def allocate_network_id(self):
        if self.ids is not None:
            return self.ids.network_id()
        network_id = self.next_net
        if network_id > 0xFFFF:
            raise RequestError("network ID space exhausted")
        self.next_net += 1
        self._mark("counter", "next_net")
        return network_id

    def save_network(self, network):
        self.networks[network.id] = network
        self._mark("network", str(network.id))

    def network_by_name(self, name):
        for network in self.networks.values():
            if network.name == name:
                return network
        return None

    def networks_of(self, node_id):
        """The node's networks: the backbone, then every network it is a member of."""
        if not self.networks:
            return [BACKBONE]
        return [BACKBONE] + sorted(n.id for n in self.networks.values() if node_id in n.members)

    def share_network(self, a, b):
        """True when both nodes are members of some network other than the backbone."""
        return any(a in n.members and b in n.members for n in self.networks.values())

    def leave_all_networks(self, node_id):
        """A deregistered node leaves every network; its invitations, sent and received, go too."""
        for network in list(self.networks.values()):
            if node_id in network.members:
                self.remove_member(network, node_id)
        for network_id in list(self.invites.get(node_id, {})):
            self.remove_invite(node_id, network_id)
        for target, pending in list(self.invites.items()):
            for network_id, invite in list(pending.items()):
                if invite.inviter_id == node_id:
                    self.remove_invite(target, network_id)

    def add_member(self, network, node_id, role=MEMBER):
        network.members.add(node_id)
        self.save_network(network)
        self.set_role(network.id, node_id, role)

    def remove_member(self, network, node_id):
        """``node_id`` leaves ``network`` with its role and member tags."""
        network.members.discard(node_id)
        self.save_network(network)
        pair = (network.id, node_id)
        if pair in self.member_roles or pair in self.member_tags:
            self.member_roles.pop(pair, None)
            self.member_tags.pop(pair, None)
            self._mark("member", f"{network.id}:{node_id}")

    def role_of(self, network, node_id):
        """The member's role, or None if it is not a member."""
        if node_id not in network.members:
            return None
        return self.member_roles.get((network.id, node_id), MEMBER)

    def set_role(self, network_id, node_id, role):
        pair = (network_id, node_id)
        if self.member_roles.get(pair, MEMBER) == role:
            return
        if role == MEMBER:
            del self.member_roles[pair]
        else:
            self.member_roles[pair] = role
        self._mark("member", f"{network_id}:{node_id}")

    def owner_of(self, network):
        """The owner's node ID, or None."""
        owners = [node_id for node_id in network.members
                  if self.member_roles.get((network.id, node_id)) == OWNER]
        return min(owners) if owners else None

    def tags_of(self, network_id, node_id):
        return self.member_tags.get((network_id, node_id), ())

    def set_member_tags(self, network_id, node_id, tags):
        pair = (network_id, node_id)
        if tags:
            self.member_tags[pair] = tuple(tags)
        else:
            self.member_tags.pop(pair, None)
        self._mark("member", f"{network_id}:{node_id}")

    def delete_network(self, network):
        """Remove ``network``, its members' roles and tags and every invitation to it."""
        for node_id in list(network.members):
            self.remove_member(network, node_id)
        for target in list(self.invites):
            self.remove_invite(target, network.id)
        del self.networks[network.id]
        self._mark("network", str(network.id))

    # -- invitations -----------------------------------------------------------

    def invites_of(self, target):
        """``{network_id: Invite}`` pending for ``target`` (do not modify)."""
        return self.invites.get(target, {})

    def add_invite(self, target, network_id, inviter_id, now):
        self.invites.setdefault(target, {})[network_id] = Invite(inviter_id, now)
        self._mark("invite", f"{target}:{network_id}")

    def remove_invite(self, target, network_id):
        if network_id in self.invites.get(target, {}):
            self._drop_invite(target, network_id)
            self._mark("invite", f"{target}:{network_id}")

    def _drop_invite(self, target, network_id):
        pending = self.invites.get(target)
        if pending is not None:
            pending.pop(network_id, None)
            if not pending:
                del self.invites[target]

    def revoke_invites_from(self, inviter_id, network_id):
        """Invitations to ``network_id`` that ``inviter_id`` sent (a member who leaves takes them back)."""
        for target, pending in list(self.invites.items()):
            invite = pending.get(network_id)
            if invite is not None and invite.inviter_id == inviter_id:
                self.remove_invite(target, network_id)
