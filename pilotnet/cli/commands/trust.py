"""``handshake``, ``approve``, ``reject``, ``pending``, ``trust``, ``untrust``: the trust commands.

Output is the reference's (controlplane §4.3 "Trust"); the daemon does the
work (:mod:`pilotnet.daemon.trust_manager`).
"""

from datetime import datetime

from pilotnet.cli.output import Output, table
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, NOT_RUNNING, PilotError

JUSTIFICATION_WIDTH = 40


async def _node(context, target):
    return (await context.resolve(target)).node


def _local_time(seconds):
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


async def handshake(context, args):
    """By node ID or address, or by hostname: a private node's name goes to the registry's relay as a name."""
    justification = " ".join(args.positional[1:])
    reply = await (await context.daemon()).handshake(args.positional[0], justification)
    return Output(reply, handshake_text(reply))


def handshake_text(reply):
    """What the handshake really did (the daemon's ``status``), and the next step that follows from it."""
    status = reply.get("status")
    node = reply.get("node_id")
    if status == "approved":
        return "\n".join([f"node {node} had already asked: request approved, trust established",
                          f"  try: pilotctl ping {node}"])
    if status == "trusted":
        return "\n".join([f"node {node} is already trusted", f"  try: pilotctl ping {node}"])
    if node is None:
        hostname = reply.get("hostname")
        return "\n".join([
            f'handshake request for "{hostname}" relayed by the registry',
            f'  next: if a node holds that name it must approve; then its node ID appears in pilotctl trust '
            f'and "{hostname}" resolves',
            "  check: pilotctl trust",
        ])
    path = "relayed by the registry" if reply.get("path") == "relay" else "delivered directly"
    return "\n".join([
        f"handshake request sent to node {node} ({path})",
        f"  next: node {node} must approve — or send a handshake back for auto-approval",
        "  check: pilotctl trust",
    ])


async def approve(context, args):
    node = await _node(context, args.positional[0])
    reply = await (await context.daemon()).approve(node)
    return Output(reply, f"trust established with node {node}\n  try: pilotctl ping {node}")


async def reject(context, args):
    node = await _node(context, args.positional[0])
    reply = await (await context.daemon()).reject(node, " ".join(args.positional[1:]))
    return Output(reply, f"handshake from node {node} rejected")


async def untrust(context, args):
    node = await _node(context, args.positional[0])
    try:
        await (await context.daemon()).revoke(node)
    except PilotError as error:
        if error.code in (NOT_RUNNING, INVALID_ARGUMENT):
            raise
        raise PilotError(f"untrust: revoke: daemon: {error.message}", code=CONNECTION_FAILED,
                         hint="list trusted peers: pilotctl trust") from None
    return Output({"node_id": node}, f"trust revoked for node {node}")


def pending_text(pending):
    if not pending:
        return ("no pending handshake requests\n"
                "  requests appear here when another node sends: pilotctl handshake <your-node-id>")
    lines = [f"{'NODE ID':<10}  {'JUSTIFICATION':<{JUSTIFICATION_WIDTH}}  RECEIVED"]
    for request in pending:
        justification = request.get("justification") or ""
        if len(justification) > JUSTIFICATION_WIDTH:
            justification = justification[:JUSTIFICATION_WIDTH - 3] + "..."
        lines.append(f"{request['node_id']:<10}  {justification:<{JUSTIFICATION_WIDTH}}  "
                     f"{_local_time(request['received_at'])}")
    return "\n".join(lines)


def trusted_text(trusted):
    if not trusted:
        return 'no trusted peers\n  establish trust: pilotctl handshake <node_id> "reason"'
    rows = [[peer["node_id"], "yes" if peer.get("mutual") else "no", peer.get("network") or "-",
             _local_time(peer["approved_at"])] for peer in trusted]
    return table(["NODE ID", "MUTUAL", "NETWORK", "APPROVED AT"], rows)


async def pending(context, args):
    requests = await (await context.daemon()).pending()
    return Output({"pending": requests}, pending_text(requests))


async def trust(context, args):
    peers = await (await context.daemon()).trusted()
    return Output({"trusted": peers}, trusted_text(peers))
