"""``network invite|invites|accept|reject``: invitations to invite-only networks, through the daemon.

An owner or admin of an enterprise network with the ``invite`` join rule
invites a node; the node sees the invitation in ``network invites`` (kept for
30 days by the registry) and accepts (joins) or rejects it (docs/networks.md).
"""

from datetime import datetime

from pilotnet.cli.commands.network_membership import ask_registry, network_id
from pilotnet.cli.output import Output, table
from pilotnet.control import schema


def invite(context, args):
    network = network_id(args.positional[0])
    node = context.resolve_now(args.positional[1]).node
    reply = ask_registry(context, schema.NETWORK_INVITE, network_id=network, node_id=node)
    already = reply.get("status") == "already_invited"
    text = f"node {node} was already invited to network {network}" if already \
        else f"invited node {node} to network {network}"
    return Output(reply, text)


def invites_text(invites):
    if not invites:
        return "no pending invites"
    rows = []
    for entry in invites:
        stamp = entry.get("timestamp")
        received = datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S") if isinstance(stamp, (int, float)) \
            else str(stamp or "-")
        rows.append([entry.get("network_id"), entry.get("inviter_id"), received])
    return table(["NETWORK", "INVITED BY", "RECEIVED"], rows) + \
        "\n  accept with: pilotctl network accept <network>"


def invites(context, args):
    listed = ask_registry(context, schema.NETWORK_INVITES).get("invites") or []
    return Output({"invites": listed}, invites_text(listed))


def _respond(context, args, accept):
    network = network_id(args.positional[0])
    reply = ask_registry(context, schema.NETWORK_RESPOND_INVITE, network_id=network, accept=accept)
    return reply, network


def accept(context, args):
    reply, network = _respond(context, args, True)
    return Output(reply, f"accepted invite: joined network {network}")


def reject(context, args):
    reply, network = _respond(context, args, False)
    return Output(reply, f"rejected invite to network {network}")
