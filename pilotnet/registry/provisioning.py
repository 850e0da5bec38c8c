"""Provisioning: a whole set-up from one blueprint, and network membership from the operator's directory.

* ``provision_network {blueprint}``: networks (with their members, admins,
  policies), the registry webhook, the audit export and the identity provider,
  declared in one JSON document (docs/audit.md, "Blueprints").  The blueprint
  is checked whole before anything changes; then each part is carried out by
  the registry's own message for it (``create_network``, ``join_network``,
  ``set_webhook``...), so the rules, refusals and audit entries are those
  messages' own.  Provisioning converges: a network that exists is brought to
  the blueprint (missing members joined, policies set), so running a
  blueprint again is safe, and is how a partly applied one is finished.
* ``deprovision_network {name}``, ``get_provision_status``.
* ``directory_sync {network_id | network, entries, remove_unlisted}``: the
  entries of a directory (``{external_id, role?, disabled?}``) decide who is a
  member of a network.  Nodes whose external ID (:mod:`pilotnet.registry.identity`)
  is listed join it (with their role); listed IDs no node holds yet wait as
  assignments, applied when a node gets that ID (on an invite-only network
  they are invited: they join by accepting); disabled entries, and with
  ``remove_unlisted`` members whose external ID is not listed, are removed.
  Members without an external ID are not the directory's, and stay.
  ``directory_status {network_id}``.

All admin messages.  Sans-IO, like every concern.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from pilotnet.errors import NOT_FOUND
from pilotnet.registry import requests as fields
from pilotnet.registry.audit import rfc3339
from pilotnet.registry.dispatch import Peer, Reply, Request, Route
from pilotnet.registry.entities import KeyedEntities
from pilotnet.registry.identity import MAX_EXTERNAL_ID, Identities
from pilotnet.registry.requests import RequestError
from pilotnet.registry.validation import check_network_name

PROVISION_KIND = "provision"
SYNC_KIND = "directory_sync"
MAX_NETWORKS = 64
MAX_MEMBERS = 1000
MAX_PORTS = 1024
MAX_ENTRIES = 10_000
MAX_EXPR_POLICY = 64 * 1024
MAX_ERRORS = 20
JOIN_RULES = ("open", "token", "invite")
SYNC_ROLES = ("member", "admin")
#: What a blueprint may hold, at the top and per network (a typo is refused, not ignored).
BLUEPRINT_KEYS = frozenset({"name", "networks", "webhook", "audit_export", "identity"})
NETWORK_KEYS = frozenset({"name", "join_rule", "token", "enterprise", "owner", "members", "admins", "policy",
                          "expr_policy"})
POLICY_KEYS = frozenset({"max_members", "allowed_ports", "description"})
WEBHOOK_KEYS = frozenset({"url", "secret"})
EXPORT_KEYS = frozenset({"format", "endpoint", "splunk_token", "index", "source", "secret"})
IDENTITY_KEYS = frozenset({"idp_type", "url", "issuer", "client_id", "tenant_id", "domain", "secret"})


class Dispatch:
    """Runs one of the registry's own messages with its admin authority (provisioning's hands)."""

    PEER = ("provisioning", 0)

    def __init__(self, registry) -> None:
        self._registry = registry

    def __call__(self, request: Request, now: float) -> Reply:
        registry = self._registry
        return registry.handle({**request, "admin_token": registry.admin_token}, self.PEER, now)


@dataclass
class NetworkSpec:
    name: str
    join_rule: str = "open"
    token: str = ""
    enterprise: bool = False
    owner: int | None = None
    members: list[int] = field(default_factory=list)
    admins: list[int] = field(default_factory=list)
    policy: dict | None = None
    expr_policy: Any = None


@dataclass
class Blueprint:
    name: str = ""
    networks: list[NetworkSpec] = field(default_factory=list)
    #: ``(message type, its fields)`` of the registry-wide settings, in the order they are applied.
    settings: list[tuple[str, dict]] = field(default_factory=list)


def _object(value, where: str, allowed: frozenset) -> dict:
    if not isinstance(value, dict):
        raise RequestError(f"blueprint: {where} must be an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise RequestError(f'blueprint: {where} has an unknown field "{unknown[0]}"',
                           hint=f"allowed: {', '.join(sorted(allowed))}")
    return value


def _node_ids(value, where: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_MEMBERS:
        raise RequestError(f"blueprint: {where} must be a list of at most {MAX_MEMBERS} node IDs")
    return [fields.uint({"id": item}, "id") for item in value]


def _network_spec(value, where: str) -> NetworkSpec:
    raw = _object(value, where, NETWORK_KEYS)
    try:
        name = fields.text(raw, "name", max_length=63)
        check_network_name(name)
        spec = NetworkSpec(
            name=name, join_rule=fields.text(raw, "join_rule", default="open") or "open",
            token=fields.text(raw, "token", max_length=256), enterprise=fields.flag(raw, "enterprise"),
            owner=fields.uint(raw, "owner") if raw.get("owner") is not None else None,
            members=_node_ids(raw.get("members"), f"{where}.members"),
            admins=_node_ids(raw.get("admins"), f"{where}.admins"))
    except RequestError as error:
        raise RequestError(f"blueprint: {where}: {error.message}") from None
    if spec.join_rule not in JOIN_RULES:
        raise RequestError(f'blueprint: {where}.join_rule must be one of {", ".join(JOIN_RULES)}')
    if raw.get("policy") is not None:
        policy = _object(raw["policy"], f"{where}.policy", POLICY_KEYS)
        checked: dict = {}
        try:
            if policy.get("max_members") is not None:
                checked["max_members"] = fields.uint(policy, "max_members")
            if policy.get("allowed_ports") is not None:
                ports = policy["allowed_ports"]
                if not isinstance(ports, list) or len(ports) > MAX_PORTS:
                    raise RequestError(f"allowed_ports must be a list of at most {MAX_PORTS} ports")
                checked["allowed_ports"] = [fields.uint({"port": port}, "port", fields.MAX_U16) for port in ports]
            if policy.get("description") is not None:
                checked["description"] = fields.text(policy, "description", max_length=256)
        except RequestError as error:
            raise RequestError(f"blueprint: {where}.policy: {error.message}") from None
        spec.policy = checked
    if raw.get("expr_policy") is not None:
        expr = raw["expr_policy"]
        if not isinstance(expr, (str, dict)) or len(json.dumps(expr)) > MAX_EXPR_POLICY:
            raise RequestError(f"blueprint: {where}.expr_policy must be a string or an object of at most "
                               f"{MAX_EXPR_POLICY} bytes")
        spec.expr_policy = expr
    return spec


def read_blueprint(value) -> Blueprint:
    """A blueprint (an object, or the JSON text of one) checked for shape; :class:`RequestError` says where not."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise RequestError(f"blueprint is not JSON: {error}") from None
    raw = _object(value, "the blueprint", BLUEPRINT_KEYS)
    networks = raw.get("networks") or []
    if not isinstance(networks, list) or len(networks) > MAX_NETWORKS:
        raise RequestError(f"blueprint: networks must be a list of at most {MAX_NETWORKS} networks")
    try:
        blueprint = Blueprint(name=fields.text(raw, "name", max_length=64))
    except RequestError as error:
        raise RequestError(f"blueprint: {error.message}") from None
    blueprint.networks = [_network_spec(item, f"networks[{index}]") for index, item in enumerate(networks)]
    names = [spec.name for spec in blueprint.networks]
    if len(set(names)) != len(names):
        raise RequestError("blueprint: a network is named twice")
    for key, kind, allowed in (("identity", "set_idp_config", IDENTITY_KEYS), ("webhook", "set_webhook", WEBHOOK_KEYS),
                               ("audit_export", "set_audit_export", EXPORT_KEYS)):
        if raw.get(key) is not None:
            blueprint.settings.append((kind, dict(_object(raw[key], key, allowed))))
    if not blueprint.networks and not blueprint.settings:
        raise RequestError("blueprint: nothing to provision (no networks, webhook, audit_export or identity)")
    return blueprint


