"""Hostname, visibility, tags, task execution, lookup, deregistration: registry operations via the daemon."""

from pilotnet.cli.args import invalid, parse_number
from pilotnet.cli.output import Output
from pilotnet.driver.targets import private_name_hint
from pilotnet.errors import NOT_FOUND, NOT_RUNNING, PilotError
from pilotnet.wire.address import MAX_NODE

MAX_TAGS = 3


def _remember_hostname(context, hostname):
    """Keep the hostname in config.json too, so the next ``daemon start`` applies it."""
    config = context.home.load_config()
    if hostname:
        config["hostname"] = hostname
    else:
        config.pop("hostname", None)
    context.home.save_config(config)


async def set_hostname(context, args):
    hostname = args.positional[0]
    reply = await (await context.daemon()).set_hostname(hostname)
    _remember_hostname(context, hostname)
    return Output({"hostname": hostname, "node_id": reply.get("node_id")}, f"hostname set: {hostname}")


async def clear_hostname(context, args):
    await (await context.daemon()).set_hostname("")
    _remember_hostname(context, "")
    return Output({"hostname": ""}, "hostname cleared")


async def find(context, args):
    hostname = args.positional[0]
    daemon = await context.daemon()
    try:
        reply = await daemon.resolve_hostname(hostname)
    except PilotError as error:
        if error.code == NOT_RUNNING:
            raise
        raise PilotError(
            f'cannot find "{hostname}" — hostname not found or no mutual trust', code=NOT_FOUND,
            hint=private_name_hint(hostname),
        ) from None
    data = {
        "hostname": reply.get("hostname", hostname), "node_id": reply.get("node_id"),
        "address": reply.get("address"), "public": bool(reply.get("public")),
    }
    text = "\n".join([
        f"Hostname:  {data['hostname']}",
        f"Node ID:   {data['node_id']}",
        f"Address:   {data['address']}",
        f"Visible:   {'public' if data['public'] else 'private'}",
    ])
    return Output(data, text)


async def set_public(context, args):
    return await (await context.daemon()).set_visibility(True)


async def set_private(context, args):
    return await (await context.daemon()).set_visibility(False)


async def set_tags(context, args):
    tags = args.positional
    if len(tags) > MAX_TAGS:
        raise invalid(f"set-tags: maximum {MAX_TAGS} tags allowed, got {len(tags)}")
    reply = await (await context.daemon()).set_tags(tags)
    return Output({"node_id": reply.get("node_id"), "tags": tags}, "tags set: " + " ".join(f"#{t}" for t in tags))


async def clear_tags(context, args):
    await (await context.daemon()).set_tags([])
    return Output({"tags": []}, "tags cleared")


async def enable_tasks(context, args):
    return await (await context.daemon()).set_task_exec(True)


async def disable_tasks(context, args):
    return await (await context.daemon()).set_task_exec(False)


async def lookup(context, args):
    node_id = parse_number(args.positional[0], "node ID", MAX_NODE)
    return await (await context.daemon()).lookup(node_id)


async def deregister(context, args):
    return await (await context.daemon()).deregister()
