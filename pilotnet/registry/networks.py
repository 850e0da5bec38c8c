"""Networks: groups of nodes with their own join rules, whose members see each other."""

import hmac

from pilotnet.errors import ALREADY_EXISTS, NOT_FOUND
from pilotnet.registry import requests as fields
from pilotnet.registry.directory import BACKBONE, Network, address_text
from pilotnet.registry.dispatch import RegistryCore, Route
from pilotnet.registry.requests import RequestError
from pilotnet.registry.validation import check_network_name

JOIN_RULES = ("open", "token")


class NetworkHandlers:
    """list_networks, create_network, join_network and leave_network."""

    def __init__(self, registry: RegistryCore) -> None:
        self.registry = registry
        self.directory = registry.directory

    def routes(self):
        return [
            Route("list_networks", self._list_networks, on_standby=True),
            Route("create_network", self._create_network),
            Route("join_network", self._join_network, admin_override=True),
            Route("leave_network", self._leave_network, admin_override=True),
        ]

    def _network(self, network_id):
        network = self.directory.networks.get(network_id)
        if network is None:
            raise RequestError(f"network {network_id}: network not found", code=NOT_FOUND)
        return network

    def _list_networks(self, request, peer, now):
        directory = self.directory
        listed = [{"id": BACKBONE, "name": "backbone", "members": len(directory.nodes),
                   "join_rule": "open", "created": int(directory.started)}]
        for network in sorted(directory.networks.values(), key=lambda n: n.id):
            listed.append({"id": network.id, "name": network.name,
                           "members": len(network.members), "join_rule": network.join_rule,
                           "created": int(network.created)})
        return {"type": "list_networks_ok", "networks": listed}

    def _create_network(self, request, peer, now):
        self.registry.require_admin(request)
        node_id = fields.uint(request, "node_id")
        name = fields.text(request, "name", max_length=256)
        join_rule = fields.text(request, "join_rule", default="open") or "open"
        token = fields.text(request, "token", max_length=256)
        self.registry.node(node_id)
        check_network_name(name)
        if join_rule not in JOIN_RULES:
            raise RequestError(f'invalid join_rule "{join_rule}" (this registry supports '
                               f'{" and ".join(JOIN_RULES)})')
        if join_rule == "token" and not token:
            raise RequestError("token required for a network with join_rule token")
        if self.directory.network_by_name(name) is not None:
            raise RequestError(f'network name "{name}" already exists', code=ALREADY_EXISTS)
        network = Network(id=self.directory.allocate_network_id(), name=name,
                          join_rule=join_rule, token=token, members={node_id}, created=now)
        self.directory.save_network(network)
        return {"type": "create_network_ok", "network_id": network.id, "name": name,
                "join_rule": join_rule}

    def _membership(self, request, kind, now):
        node_id = fields.uint(request, "node_id")
        network_id = fields.uint(request, "network_id", fields.MAX_U16)
        self.registry.authenticate(request, kind, {"node_id": node_id, "network_id": network_id},
                                   node_id, now)
        return node_id, network_id

    def _join_network(self, request, peer, now):
        node_id, network_id = self._membership(request, "join_network", now)
        if network_id == BACKBONE:
            raise RequestError("cannot join the backbone network")
        network = self._network(network_id)
        if node_id in network.members:
            raise RequestError(f"node {node_id} is already a member of network {network_id}",
                               code=ALREADY_EXISTS)
        if network.join_rule == "token" and not self.registry.is_admin(request):
            token = fields.text(request, "token", max_length=256)
            if not hmac.compare_digest(token.encode("utf-8"), network.token.encode("utf-8")):
                raise RequestError(f"invalid token for network {network_id}")
        network.members.add(node_id)
        self.directory.save_network(network)
        return {"type": "join_network_ok", "network_id": network_id,
                "address": address_text(network_id, node_id)}

    def _leave_network(self, request, peer, now):
        node_id, network_id = self._membership(request, "leave_network", now)
        if network_id == BACKBONE:
            raise RequestError("cannot leave the backbone network")
        network = self._network(network_id)
        if node_id not in network.members:
            raise RequestError(f"node {node_id} is not a member of network {network_id}",
                               code=NOT_FOUND)
        network.members.discard(node_id)
        self.directory.save_network(network)
        return {"type": "leave_network_ok", "network_id": network_id}