class StepFailed(RequestError):
    """One of a blueprint's steps was refused: provisioning stops there."""


class Provisioning:
    """Blueprints and directory sync over the registry's own messages."""

    def __init__(self, core, dispatch: Dispatch, identities: Identities) -> None:
        self.core = core
        self.directory = core.directory
        self._dispatch = dispatch
        self._identities = identities
        self.state = KeyedEntities(PROVISION_KIND, SYNC_KIND)
        core.directory.attach(self.state)
        identities.external_id_observers.append(self._external_id_set)

    def counts(self) -> tuple[int, int]:
        """How many networks were provisioned, and how many are synchronised with a directory (metrics)."""
        return len(self.state.items(PROVISION_KIND)), len(self.state.items(SYNC_KIND))

    def routes(self) -> list[Route]:
        return [Route("provision_network", self._admin(self._provision)),
                Route("deprovision_network", self._admin(self._deprovision)),
                Route("get_provision_status", self._admin(self._status), on_standby=True),
                Route("directory_sync", self._admin(self._directory_sync)),
                Route("directory_status", self._admin(self._directory_status), on_standby=True)]

    def _admin(self, handler: Callable) -> Callable:
        def checked(request: Request, peer: Peer, now: float) -> Reply:
            self.core.require_admin(request)
            return handler(request, now)
        return checked

    def _run(self, step: str, request: dict, now: float) -> dict:
        reply = self._dispatch(request, now)
        if reply.get("type") == "error":
            raise StepFailed(f"{step}: {reply.get('error')}", code=reply.get("code"))
        return reply

    def _member(self, network_id: int, node_id: int) -> bool:
        return network_id in self.directory.networks_of(node_id)

    # -- blueprints ------------------------------------------------------------------

    def _provision(self, request: Request, now: float) -> Reply:
        blueprint = read_blueprint(request.get("blueprint"))
        self._check(blueprint)
        done: dict = {"networks": []}
        try:
            for kind, settings in blueprint.settings:
                self._run(kind, {"type": kind, **settings}, now)
                done[kind.removeprefix("set_")] = True
            for spec in blueprint.networks:
                done["networks"].append(self._provision_network(spec, blueprint.name, now))
        except StepFailed as error:
            raise StepFailed(f"provisioning stopped at {error.message}", code=error.code,
                             hint="what came before it is applied; fix the blueprint and provision it again "
                                  "(it converges)") from None
        return {"type": "provision_network_ok", "blueprint": blueprint.name, **done}

    def _check(self, blueprint: Blueprint) -> None:
        """Refuse, before anything changes, what a later step would refuse midway."""
        for spec in blueprint.networks:
            existing = self.directory.network_by_name(spec.name)
            if existing is None:
                if spec.owner is None:
                    raise RequestError(f"blueprint: network {spec.name} does not exist yet, so it needs an owner "
                                       "(the node ID that creates it)")
                self.core.node(spec.owner)
            enterprise = spec.enterprise or (existing is not None and existing.enterprise)
            for what, wanted in (("policy", spec.policy is not None), ("admins", bool(spec.admins)),
                                 ('join_rule "invite"', spec.join_rule == "invite")):
                if wanted and not enterprise:
                    raise RequestError(f'blueprint: network {spec.name}: {what} needs an enterprise network '
                                       '("enterprise": true)')
            for node_id in spec.members + spec.admins:
                self.core.node(node_id)

    def _provision_network(self, spec: NetworkSpec, blueprint: str, now: float) -> dict:
        existing = self.directory.network_by_name(spec.name)
        if existing is None:
            create = {"type": "create_network", "node_id": spec.owner, "name": spec.name, "join_rule": spec.join_rule,
                      "token": spec.token}
            if spec.enterprise:
                create["enterprise"] = True
            network_id = self._run(f'create network "{spec.name}"', create, now)["network_id"]
        else:
            network_id = existing.id
            if spec.enterprise and not existing.enterprise:
                self._run(f"make {spec.name} an enterprise network",
                          {"type": "set_network_enterprise", "network_id": network_id, "enterprise": True}, now)
        joined: list[int] = []
        invited: list[int] = []
        for node_id in dict.fromkeys(spec.members + spec.admins):
            if not self._member(network_id, node_id):
                added = self._add(network_id, node_id, now)
                (joined if added == "joined" else invited).append(node_id)
        for node_id in spec.admins:
            if self._member(network_id, node_id):
                self._promote(network_id, node_id, now)
        if spec.policy is not None:
            self._run(f"set the policy of {spec.name}",
                      {"type": "set_network_policy", "network_id": network_id, **spec.policy}, now)
        if spec.expr_policy is not None:
            self._run(f"set the expression policy of {spec.name}",
                      {"type": "set_expr_policy", "network_id": network_id, "expr_policy": spec.expr_policy}, now)
        self.state.put(PROVISION_KIND, spec.name, {"network_id": network_id, "blueprint": blueprint,
                                                   "provisioned_at": now})
        self.core.audit.record("network.provisioned", now, network_id=network_id, name=spec.name,
                               blueprint=blueprint, created=existing is None)
        return {"name": spec.name, "network_id": network_id, "created": existing is None, "joined": joined,
                "invited": invited}

    def _add(self, network_id: int, node_id: int, now: float) -> str:
        """Make ``node_id`` a member: joined, or, on an invite-only network, invited by its owner.

        The invite rule means a node joins by accepting (``pilotctl network accept``):
        not even the admin may put it in without its consent.
        """
        network = self.directory.networks[network_id]
        if network.join_rule == "invite":
            owner = self.directory.owner_of(network)
            self._run(f"invite node {node_id} to {network.name}",
                      {"type": "invite_to_network", "network_id": network_id, "inviter_id": owner,
                       "target_node_id": node_id}, now)
            return "invited"
        self._run(f"join node {node_id} to {network.name}",
                  {"type": "join_network", "node_id": node_id, "network_id": network_id}, now)
        return "joined"

    def _promote(self, network_id: int, node_id: int, now: float) -> None:
        role = self._dispatch({"type": "get_member_role", "network_id": network_id, "target_node_id": node_id}, now)
        if role.get("role") in ("admin", "owner"):
            return
        self._run(f"make node {node_id} an admin of network {network_id}",
                  {"type": "promote_member", "network_id": network_id, "target_node_id": node_id}, now)

    def _deprovision(self, request: Request, now: float) -> Reply:
        name = fields.text(request, "name", max_length=63)
        record = self.state.get(PROVISION_KIND, name)
        if record is None:
            raise RequestError(f'network "{name}" was not provisioned here', code=NOT_FOUND,
                               hint="pilotctl provision-status lists what was")
        network = self.directory.network_by_name(name)
        if network is not None:
            self._run(f'delete network "{name}"', {"type": "delete_network", "network_id": network.id}, now)
        self.state.delete(PROVISION_KIND, name)
        return {"type": "deprovision_network_ok", "name": name, "network_id": record["network_id"],
                "deleted": network is not None}

    def _status(self, request: Request, now: float) -> Reply:
        listed = []
        for name, record in sorted(self.state.items(PROVISION_KIND).items()):
            network = self.directory.network_by_name(name)
            listed.append({"name": name, "network_id": record["network_id"], "blueprint": record["blueprint"],
                           "provisioned_at": rfc3339(record["provisioned_at"]), "exists": network is not None,
                           "members": len(network.members) if network is not None else 0})
        idp = self._identities.idp()
        return {"type": "get_provision_status_ok", "networks": listed,
                "webhook": "webhook" in self.core.audit.settings, "audit_export": "export" in self.core.audit.settings,
                "idp": idp["idp_type"] if idp else ""}

    # -- directory sync ------------------------------------------------------------

    def _sync_network(self, request) -> int:
        if request.get("network") is not None:
            name = fields.text(request, "network", max_length=63)
            network = self.directory.network_by_name(name)
            if network is None:
                raise RequestError(f'network "{name}" not found', code=NOT_FOUND)
            return network.id
        network_id = fields.uint(request, "network_id", fields.MAX_U16)
        if network_id not in self.directory.networks:
            raise RequestError(f"network {network_id}: network not found", code=NOT_FOUND)
        return network_id

    def _directory_sync(self, request: Request, now: float) -> Reply:
        network_id = self._sync_network(request)
        remove_unlisted = fields.flag(request, "remove_unlisted")
        assignments, disabled = read_directory(request.get("entries"))
        if "admin" in assignments.values() and not self.directory.networks[network_id].enterprise:
            raise RequestError(f"directory role admin needs an enterprise network (network {network_id} is not)")
        errors: list[str] = []
        matched, pending = [], []
        for external_id, role in assignments.items():
            nodes = self._identities.nodes_with(external_id)
            if not nodes:
                pending.append(external_id)
            for node_id in nodes:
                if self._assign(network_id, node_id, role, now, errors):
                    matched.append(node_id)
        removed = []
        for node_id in sorted(self.directory.networks[network_id].members):
            external_id = self._identities.external_id(node_id)
            if external_id and (external_id in disabled or (remove_unlisted and external_id not in assignments)):
                if self._remove(network_id, node_id, now, errors):
                    removed.append(node_id)
        record = {"network_id": network_id, "synced_at": now, "entries": len(assignments) + len(disabled),
                  "assignments": assignments, "matched": sorted(matched), "removed": removed,
                  "remove_unlisted": remove_unlisted, "errors": errors[:MAX_ERRORS]}
        self.state.put(SYNC_KIND, str(network_id), record)
        self.core.audit.record("directory.synced", now, network_id=network_id, entries=record["entries"],
                               matched=len(matched), pending=len(pending), removed=len(removed))
        return {"type": "directory_sync_ok", **_sync_view(record), "pending": pending}

    def _assign(self, network_id: int, node_id: int, role: str, now: float, errors: list[str]) -> bool:
        """Make the node a member with ``role``; False if it is only invited, or was refused (in ``errors``)."""
        try:
            if not self._member(network_id, node_id) and self._add(network_id, node_id, now) == "invited":
                return False
            if role == "admin":
                self._promote(network_id, node_id, now)
        except StepFailed as error:
            errors.append(error.message)
            return False
        return True

    def _remove(self, network_id: int, node_id: int, now: float, errors: list[str]) -> bool:
        # Kicking is the enterprise way (roles, invitations); elsewhere the admin makes the node leave.
        if self.directory.networks[network_id].enterprise:
            request = {"type": "kick_member", "network_id": network_id, "target_node_id": node_id}
        else:
            request = {"type": "leave_network", "node_id": node_id, "network_id": network_id}
        try:
            self._run(f"remove node {node_id}", request, now)
        except StepFailed as error:
            errors.append(error.message)
            return False
        return True

    def _external_id_set(self, node_id: int, external_id: str, now: float) -> None:
        """A node got an external ID: the directories that list it assign it now."""
        for key, record in list(self.state.items(SYNC_KIND).items()):
            role = record["assignments"].get(external_id)
            network_id = record["network_id"]
            if role is None or network_id not in self.directory.networks:
                continue
            errors: list[str] = []
            if self._assign(network_id, node_id, role, now, errors):
                self.state.put(SYNC_KIND, key, {**record, "matched": sorted({*record["matched"], node_id})})
            else:
                self.state.put(SYNC_KIND, key, {**record, "errors": (record["errors"] + errors)[-MAX_ERRORS:]})

    def _directory_status(self, request: Request, now: float) -> Reply:
        network_id = fields.uint(request, "network_id", fields.MAX_U16)
        record = self.state.get(SYNC_KIND, str(network_id))
        if record is None:
            raise RequestError(f"network {network_id} was never synchronised with a directory", code=NOT_FOUND,
                               hint="pilotctl directory-sync <directory.json> --network <id>")
        network = self.directory.networks.get(network_id)
        pending = [external_id for external_id in record["assignments"]
                   if not self._identities.nodes_with(external_id)]
        return {"type": "directory_status_ok", **_sync_view(record), "pending": pending,
                "members": len(network.members) if network is not None else 0, "exists": network is not None}


