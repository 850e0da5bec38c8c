"""``network list|join|leave|members``: this node's memberships, through the daemon (docs/networks.md).

The reference's human formats (controlplane §4.4): ``network list`` is the
table ``ID NAME JOIN RULE MEMBERS``, ``network members`` the table ``NODE ID
HOSTNAME VERSION PUBLIC``; ``--json`` gives the registry's reply as the daemon
passed it on.  The daemon signs each request with the node's key.
"""

from pilotnet.cli.args import invalid, parse_number
from pilotnet.cli.output import Output, table
from pilotnet.control import schema
from pilotnet.errors import NOT_FOUND, PilotError

LIST_HINT = "list the networks with: pilotctl network list"


def network_id(text):
    """A network ID from the command line: 1-65535 (0 is the backbone, which nobody joins or leaves)."""
    number = parse_number(text, "network ID", 0xFFFF)
    if number == 0:
        raise invalid("network 0 is the backbone: every node is on it and none can join or leave it",
                      hint=LIST_HINT)
    return number


def ask_registry(context, spec, **arguments):
    """The daemon's answer to ``spec``; a network the registry does not know gets the hint to list them."""
    try:
        return context.ask(spec, **arguments)["result"]
    except PilotError as error:
        if error.code == NOT_FOUND and not error.hint:
            raise PilotError(error.message, code=error.code, hint=LIST_HINT) from None
        raise


def list_text(networks):
    if not networks:
        return "no networks\n  an operator creates one with: pilotctl network create --name NAME"
    rows = [[network.get("id"), network.get("name", ""), network.get("join_rule", "open"), network.get("members", 0)]
            for network in networks]
    return table(["ID", "NAME", "JOIN RULE", "MEMBERS"], rows)


def members_text(network, nodes):
    if not nodes:
        return f"network {network} has no members"
    rows = [[node.get("node_id"), node.get("hostname") or "-", node.get("version") or "-",
             "offline" if node.get("offline") else ("yes" if node.get("public") else "no")] for node in nodes]
    return table(["NODE ID", "HOSTNAME", "VERSION", "PUBLIC"], rows)


def list_networks(context, args):
    reply = ask_registry(context, schema.NETWORK_LIST)
    networks = reply.get("networks") or []
    return Output({"networks": networks}, list_text(networks))


def join(context, args):
    network = network_id(args.positional[0])
    token = args.text("token")
    try:
        if args.has("node-id"):
            from pilotnet.cli.commands.network_admin import join_for

            reply = join_for(context, args, network)
        else:
            reply = ask_registry(context, schema.NETWORK_JOIN, network_id=network, token=token)
    except PilotError as error:
        if "invalid token" in error.message or "token required" in error.message:
            raise PilotError(error.message, code=error.code,
                             hint="ask the network's operator for its token: pilotctl network join "
                                  f"{network} --token TOKEN") from None
        if "invite" in error.message:
            raise PilotError(error.message, code=error.code,
                             hint="an invite-only network is joined by accepting an invitation: "
                                  "pilotctl network invites") from None
        raise
    address = reply.get("address")
    text = f"joined network {network}" + (f"\n  address on it: {address}" if address else "")
    return Output(reply, text)


def leave(context, args):
    network = network_id(args.positional[0])
    reply = ask_registry(context, schema.NETWORK_LEAVE, network_id=network)
    return Output(reply, f"left network {network}")


def members(context, args):
    network = network_id(args.positional[0])
    reply = ask_registry(context, schema.NETWORK_MEMBERS, network_id=network)
    nodes = reply.get("nodes") or []
    return Output({"network_id": network, "nodes": nodes}, members_text(network, nodes))
