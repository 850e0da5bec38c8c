"""``handshake``, ``approve``, ``reject``, ``pending``, ``trust``, ``untrust``: the trust commands.

Output is the reference's (controlplane §4.3 "Trust"); the daemon does the
work (:mod:`pilotnet.daemon.trust_manager`).
"""

from datetime import datetime

from pilotnet.cli.output import Output, table
from pilotnet.control import schema
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, NOT_RUNNING, PilotError

JUSTIFICATION_WIDTH = 40


def _node(context, target):
    return context.resolve_now(target).node


def _local_time(seconds):
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def handshake(context, args):
    node = _node(context, args.positional[0])
    justification = " ".join(args.positional[1:])
    reply = context.ask(schema.HANDSHAKE, node_id=node, justification=justification)["result"]
    return Output(reply, "\n".join([
        f"handshake request sent to node {node}",
        f"  next: node {node} must approve — or send a handshake back for auto-approval",
        "  check: pilotctl trust",
    ]))


def approve(context, args):
    node = _node(context, args.positional[0])
    reply = context.ask(schema.APPROVE, node_id=node)["result"]
    return Output(reply, f"trust established with node {node}\n  try: pilotctl ping {node}")


def reject(context, args):
    node = _node(context, args.positional[0])
    reply = context.ask(schema.REJECT, node_id=node, reason=" ".join(args.positional[1:]))["result"]
    return Output(reply, f"handshake from node {node} rejected")


def untrust(context, args):
    node = _node(context, args.positional[0])
    try:
        context.ask(schema.REVOKE, node_id=node)
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
        return 'no trusted peers\n  establish trust: pilotctl handshake <node_id|hostname> "reason"'
    rows = [[peer["node_id"], "yes" if peer.get("mutual") else "no", peer.get("network") or "-",
             _local_time(peer["approved_at"])] for peer in trusted]
    return table(["NODE ID", "MUTUAL", "NETWORK", "APPROVED AT"], rows)


def pending(context, args):
    requests = context.ask(schema.PENDING)["result"]["pending"]
    return Output({"pending": requests}, pending_text(requests))


def trust(context, args):
    peers = context.ask(schema.TRUSTED)["result"]["trusted"]
    return Output({"trusted": peers}, trusted_text(peers))
