"""The registry's networks: creation, membership, invitations, roles and policies (controlplane §1.9.2).

Every message of the reference's network catalogue, with its error texts and
limits.  Who may do what:

* **create_network** and **set_network_enterprise** need the global admin token.
* **join / leave / invite / poll_invites / respond_invite** are signed by the
  node they act for (the reference's challenges, or our fresh form); the
  global admin token stands in for join, leave and invite, as in the reference.
* **Management** (delete, rename, kick, promote, demote, transfer_ownership,
  set_network_policy, set_expr_policy, set_member_tags) needs the global admin
  token, the network's own admin token, or a member with the right role.  The
  reference takes that member's ``node_id`` on its word; we take it only with
  the node's fresh signature (timestamp, nonce, ``request_signature`` over
  every field), so a role cannot be borrowed by naming its holder.
* Reads (get_member_role, get_network_policy, get_expr_policy, get_member_tags,
  list_networks) are open, as in the reference.

Roles: the creator is the ``owner``; the owner promotes members to ``admin``
and demotes them back; owners and admins kick (never the owner); the owner
hands the network over with transfer_ownership (and becomes an admin).  Kick,
promote, demote, transfer, invitations and the network policy need an
``enterprise`` network, as in the reference.

Unlike the reference we keep roles when the enterprise flag is switched off
(it drops them, leaving a network nobody may manage without a token), and an
expired invitation neither blocks a new one nor counts against the inbox.
"""

import hmac

from pilotnet.errors import ALREADY_EXISTS, NOT_FOUND, REFUSED
from pilotnet.registry import network_rules
from pilotnet.registry import requests as fields
from pilotnet.registry.challenges import FRESH_FIELD
from pilotnet.registry.directory import ADMIN, BACKBONE, MEMBER, OWNER, Network, address_text
from pilotnet.registry.dispatch import Peer, RegistryCore, Reply, Request, Route
from pilotnet.registry.requests import RequestError
from pilotnet.registry.validation import check_network_name, normalize_tags

JOIN_RULES = ("open", "token", "invite")
MAX_TOKEN = 256
MAX_INVITES = 100
INVITE_TTL = 30 * 24 * 3600.0
ENTERPRISE_REQUIRED = "enterprise feature: requires enterprise network"


def network_not_found(network_id: int) -> RequestError:
    return RequestError(f"network {network_id}: network not found", code=NOT_FOUND)


def not_a_member(node_id: int, network_id: int) -> RequestError:
    return RequestError(f"node {node_id} is not a member of network {network_id}", code=NOT_FOUND)


def _same_secret(offered: object, expected: str) -> bool:
    """Constant-time comparison of a token from a request with a non-empty secret."""
    if not expected or not isinstance(offered, str) or not offered:
        return False
    return hmac.compare_digest(offered.encode("utf-8"), expected.encode("utf-8"))


