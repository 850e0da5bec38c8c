"""Nodes: registration, liveness, settings and reading the directory.

A ``register`` that changes a known node must prove possession of its key
(our daemons sign it); an unsigned one (Go clients never sign ``register``)
may not take a live node from another address -- see docs/security.md,
"Registry".
"""

import base64
import binascii
import sys
from typing import Callable

from twisted.logger import Logger

from pilotnet.errors import DecodeError, ALREADY_EXISTS, NOT_FOUND
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry import requests as fields
from pilotnet.registry.challenges import FRESH_FIELD
from pilotnet.registry.directory import BACKBONE, Node, address_text
from pilotnet.registry.dispatch import RegistryCore, Route
from pilotnet.registry.key_expiry import KEY_EXPIRY_WARNING, key_expired
from pilotnet.registry.requests import RequestError
from pilotnet.registry.validation import check_hostname, normalize_tags
from pilotnet.wire.hostport import join_host_port, split_host_port
from pilotnet.wire.rfc3339 import format_rfc3339

PROTOCOL_VERSION = 1
MAX_ADDR_LENGTH = 262


def public_key_field(request, field):
    """The base64 Ed25519 public key in ``request[field]``, checked for shape."""
    value = fields.text(request, field)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"invalid {field}: not valid base64") from None
    if len(raw) != 32:
        raise RequestError(f"invalid {field}: an Ed25519 public key is 32 bytes, not {len(raw)}")
    return value


def port_of(listen_addr):
    """The port of a ``host:port`` / ``[v6]:port`` text, or None if it has none."""
    try:
        return split_host_port(listen_addr)[1]
    except DecodeError:
        return None


def observed_endpoint(listen_addr, peer):
    """The endpoint to publish for a node: the TCP source IP with the port it announced.

    A node cannot claim somebody else's IP this way.  An unparsable
    ``listen_addr`` falls back to the TCP source address itself; an empty one
    registers the node without an endpoint (identity only).
    """
    if not listen_addr:
        return ""
    host, source_port = peer
    port = port_of(listen_addr)
    return join_host_port(host, port if port is not None else source_port)


