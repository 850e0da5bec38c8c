"""``pilotctl network create|delete|rename|promote|demote|kick|role|policy``: managing networks at the registry.

As in the reference, these talk to the registry directly (no daemon needed)
with the admin token: ``--admin-token``, else ``$PILOT_ADMIN_TOKEN``, else
``admin_token`` in config.json.  ``role`` and reading a ``policy`` need no
token.  The registry checks everything; these commands only shape requests
and print replies (docs/networks.md).
"""

import json

from pilotnet.cli.args import invalid, parse_number
from pilotnet.cli.output import Output
from pilotnet.control import schema
from pilotnet.errors import DecodeError, NOT_RUNNING, PilotError

MAX_NETWORK = 0xFFFF
JOIN_RULES = ("open", "token", "invite")
# A rules file bigger than this is no rules file (the registry takes at most 4 KiB).
MAX_RULES_FILE = 64 * 1024


def _registry():
    """Imported when used: signing and framing are start-up time other commands do not need."""
    from pilotnet.cli import registry_direct

    return registry_direct


def _admin_token(context, args):
    from pilotnet.cli.admin import admin_token

    return admin_token(context, args)


def _network_id(text):
    network_id = parse_number(text, "network ID", MAX_NETWORK)
    if network_id == 0:
        raise invalid("network 0 is the backbone; name another network", hint="pilotctl network list")
    return network_id


def _node_id(text):
    """A node by decimal ID or by address (``N:XXXX.YYYY.YYYY``)."""
    from pilotnet.wire.address import MAX_NODE, Addr

    if ":" in text:
        try:
            return Addr.parse(text).node
        except DecodeError as error:
            raise invalid(error.message) from None
    node_id = parse_number(text, "node ID", MAX_NODE)
    if node_id == 0:
        raise invalid("node ID 0 is not a node")
    return node_id


def _ask(context, message):
    return _registry().request(context.home.registry(), message)


def _this_node(context):
    """The running daemon's node ID (the creator of a network when --node-id is not given)."""
    try:
        return context.ask(schema.INFO)["info"]["node_id"]
    except PilotError as error:
        if error.code != NOT_RUNNING:
            raise
        raise invalid("which node creates the network? the daemon is not running to say",
                      hint="pass --node-id N") from None


def _rules(args):
    """``--rules JSON`` or ``--rules-file PATH`` as a JSON object, or None."""
    if args.has("rules") and args.has("rules-file"):
        raise invalid("give --rules or --rules-file, not both")
    if args.has("rules-file"):
        path = args.text("rules-file")
        try:
            with open(path, "rb") as handle:
                text = handle.read(MAX_RULES_FILE + 1)
        except OSError as error:
            raise invalid(f"cannot read {path}: {error.strerror}") from None
        if len(text) > MAX_RULES_FILE:
            raise invalid(f"{path} is too large for a rules file")
    elif args.has("rules"):
        text = args.text("rules").encode("utf-8")
    else:
        return None
    try:
        rules = json.loads(text)
    except ValueError as error:
        raise invalid(f"the rules are not JSON: {error}",
                      hint='e.g. {"links":5,"cycle":"24h","prune":1,"prune_by":"score","fill":1,'
                           '"fill_how":"random"}') from None
    if not isinstance(rules, dict):
        raise invalid("the rules must be a JSON object")
    return rules


def create(context, args):
    name = args.text("name")
    if not name or name == "true":
        raise invalid("network create needs --name", hint="pilotctl network create --name team")
    join_rule = args.text("join-rule", "open")
    if join_rule not in JOIN_RULES:
        raise invalid(f'invalid --join-rule "{join_rule}": open, token or invite')
    token = args.text("token", "")
    if join_rule == "token" and (not token or token == "true"):
        raise invalid("a token network needs --token", hint="pilotctl network create --name team "
                                                           "--join-rule token --token <secret>")
    message = {"type": "create_network", "admin_token": _admin_token(context, args), "name": name,
               "join_rule": join_rule, "enterprise": args.boolean("enterprise"),
               "node_id": _node_id(args.text("node-id")) if args.has("node-id") else _this_node(context)}
    if token:
        message["token"] = token
    if args.has("network-admin-token"):
        message["network_admin_token"] = args.text("network-admin-token")
    rules = _rules(args)
    if rules is not None:
        message["rules"] = rules
    reply = _ask(context, message)
    return Output(reply, f"created network {reply.get('network_id')}: {reply.get('name')} "
                         f"(join_rule={reply.get('join_rule', join_rule)}, "
                         f"enterprise={str(bool(reply.get('enterprise'))).lower()})")


