"""``managed score|status|rankings|cycle`` and ``member-tags set|get``, through the daemon (docs/networks.md).

``--net`` 0 or absent means the daemon's first managed network, as in the
reference.  ``member-tags set`` carries the admin token when one is
configured; without it the registry accepts the change from a network owner
or admin, signed by this node.
"""

import re

from pilotnet.cli.args import invalid, parse_number
from pilotnet.cli.commands.policy import admin_token, network
from pilotnet.cli.output import Output
from pilotnet.control import schema

def _peer(text):
    return parse_number(text, "node ID", 0xFFFFFFFF)


def score(context, args):
    node = _peer(args.positional[0])
    delta = int(args.text("delta", "1")) if re.fullmatch(r"-?[0-9]{1,7}", args.text("delta", "1")) else None
    if delta is None:
        raise invalid(f'invalid --delta "{args.text("delta")}": expected a whole number within ±1000000')
    topic = args.text("topic", "")
    result = context.ask(schema.MANAGED_SCORE, network_id=network(args, required=False), node_id=node,
                         delta=delta, topic=topic)["result"]
    data = {"node_id": node, "delta": delta, "topic": topic, "network_id": result.get("network_id")}
    return Output(data, f"scored peer {node}: delta={delta} topic={topic!r}")


def status(context, args):
    result = context.ask(schema.MANAGED_STATUS, network_id=network(args, required=False))["result"]
    text = "\n".join([f"Managed network {result['network_id']}",
                      f"  Peers:     {result['peers']} of {result['max_links']} links",
                      f"  Cycle:     every {result['cycle']} (run {result['cycle_num']} times)",
                      f"  Prune:     {result['prune']} by {result['prune_by']}"
                      + (f" (grace {result['grace']})" if result.get("grace") else ""),
                      f"  Fill:      {result['fill']} ({result['fill_how']})",
                      f"  Joined:    {result['joined_at']}"])
    return Output(result, text)


def rankings(context, args):
    result = context.ask(schema.MANAGED_RANKINGS, network_id=network(args, required=False))["result"]
    rows = result["rankings"]
    if not rows:
        return Output(result, f"no peers in managed network {result['network_id']} yet")
    lines = [f"{'RANK':<5} {'NODE ID':<10} {'SCORE':>7}  LAST SEEN"]
    lines += [f"{row['rank']:<5} {row['node_id']:<10} {row['score']:>7}  {row.get('last_seen', '-')}"
              for row in rows]
    return Output(result, "\n".join(lines))


def cycle(context, args):
    if not args.boolean("force"):
        raise invalid("usage: pilotctl managed cycle --force [--net N]",
                      hint="cycles run on their own every rules.cycle; --force runs one now")
    result = context.ask(schema.MANAGED_CYCLE, network_id=network(args, required=False))["result"]
    return Output(result, f"cycle complete: pruned={result['pruned']} filled={result['filled']} "
                          f"peers={result['peers']}")


def _tags(text):
    from pilotnet.registry.validation import normalize_tags

    return normalize_tags([tag.strip() for tag in text.split(",") if tag.strip()])


def tags_set(context, args):
    if not (args.has("node") and args.has("tags")):
        raise invalid("usage: pilotctl member-tags set --net N --node X --tags a,b")
    net, node, tags = network(args), _peer(args.text("node")), _tags(args.text("tags"))
    if node == 0:
        raise invalid("--node must name a member (a node ID above 0)")
    context.ask(schema.MEMBER_TAGS_SET, network_id=net, node_id=node, tags=tags, admin_token=admin_token(context))
    return Output({"network_id": net, "node_id": node, "tags": tags},
                  f"member tags set for node {node} in network {net}: {', '.join(tags) or '(none)'}")


def tags_get(context, args):
    net = network(args)
    node = _peer(args.text("node", "0"))
    result = context.ask(schema.MEMBER_TAGS_GET, network_id=net, node_id=node)["result"]
    result = {key: value for key, value in result.items() if key != "type"}
    if node:
        tags = result.get("tags") or []
        return Output(dict(result, network_id=net, node_id=node),
                      f"node {node} in network {net}: {', '.join(tags) if tags else '(no tags)'}")
    members = result.get("members") or {}
    lines = [f"  node {member}: {', '.join(tags) or '(no tags)'}" for member, tags in sorted(members.items())]
    return Output(dict(result, network_id=net), "\n".join(lines) or f"no member tags in network {net}")