class NodeHandlers:
    """register, heartbeat, deregister, rotate_key, lookup, resolve, list_nodes and the node settings."""

    log = Logger()

    def __init__(self, registry: RegistryCore, *, register_limiter=None,
                 stale_after: float = 300.0, allow_owner_recovery: bool = False,
                 external_id_of: Callable[[int], str] = lambda node_id: "") -> None:
        self.registry = registry
        # The node's external ID (pilotnet.registry.identity), shown where the reference shows it.
        self.external_id_of = external_id_of
        self.directory = registry.directory
        self.register_limiter = (register_limiter if register_limiter is not None
                                 else RateLimiter(burst=10, window=60.0))
        self.stale_after = stale_after
        self.allow_owner_recovery = allow_owner_recovery

    def routes(self):
        return [
            Route("register", self._register),
            Route("heartbeat", self._heartbeat, on_standby=True),
            Route("deregister", self._deregister, admin_override=True),
            Route("rotate_key", self._rotate_key),
            Route("lookup", self._lookup, on_standby=True),
            Route("resolve", self._resolve, on_standby=True),
            Route("resolve_hostname", self._resolve_hostname, on_standby=True),
            Route("list_nodes", self._list_nodes, on_standby=True),
            Route("set_hostname", self._set_hostname, admin_override=True),
            Route("set_tags", self._set_tags, admin_override=True),
            Route("set_visibility", self._set_visibility, admin_override=True),
            Route("set_task_exec", self._set_task_exec, admin_override=True),
        ]

    # -- registration and liveness -------------------------------------------

    def _register(self, request, peer, now):
        if not request.get("public_key"):
            raise RequestError("registration requires public_key")
        public_key = public_key_field(request, "public_key")
        listen_addr = fields.text(request, "listen_addr", max_length=MAX_ADDR_LENGTH)
        owner = fields.text(request, "owner", max_length=256)
        hostname = fields.text(request, "hostname", max_length=256)
        lan_addrs = fields.strings(request, "lan_addrs", max_items=16, max_length=MAX_ADDR_LENGTH)
        version = fields.text(request, "version", max_length=64)
        directory = self.directory
        host = peer[0]
        proven = self._register_signed(request, public_key, now)
        known_id = directory.key_index.get(public_key)
        if known_id is None and not self.register_limiter.allow(host, now):
            raise RequestError(f"rate limited: too many registrations from {host}")
        if known_id is not None and not proven:
            self._check_unsigned_reregistration(known_id, host, now)
        # A key nobody held before is proven by being first: nobody else knew it.
        proven = proven or known_id is None

        node = directory.nodes.get(known_id) if known_id is not None else None
        if node is not None and key_expired(node, now):
            # Registering again must not be a way around the expiry the heartbeats enforce.
            raise RequestError(f"node {node.id}: key expired at {format_rfc3339(node.key_expires)}",
                               hint="rotate the key: pilotctl rotate-key")
        if known_id is None and owner and owner in directory.owner_index \
                and not self.allow_owner_recovery:
            # The owner string is no credential: the new key gets a new node
            # and the owner stays with the node that holds it.
            self.log.info("registry: owner {owner} already belongs to node {node_id}; "
                          "a new key registers as a new node", owner=owner,
                          node_id=directory.owner_index[owner])
            owner = ""
        if known_id is None and owner and owner in directory.owner_index:
            known_id = directory.owner_index[owner]
            node = directory.nodes.get(known_id)
            if node is not None:
                raise RequestError(
                    f"owner {owner} belongs to node {known_id}, which is online with another key",
                    hint="use rotate_key signed with the current key, or wait until the node is reaped",
                    code=ALREADY_EXISTS)
            self.log.info("registry: owner {owner} recovers node {node_id} with a new key",
                          owner=owner, node_id=known_id)
            # The lost key must not come back as a second key of the same node.
            directory.unindex_keys_of(known_id)
        if known_id is None:
            known_id = directory.allocate_node_id()
        stamp = directory.second(now)
        if node is None:
            node = Node(id=known_id, public_key=public_key, key_created=stamp)
        if directory.key_index.get(public_key) != known_id:
            directory.index_key(public_key, known_id)
        if owner and not node.owner:
            node.owner = owner
            directory.index_owner(owner, known_id)
        node.real_addr = observed_endpoint(listen_addr, peer)
        node.lan_addrs = tuple(lan_addrs)
        # A handful of versions among a million nodes: one string each, not one per node (~64 bytes).
        node.version = sys.intern(version)
        node.last_seen = stamp
        directory.save_node(node)
        node.registered_from = host
        if proven:
            node.proven_at = stamp

        reply = {
            "type": "register_ok", "node_id": node.id, "network_id": BACKBONE,
            "address": address_text(BACKBONE, node.id), "public_key": public_key,
            "observed_addr": node.real_addr, "protocol_version": PROTOCOL_VERSION,
            # The registry's clock, as heartbeat_ok has it: clients sign fresh requests on it.
            "time": int(now),
        }
        if hostname:
            hostname_error = self._attach_hostname(node, hostname)
            if hostname_error:
                reply["hostname_error"] = hostname_error
        if node.hostname:
            reply["hostname"] = node.hostname
        return reply

    def _register_signed(self, request, public_key, now):
        """Whether ``register`` proves possession of its key (a valid fresh-form signature).

        Go clients never sign ``register`` (the reference has no challenge
        for it): unsigned is allowed, and then limited by
        :meth:`_check_unsigned_reregistration`; a fresh signature that is
        there must be valid.
        """
        if FRESH_FIELD not in request:
            return False
        self.registry.check_fresh(public_key, request, now)
        return True

    def _check_unsigned_reregistration(self, node_id, host, now):
        """An unsigned ``register`` of a known key may not take over a live node.

        Allowed when the node is offline (reaped, deregistered, or it has not
        proved its key for ``stale_after`` seconds: nothing live is moved), or
        when it comes from the source IP of the node's last registration (a
        Go daemon re-registering after failed heartbeats).  Refused otherwise:
        the public key is public, so an unsigned registration proves nothing.
        """
        node = self.directory.nodes.get(node_id)
        if node is None or node.proven_at is None or now - node.proven_at > self.stale_after:
            return
        if node.registered_from == host:
            return
        raise RequestError(
            f"register refused: node {node_id} is online; an unsigned re-registration of its key "
            "is accepted only from the address it registered from",
            hint="sign the registration (pilotnet daemons do), or wait until the node is stale")

    def _attach_hostname(self, node, hostname):
        """Register-time hostname: attached if valid and free, else reported, never fatal."""
        try:
            check_hostname(hostname)
            holder = self.directory.hostname_holder(hostname)
            if holder is not None and holder != node.id:
                raise RequestError(f'hostname "{hostname}" already in use')
            self.directory.set_hostname(node, hostname)
        except RequestError as error:
            return error.message
        return None

    def _heartbeat(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        listen_addr = fields.text(request, "listen_addr", max_length=MAX_ADDR_LENGTH)
        node = self.registry.authenticate(request, "heartbeat",
                                          {"node_id": node_id, "listen_addr": listen_addr},
                                          node_id, now)
        if listen_addr:
            node.real_addr = observed_endpoint(listen_addr, peer)
            self.directory.save_node(node)
        if key_expired(node, now):
            raise RequestError(f"node {node_id}: key expired at {format_rfc3339(node.key_expires)}",
                               hint="rotate the key: pilotctl rotate-key")
        self.directory.touch(node, now)
        reply = {"type": "heartbeat_ok", "time": int(now)}
        if node.key_expires and node.key_expires - now < KEY_EXPIRY_WARNING:
            reply["key_expiry_warning"] = True
        return reply

    def _deregister(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        if node_id not in self.directory.nodes:
            return {"type": "deregister_ok"}
        self.registry.authenticate(request, "deregister", {"node_id": node_id}, node_id, now)
        self.directory.leave_all_networks(node_id)
        self.directory.remove_node(node_id)
        return {"type": "deregister_ok"}

    def _rotate_key(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        node = self.registry.node(node_id)
        if not isinstance(request.get("signature"), str) or not request["signature"]:
            raise RequestError("rotate_key requires a valid signature")
        new_key = public_key_field(request, "new_public_key")
        try:
            self.registry.authenticate(request, "rotate_key", {"node_id": node_id}, node_id, now)
        except RequestError as error:
            if error.message != "signature verification failed":
                raise
            raise RequestError("rotate_key requires a valid signature") from None
        holder = self.directory.key_index.get(new_key)
        if holder is not None and holder != node_id:
            raise RequestError(f"public key already registered to node {holder}",
                               code=ALREADY_EXISTS)
        # A new key starts a new lifetime: the old one's expiry does not carry over.
        node.key_rotated, node.key_rotations, node.key_expires = now, node.key_rotations + 1, 0.0
        self.directory.rekey(node, new_key)
        return {"type": "rotate_key_ok", "node_id": node_id,
                "address": address_text(BACKBONE, node_id), "public_key": new_key}

    # -- reading the directory ------------------------------------------------

    def _lookup(self, request, peer, now):
        node = self.registry.node(fields.uint(request, "node_id"))
        reply = {
            "type": "lookup_ok", "node_id": node.id, "address": address_text(BACKBONE, node.id),
            "networks": self.directory.networks_of(node.id), "public_key": node.public_key,
        }
        self._describe(node, reply)
        if node.version:
            reply["version"] = node.version
        return reply

    def _describe(self, node, shown: dict) -> None:
        """What ``lookup`` and ``list_nodes`` both show of a live node, each field only when set."""
        shown["public"] = node.public
        shown["polo_score"] = node.polo_score
        if node.hostname:
            shown["hostname"] = node.hostname
        if node.tags:
            shown["tags"] = list(node.tags)
        if node.task_exec:
            shown["task_exec"] = True
        if node.public and node.real_addr:
            shown["real_addr"] = node.real_addr
        external_id = self.external_id_of(node.id)
        if external_id:
            shown["external_id"] = external_id

    def _resolve(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        requester_id = fields.uint(request, "requester_id")
        if requester_id not in self.directory.nodes:
            raise RequestError(f"resolve denied: requester node {requester_id} is not registered",
                               code=NOT_FOUND)
        self.registry.authenticate(request, "resolve",
                                   {"node_id": node_id, "requester_id": requester_id},
                                   requester_id, now)
        target = self.registry.node(node_id)
        if not self.registry.visible_to(target, requester_id):
            raise RequestError(
                f"resolve denied: node {node_id} is private (establish mutual trust first)")
        reply = {"type": "resolve_ok", "node_id": node_id, "real_addr": target.real_addr,
                 "public_key": target.public_key}
        if target.lan_addrs:
            reply["lan_addrs"] = list(target.lan_addrs)
        return reply

    def _resolve_hostname(self, request, peer, now):
        hostname = fields.text(request, "hostname", max_length=256)
        if not hostname:
            raise RequestError("hostname required")
        requester_id = fields.uint(request, "requester_id", default=0)
        node_id = self.directory.hostname_holder(hostname)
        node = self.directory.nodes.get(node_id) if node_id is not None else None
        # A private node's name is as unknown to strangers as a name nobody holds.
        if node is None or not self.registry.visible_to(node, requester_id):
            raise RequestError(f'hostname "{hostname}" not found', code=NOT_FOUND)
        return {"type": "resolve_hostname_ok", "node_id": node.id,
                "address": address_text(BACKBONE, node.id), "public": node.public,
                "hostname": node.hostname}

    def _list_nodes(self, request, peer, now):
        network_id = fields.uint(request, "network_id", fields.MAX_U16, default=0)
        directory = self.directory
        if network_id == BACKBONE:
            if not self.registry.is_admin(request):
                raise RequestError("listing backbone nodes is not permitted "
                                   "(use lookup with a specific node_id)")
            members = sorted(directory.nodes)
        else:
            network = directory.networks.get(network_id)
            if network is None:
                raise RequestError(f"network {network_id}: network not found", code=NOT_FOUND)
            members = sorted(network.members)
        listed = []
        for node_id in members:
            entry = {"node_id": node_id, "address": address_text(network_id, node_id)}
            node = directory.nodes.get(node_id)
            if node is None:
                entry["offline"] = True
            else:
                self._describe(node, entry)
            if network_id != BACKBONE:
                entry["role"] = directory.role_of(network, node_id)
                member_tags = directory.tags_of(network_id, node_id)
                if member_tags:
                    entry["member_tags"] = list(member_tags)
            listed.append(entry)
        return {"type": "list_nodes_ok", "network_id": network_id, "nodes": listed}

    # -- node settings -----------------------------------------------------------

    def _set_hostname(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        hostname = fields.text(request, "hostname", max_length=256)
        node = self.registry.authenticate(request, "set_hostname", {"node_id": node_id},
                                          node_id, now)
        try:
            check_hostname(hostname)
        except RequestError as error:
            raise RequestError(f"invalid hostname: {error.message}") from None
        self.directory.set_hostname(node, hostname)
        return {"type": "set_hostname_ok", "node_id": node_id, "hostname": hostname}

    def _set_tags(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        raw_tags = fields.strings(request, "tags", max_items=64, max_length=64)
        node = self.registry.authenticate(request, "set_tags", {"node_id": node_id}, node_id, now)
        node.tags = tuple(normalize_tags(raw_tags))
        self.directory.save_node(node)
        return {"type": "set_tags_ok", "node_id": node_id, "tags": list(node.tags)}

    def _set_visibility(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        public = fields.flag(request, "public")
        node = self.registry.authenticate(request, "set_visibility", {"node_id": node_id},
                                          node_id, now)
        node.public = public
        self.directory.save_node(node)
        return {"type": "set_visibility_ok", "node_id": node_id,
                "visibility": "public" if public else "private"}

    def _set_task_exec(self, request, peer, now):
        node_id = fields.uint(request, "node_id")
        enabled = fields.flag(request, "enabled")
        node = self.registry.authenticate(request, "set_task_exec", {"node_id": node_id},
                                          node_id, now)
        node.task_exec = enabled
        self.directory.save_node(node)
        return {"type": "set_task_exec_ok", "node_id": node_id, "task_exec": enabled}