class NetworkHandlers:
    """The network messages, over the registry's directory."""

    def __init__(self, core: RegistryCore) -> None:
        self.core = core

    def routes(self) -> list[Route]:
        return [
            Route("list_networks", self.list_networks, on_standby=True),
            Route("create_network", self.create_network),
            Route("join_network", self.join_network, admin_override=True),
            Route("leave_network", self.leave_network, admin_override=True),
            Route("delete_network", self.delete_network),
            Route("rename_network", self.rename_network),
            Route("set_network_enterprise", self.set_network_enterprise),
            Route("invite_to_network", self.invite_to_network, admin_override=True),
            Route("poll_invites", self.poll_invites, on_standby=True),
            Route("respond_invite", self.respond_invite),
            Route("kick_member", self.kick_member),
            Route("promote_member", self.promote_member),
            Route("demote_member", self.demote_member),
            Route("transfer_ownership", self.transfer_ownership),
            Route("get_member_role", self.get_member_role, on_standby=True),
            Route("set_network_policy", self.set_network_policy),
            Route("get_network_policy", self.get_network_policy, on_standby=True),
            Route("set_expr_policy", self.set_expr_policy),
            Route("get_expr_policy", self.get_expr_policy),
            Route("set_member_tags", self.set_member_tags),
            Route("get_member_tags", self.get_member_tags),
        ]

    # -- shared checks ---------------------------------------------------------

    @property
    def directory(self):
        return self.core.directory

    def network(self, network_id: int) -> Network:
        network = self.directory.networks.get(network_id)
        if network is None:
            raise network_not_found(network_id)
        return network

    def _network_id(self, request: Request) -> int:
        return fields.uint(request, "network_id", fields.MAX_U16)

    def _registered(self, node_id: int) -> None:
        if node_id not in self.directory.nodes:
            raise RequestError(f"node {node_id} not registered", code=NOT_FOUND)

    def _holds_token(self, request: Request, network: Network | None) -> bool:
        """The global admin token, or this network's own."""
        return self.core.is_admin(request) or (
            network is not None and _same_secret(request.get("admin_token"), network.admin_token))

    def _require_role(self, request: Request, kind: str, network_id: int, now: float,
                      *allowed: str) -> int | None:
        """Authorise a management request: a token, or a signed request of a member in ``allowed``.

        Returns the acting node's ID (None when a token authorised it).
        """
        network = self.directory.networks.get(network_id)
        if self._holds_token(request, network):
            return None
        if network is None:
            raise network_not_found(network_id)
        node_id = fields.uint(request, "node_id", default=0)
        if node_id == 0:
            raise RequestError("rbac: node_id required for role-based authorization")
        if FRESH_FIELD not in request:
            raise RequestError(
                f"{kind} by node_id needs the node's signature over the request",
                hint="send timestamp, nonce and request_signature (pilotnet clients do), "
                     "or an admin_token")
        self.core.authenticate(request, kind, {"node_id": node_id}, node_id, now)
        role = self.directory.role_of(network, node_id)
        if role is None:
            raise RequestError(f"rbac: node {node_id} has no role in network {network_id}")
        if role not in allowed:
            raise RequestError(f"rbac: node {node_id} has role {role!r}, "
                               f"requires one of [{' '.join(allowed)}]")
        return node_id

    def _require_enterprise(self, network: Network) -> None:
        if not network.enterprise:
            raise RequestError(ENTERPRISE_REQUIRED)

    def _check_room(self, network: Network) -> None:
        if network.max_members and len(network.members) >= network.max_members:
            raise RequestError("network membership limit reached")

    def _live_invites(self, target: int, now: float) -> dict:
        """``target``'s unexpired invitations; the expired ones are dropped."""
        pending = self.directory.invites_of(target)
        for network_id in [n for n, invite in pending.items() if now - invite.timestamp > INVITE_TTL]:
            self.directory.remove_invite(target, network_id)
        return self.directory.invites_of(target)

    def _leave(self, network: Network, node_id: int) -> None:
        """``node_id`` is no member any more; its invitations to and from this network go too."""
        self.directory.remove_member(network, node_id)
        self.directory.remove_invite(node_id, network.id)
        self.directory.revoke_invites_from(node_id, network.id)

    # -- listing ---------------------------------------------------------------

    def list_networks(self, request: Request, peer: Peer, now: float) -> Reply:
        directory = self.directory
        listed = [{"id": BACKBONE, "name": "backbone", "members": len(directory.nodes),
                   "join_rule": "open", "enterprise": False, "created": int(directory.started)}]
        for network in sorted(directory.networks.values(), key=lambda n: n.id):
            entry = {"id": network.id, "name": network.name, "members": len(network.members),
                     "join_rule": network.join_rule, "enterprise": network.enterprise,
                     "created": int(network.created)}
            if network.enterprise and network.max_members:
                entry["max_members"] = network.max_members
            if network.enterprise and network.description:
                entry["description"] = network.description
            if network.rules is not None:
                entry.update(managed=True, rules=network.rules)
            if network.expr_policy is not None:
                entry["has_expr_policy"] = True
            listed.append(entry)
        return {"type": "list_networks_ok", "networks": listed}

    # -- creation and settings ---------------------------------------------------

    def create_network(self, request: Request, peer: Peer, now: float) -> Reply:
        self.core.require_admin(request)
        node_id = fields.uint(request, "node_id")
        name = fields.text(request, "name", max_length=256)
        join_rule = fields.text(request, "join_rule", max_length=16) or "open"
        token = fields.text(request, "token", max_length=MAX_TOKEN)
        admin_token = fields.text(request, "network_admin_token", max_length=MAX_TOKEN)
        enterprise = fields.flag(request, "enterprise")
        rules = network_rules.parse_rules(request.get("rules"))
        expr_policy = network_rules.parse_expr_policy(request.get("expr_policy"))
        check_network_name(name)
        if join_rule not in JOIN_RULES:
            raise RequestError(f'invalid join_rule "{join_rule}" (want {"|".join(JOIN_RULES)})')
        if join_rule == "invite" and not enterprise:
            raise RequestError(
                "enterprise feature: invite-only networks require the enterprise flag")
        if join_rule == "token" and not token:
            raise RequestError("token required for a network with join_rule token")
        self._registered(node_id)
        if self.directory.network_by_name(name) is not None:
            raise RequestError(f'network "{name}" already exists', code=ALREADY_EXISTS)
        network = Network(id=self.directory.allocate_network_id(), name=name, join_rule=join_rule,
                          token=token, members=set(), created=now, enterprise=enterprise,
                          admin_token=admin_token, rules=rules, expr_policy=expr_policy)
        self.directory.add_member(network, node_id, OWNER)
        reply = {"type": "create_network_ok", "network_id": network.id, "name": name,
                 "join_rule": join_rule, "enterprise": enterprise}
        if rules is not None:
            reply["managed"] = True
        return reply

    def delete_network(self, request: Request, peer: Peer, now: float) -> Reply:
        network_id = self._network_id(request)
        if network_id == BACKBONE:
            raise RequestError("cannot delete the backbone network")
        self._require_role(request, "delete_network", network_id, now, OWNER)
        self.directory.delete_network(self.network(network_id))
        return {"type": "delete_network_ok", "network_id": network_id}

    def rename_network(self, request: Request, peer: Peer, now: float) -> Reply:
        network_id = self._network_id(request)
        if network_id == BACKBONE:
            raise RequestError("cannot rename the backbone network")
        name = fields.text(request, "name", max_length=256)
        self._require_role(request, "rename_network", network_id, now, OWNER, ADMIN)
        check_network_name(name)
        network = self.network(network_id)
        holder = self.directory.network_by_name(name)
        if holder is not None and holder.id != network_id:
            raise RequestError(f'network "{name}" already exists', code=ALREADY_EXISTS)
        network.name = name
        self.directory.save_network(network)
        return {"type": "rename_network_ok", "network_id": network_id, "name": name}

    def set_network_enterprise(self, request: Request, peer: Peer, now: float) -> Reply:
        network_id = self._network_id(request)
        enterprise = fields.flag(request, "enterprise")
        if network_id == BACKBONE:
            raise RequestError("cannot set enterprise on the backbone network")
        if not self.core.is_admin(request):
            raise RequestError("set_network_enterprise requires admin token")
        network = self.network(network_id)
        network.enterprise = enterprise
        self.directory.save_network(network)
        if enterprise and network.members and self.directory.owner_of(network) is None:
            # The reference makes the first member the owner; our members are a set: the oldest ID.
            self.directory.set_role(network_id, min(network.members), OWNER)
        return {"type": "set_network_enterprise_ok", "network_id": network_id,
                "enterprise": enterprise}

    # -- membership ----------------------------------------------------------------

    def _membership(self, request: Request, kind: str, now: float) -> tuple[int, int]:
        node_id = fields.uint(request, "node_id")
        network_id = self._network_id(request)
        if network_id == BACKBONE:
            verb = "join" if kind == "join_network" else "leave"
            raise RequestError(f"cannot {verb} the backbone network")
        self._registered(node_id)
        self.core.authenticate(request, kind, {"node_id": node_id, "network_id": network_id},
                               node_id, now)
        return node_id, network_id

    def join_network(self, request: Request, peer: Peer, now: float) -> Reply:
        node_id, network_id = self._membership(request, "join_network", now)
        network = self.network(network_id)
        if network.join_rule == "token" and not self.core.is_admin(request):
            token = fields.text(request, "token", max_length=MAX_TOKEN)
            if not _same_secret(token, network.token):
                raise RequestError(f"invalid token for network {network_id}")
        elif network.join_rule == "invite":
            raise RequestError(
                "invite-only networks require invite_to_network + respond_invite flow")
        self._check_room(network)
        if node_id in network.members:
            raise RequestError(f"node {node_id} already in network {network_id}",
                               code=ALREADY_EXISTS)
        self.directory.add_member(network, node_id)
        reply = {"type": "join_network_ok", "network_id": network_id,
                 "address": address_text(network_id, node_id)}
        if network.rules is not None:
            reply["rules"] = network.rules
        if network.expr_policy is not None:
            reply["expr_policy"] = network.expr_policy
        return reply

    def leave_network(self, request: Request, peer: Peer, now: float) -> Reply:
        node_id, network_id = self._membership(request, "leave_network", now)
        network = self.network(network_id)
        role = self.directory.role_of(network, node_id)
        if network.enterprise and role == OWNER:
            raise RequestError("cannot leave network: owner must transfer ownership first")
        if role is None:
            raise not_a_member(node_id, network_id)
        self._leave(network, node_id)
        return {"type": "leave_network_ok", "network_id": network_id}

    # -- invitations -------------------------------------------------------------------

    def invite_to_network(self, request: Request, peer: Peer, now: float) -> Reply:
        network_id = self._network_id(request)
        inviter_id = fields.uint(request, "inviter_id")
        target_id = fields.uint(request, "target_node_id")
        if inviter_id == target_id:
            raise RequestError("cannot invite yourself")
        if inviter_id not in self.directory.nodes:
            raise RequestError(f"inviter node {inviter_id}: node not found", code=NOT_FOUND)
        network = self.directory.networks.get(network_id)
        privileged = self._holds_token(request, network)
        if not privileged:
            self.core.authenticate(request, "invite_to_network",
                                   {"inviter_id": inviter_id, "network_id": network_id,
                                    "target_node_id": target_id}, inviter_id, now)
        if network is None:
            raise network_not_found(network_id)
        self._require_enterprise(network)
        if network.join_rule != "invite":
            raise RequestError(
                f"network {network_id} is not invite-only (rule: {network.join_rule})")
        if not privileged:
            role = self.directory.role_of(network, inviter_id)
            if role is None:
                raise RequestError(f"inviter {inviter_id} is not a member of network {network_id}")
            if role not in (OWNER, ADMIN):
                raise RequestError(
                    f"rbac: inviter {inviter_id} has role {role!r}, requires owner or admin")
        if target_id not in self.directory.nodes:
            raise RequestError(f"target node {target_id}: node not found", code=NOT_FOUND)
        if target_id in network.members:
            raise RequestError(f"node {target_id} is already a member of network {network_id}",
                               code=ALREADY_EXISTS)
        reply = {"type": "invite_to_network_ok", "network_id": network_id,
                 "target_node_id": target_id}
        pending = self._live_invites(target_id, now)
        if network_id in pending:
            return dict(reply, status="already_invited")
        if len(pending) >= MAX_INVITES:
            # The reference's message; as for a full handshake inbox, the code says the target's
            # inbox refused it, not that the request was malformed.
            raise RequestError(f"invite inbox full for node {target_id}", code=REFUSED)
        self.directory.add_invite(target_id, network_id, inviter_id, now)
        return reply

    def poll_invites(self, request: Request, peer: Peer, now: float) -> Reply:
        """The node's pending invitations, oldest first; polling does not consume them."""
        node_id = fields.uint(request, "node_id")
        self.core.node(node_id)
        self.core.authenticate(request, "poll_invites", {"node_id": node_id}, node_id, now)
        # Read only (a standby answers it too): expired ones are left out here and
        # dropped by the next write that touches the inbox.
        live = [(network_id, invite) for network_id, invite in
                self.directory.invites_of(node_id).items() if now - invite.timestamp <= INVITE_TTL]
        live.sort(key=lambda item: (item[1].timestamp, item[0]))
        return {"type": "poll_invites_ok",
                "invites": [{"network_id": network_id, "inviter_id": invite.inviter_id,
                             "timestamp": int(invite.timestamp)} for network_id, invite in live]}

    def respond_invite(self, request: Request, peer: Peer, now: float) -> Reply:
        node_id = fields.uint(request, "node_id")
        network_id = self._network_id(request)
        accept = fields.flag(request, "accept")
        network = self.network(network_id)
        self._require_enterprise(network)
        self.core.node(node_id)
        self.core.authenticate(request, "respond_invite",
                               {"node_id": node_id, "network_id": network_id}, node_id, now)
        invite = self.directory.invites_of(node_id).get(network_id)
        if invite is None:
            raise RequestError(f"no pending invite for node {node_id} to network {network_id}",
                               code=NOT_FOUND)
        if now - invite.timestamp > INVITE_TTL:
            self.directory.remove_invite(node_id, network_id)
            raise RequestError(f"invite for node {node_id} to network {network_id} has expired")
        reply = {"type": "respond_invite_ok", "accepted": accept, "network_id": network_id}
        if accept:
            # A full network keeps the invitation: the node may accept once there is room.
            self._check_room(network)
            if node_id in network.members:
                raise RequestError(f"node {node_id} is already a member of network {network_id}",
                                   code=ALREADY_EXISTS)
            self.directory.add_member(network, node_id)
            reply["address"] = address_text(network_id, node_id)
        self.directory.remove_invite(node_id, network_id)
        return reply

    # -- roles ------------------------------------------------------------------------

    def _target(self, request: Request, field: str = "target_node_id") -> int:
        return fields.uint(request, field)

    def kick_member(self, request: Request, peer: Peer, now: float) -> Reply:
        network_id = self._network_id(request)
        target_id = self._target(request)
        if network_id == BACKBONE:
            raise RequestError("cannot kick from the backbone network")
        self._require_role(request, "kick_member", network_id, now, OWNER, ADMIN)
        network = self.network(network_id)
        self._require_enterprise(network)
        role = self.directory.role_of(network, target_id)
        if role == OWNER:
            raise RequestError("cannot kick the network owner")
        if role is None:
            raise not_a_member(target_id, network_id)
        self._leave(network, target_id)
        return {"type": "kick_member_ok", "network_id": network_id, "target_node_id": target_id}

    def _change_role(self, request: Request, now: float, kind: str, new_role: str) -> dict:
        network_id = self._network_id(request)
        target_id = self._target(request)
        self._require_role(request, kind, network_id, now, OWNER)
        network = self.network(network_id)
        self._require_enterprise(network)
        role = self.directory.role_of(network, target_id)
        verb = kind.split("_")[0]
        if role is None:
            raise not_a_member(target_id, network_id)
        if role == OWNER:
            raise RequestError(f"cannot {verb} the owner")
        if role == new_role:
            article = "an" if new_role == ADMIN else "a"
            raise RequestError(f"node {target_id} is already {article} {new_role}",
                               code=ALREADY_EXISTS)
        self.directory.set_role(network_id, target_id, new_role)
        return {"type": f"{kind}_ok", "network_id": network_id, "target_node_id": target_id,
                "role": new_role}

    def promote_member(self, request: Request, peer: Peer, now: float) -> Reply:
        return self._change_role(request, now, "promote_member", ADMIN)

    def demote_member(self, request: Request, peer: Peer, now: float) -> Reply:
        return self._change_role(request, now, "demote_member", MEMBER)

    def transfer_ownership(self, request: Request, peer: Peer, now: float) -> Reply:
        network_id = self._network_id(request)
        new_owner = fields.uint(request, "new_owner_id", default=0)
        if new_owner == 0:
            raise RequestError("new_owner_id is required")
        self._require_role(request, "transfer_ownership", network_id, now, OWNER)
        network = self.network(network_id)
        self._require_enterprise(network)
        old_owner = self.directory.owner_of(network)
        if old_owner is None:
            raise RequestError(f"network {network_id} has no owner")
        if new_owner == old_owner:
            raise RequestError(f"node {new_owner} is already the owner", code=ALREADY_EXISTS)
        if self.directory.role_of(network, new_owner) is None:
            raise not_a_member(new_owner, network_id)
        self.directory.set_role(network_id, old_owner, ADMIN)
        self.directory.set_role(network_id, new_owner, OWNER)
        return {"type": "transfer_ownership_ok", "network_id": network_id,
                "old_owner": old_owner, "new_owner": new_owner}

    def get_member_role(self, request: Request, peer: Peer, now: float) -> Reply:
        network_id = self._network_id(request)
        target_id = self._target(request)
        network = self.network(network_id)
        role = self.directory.role_of(network, target_id)
        if role is None:
            raise not_a_member(target_id, network_id)
        return {"type": "get_member_role_ok", "network_id": network_id,
                "target_node_id": target_id, "role": role}

    # -- policies ----------------------------------------------------------------------

    def _policy_reply(self, kind: str, network: Network) -> Reply:
        return {"type": kind, "network_id": network.id, "max_members": network.max_members,
                "allowed_ports": list(network.allowed_ports), "description": network.description}

    def set_network_policy(self, request: Request, peer: Peer, now: float) -> Reply:
        """Set the fields present in the request; the others keep their values."""
        network_id = self._network_id(request)
        self._require_role(request, "set_network_policy", network_id, now, OWNER, ADMIN)
        network = self.network(network_id)
        self._require_enterprise(network)
        max_members, ports, description = (network.max_members, network.allowed_ports,
                                           network.description)
        if request.get("max_members") is not None:
            max_members = network_rules.parse_max_members(request["max_members"])
            if max_members and len(network.members) > max_members:
                raise RequestError(f"cannot set max_members to {max_members}: network already "
                                   f"has {len(network.members)} members")
        if request.get("allowed_ports") is not None:
            ports = network_rules.parse_allowed_ports(request["allowed_ports"])
        if request.get("description") is not None:
            description = network_rules.parse_description(request["description"])
        network.max_members, network.allowed_ports, network.description = (
            max_members, ports, description)
        self.directory.save_network(network)
        return self._policy_reply("set_network_policy_ok", network)

    def get_network_policy(self, request: Request, peer: Peer, now: float) -> Reply:
        return self._policy_reply("get_network_policy_ok", self.network(self._network_id(request)))

    def set_expr_policy(self, request: Request, peer: Peer, now: float) -> Reply:
        """Store the network's expression policy (``""``, ``"null"`` or null clear it)."""
        network_id = self._network_id(request)
        if "expr_policy" not in request:
            raise RequestError("expr_policy required (\"\" clears it)")
        self._require_role(request, "set_expr_policy", network_id, now, OWNER, ADMIN)
        document = network_rules.parse_expr_policy(request["expr_policy"])
        network = self.network(network_id)
        network.expr_policy = document
        self.directory.save_network(network)
        return {"type": "set_expr_policy_ok", "network_id": network_id,
                "cleared": document is None}

    def get_expr_policy(self, request: Request, peer: Peer, now: float) -> Reply:
        network = self.network(self._network_id(request))
        return {"type": "get_expr_policy_ok", "network_id": network.id,
                "expr_policy": network.expr_policy}

    def set_member_tags(self, request: Request, peer: Peer, now: float) -> Reply:
        network_id = self._network_id(request)
        target_id = self._target(request)
        raw_tags = fields.strings(request, "tags", max_items=64, max_length=64)
        self._require_role(request, "set_member_tags", network_id, now, OWNER, ADMIN)
        tags = normalize_tags(raw_tags)
        network = self.network(network_id)
        if target_id not in network.members:
            raise not_a_member(target_id, network_id)
        self.directory.set_member_tags(network_id, target_id, tags)
        return {"type": "set_member_tags_ok", "network_id": network_id,
                "target_node_id": target_id, "tags": tags}

    def get_member_tags(self, request: Request, peer: Peer, now: float) -> Reply:
        """One member's tags, or (``target_node_id`` 0 or absent) every tagged member's."""
        network = self.network(self._network_id(request))
        target_id = fields.uint(request, "target_node_id", default=0)
        reply = {"type": "get_member_tags_ok", "network_id": network.id}
        if target_id:
            if target_id not in network.members:
                raise not_a_member(target_id, network.id)
            reply["tags"] = list(self.directory.tags_of(network.id, target_id))
        else:
            reply["members"] = {str(node_id): list(self.directory.tags_of(network.id, node_id))
                                for node_id in sorted(network.members)
                                if self.directory.tags_of(network.id, node_id)}
        return reply