def join_for(context, args, network_id):
    """``network join <id> --node-id N``: the reference's admin path, straight to the registry with the
    admin token (for a node whose daemon is not running, or that is not this one)."""
    message = {"type": "join_network", "network_id": network_id, "node_id": _node_id(args.text("node-id")),
               "admin_token": _admin_token(context, args)}
    if args.has("token"):
        message["token"] = args.text("token")
    return _ask(context, message)


def delete(context, args):
    network_id = _network_id(args.positional[0])
    reply = _ask(context, {"type": "delete_network", "network_id": network_id,
                           "admin_token": _admin_token(context, args)})
    return Output(reply, f"deleted network {network_id}")


def rename(context, args):
    network_id, name = _network_id(args.positional[0]), args.positional[1]
    reply = _ask(context, {"type": "rename_network", "network_id": network_id, "name": name,
                           "admin_token": _admin_token(context, args)})
    return Output(reply, f"renamed network {network_id} to {reply.get('name', name)}")


def _member_change(context, args, kind):
    network_id, node_id = _network_id(args.positional[0]), _node_id(args.positional[1])
    return network_id, node_id, _ask(context, {
        "type": kind, "network_id": network_id, "target_node_id": node_id,
        "admin_token": _admin_token(context, args)})


def promote(context, args):
    network_id, node_id, reply = _member_change(context, args, "promote_member")
    return Output(reply, f"promoted node {node_id} to admin in network {network_id}")


def demote(context, args):
    network_id, node_id, reply = _member_change(context, args, "demote_member")
    return Output(reply, f"demoted node {node_id} to member in network {network_id}")


def kick(context, args):
    network_id, node_id, reply = _member_change(context, args, "kick_member")
    return Output(reply, f"kicked node {node_id} from network {network_id}")


def role(context, args):
    network_id, node_id = _network_id(args.positional[0]), _node_id(args.positional[1])
    reply = _ask(context, {"type": "get_member_role", "network_id": network_id, "target_node_id": node_id})
    return Output(reply, f"node {node_id} in network {network_id}: {reply.get('role')}")


def _ports(text):
    ports = []
    for part in (piece.strip() for piece in text.split(",")):
        if part:
            ports.append(parse_number(part, "port", 0xFFFF))
    return ports


def policy(context, args):
    """Show the network's policy; with any of the flags, set those fields (admin token)."""
    network_id = _network_id(args.positional[0])
    changes = {}
    if args.has("max-members"):
        changes["max_members"] = args.integer("max-members", 0)
    if args.has("description"):
        description = args.text("description")
        changes["description"] = "" if description == "true" else description
    if args.has("allowed-ports"):
        ports = args.text("allowed-ports")
        changes["allowed_ports"] = [] if ports in ("true", "none") else _ports(ports)
    if changes:
        reply = _ask(context, dict(changes, type="set_network_policy", network_id=network_id,
                                   admin_token=_admin_token(context, args)))
    else:
        reply = _ask(context, {"type": "get_network_policy", "network_id": network_id})
    ports = reply.get("allowed_ports") or []
    text = "\n".join([
        f"Network:        {network_id}",
        f"Max members:    {reply.get('max_members') or 'no limit'}",
        f"Allowed ports:  {', '.join(str(p) for p in ports) if ports else 'all'}",
        f"Description:    {reply.get('description') or '-'}",
    ])
    return Output(reply, ("policy updated\n" if changes else "") + text)