def read_directory(entries) -> tuple[dict[str, str], set[str]]:
    """A directory's entries as (external ID -> role of those enabled, external IDs disabled)."""
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise RequestError(f"entries must be a list of at most {MAX_ENTRIES} directory entries")
    assignments: dict[str, str] = {}
    disabled: set[str] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise RequestError(f"entries[{index}] must be an object with external_id")
        try:
            external_id = fields.text(entry, "external_id", max_length=MAX_EXTERNAL_ID)
            role = fields.text(entry, "role", default="member", max_length=16) or "member"
            off = fields.flag(entry, "disabled")
        except RequestError as error:
            raise RequestError(f"entries[{index}]: {error.message}") from None
        if not external_id or not external_id.isprintable():
            raise RequestError(f"entries[{index}]: external_id required (printable text)")
        if role not in SYNC_ROLES:
            raise RequestError(f'entries[{index}]: role must be {" or ".join(SYNC_ROLES)}, not "{role}"')
        if external_id in assignments or external_id in disabled:
            raise RequestError(f'entries[{index}]: external_id "{external_id}" is listed twice')
        if off:
            disabled.add(external_id)
        else:
            assignments[external_id] = role
    return assignments, disabled


def _sync_view(record: dict) -> dict:
    return {"network_id": record["network_id"], "synced_at": rfc3339(record["synced_at"]),
            "entries": record["entries"], "matched": record["matched"], "removed": record["removed"],
            "remove_unlisted": record["remove_unlisted"], "errors": record["errors"]}
