"""Registry operations: through the daemon (hostname, visibility, tags, task execution) or direct.

``lookup``, ``register``, ``rotate-key`` and ``deregister`` talk to the
registry themselves (:mod:`pilotnet.cli.registry_direct`), signed with the
node's identity file where the registry asks for proof, so they work with no
daemon running.
"""

import os

import pilotnet
from pilotnet.cli.args import invalid, parse_number
from pilotnet.cli.output import Output
from pilotnet.control import schema
from pilotnet.driver.targets import private_name_hint
from pilotnet.errors import NOT_FOUND, NOT_RUNNING, PilotError

MAX_TAGS = 3


def set_hostname(context, args):
    hostname = args.positional[0]
    reply = context.ask(schema.SET_HOSTNAME, hostname=hostname)["result"]
    context.home.remember("hostname", hostname)
    return Output({"hostname": hostname, "node_id": reply.get("node_id")}, f"hostname set: {hostname}")


def clear_hostname(context, args):
    context.ask(schema.SET_HOSTNAME, hostname="")
    context.home.remember("hostname", "")
    return Output({"hostname": ""}, "hostname cleared")


def find(context, args):
    hostname = args.positional[0]
    try:
        reply = context.ask(schema.RESOLVE_HOSTNAME, hostname=hostname)["result"]
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


def set_public(context, args):
    return context.ask(schema.SET_VISIBILITY, public=True)["result"]


def set_private(context, args):
    return context.ask(schema.SET_VISIBILITY, public=False)["result"]


def set_tags(context, args):
    tags = args.positional
    if len(tags) > MAX_TAGS:
        raise invalid(f"set-tags: maximum {MAX_TAGS} tags allowed, got {len(tags)}")
    reply = context.ask(schema.SET_TAGS, tags=tags)["result"]
    return Output({"node_id": reply.get("node_id"), "tags": tags}, "tags set: " + " ".join(f"#{t}" for t in tags))


def clear_tags(context, args):
    context.ask(schema.SET_TAGS, tags=[])
    return Output({"tags": []}, "tags cleared")


def enable_tasks(context, args):
    return context.ask(schema.SET_TASK_EXEC, enabled=True)["result"]


def disable_tasks(context, args):
    return context.ask(schema.SET_TASK_EXEC, enabled=False)["result"]


# -- straight to the registry ------------------------------------------------------------

def _identity_path(context, args):
    from pathlib import Path

    return Path(args.text("identity") or context.home.path / "identity.json").expanduser()


def _registry():
    """The registry-direct helpers, imported when used: signing pulls in PyNaCl, which daemon commands never need."""
    from pilotnet.cli import registry_direct

    return registry_direct


def _node_id(text):
    from pilotnet.wire.address import MAX_NODE

    node_id = parse_number(text, "node ID", MAX_NODE)
    if node_id == 0:
        raise invalid("node ID 0 is not a node", hint="pilotctl info shows this node's ID")
    return node_id


def lookup(context, args):
    node_id = _node_id(args.positional[0])
    return _registry().request(context.home.registry(), {"type": "lookup", "node_id": node_id})


def register(context, args):
    """Register this node's identity (created if there is none, as the daemon would) with the registry."""
    from pilotnet.crypto.identity import Identity

    identity = Identity.load_or_create(_identity_path(context, args))
    message = {"type": "register", "public_key": identity.public_key_b64, "version": pilotnet.__version__,
               "listen_addr": args.positional[0] if args.positional else ""}
    hostname = context.home.load_config().get("hostname")
    if isinstance(hostname, str) and hostname:
        message["hostname"] = hostname
    if args.has("identity-token"):
        message["identity_token"] = args.text("identity-token")
    reply = _registry().request(context.home.registry(), _registry().signed(identity, message))
    return Output(reply, f"registered node {reply.get('node_id')} ({reply.get('address')})")


def rotate_key(context, args):
    """Replace the identity's key at the registry (signed by the current key), then in the identity file.

    The new key is written beside the file first and moved over it only once
    the registry took it, so a failure at any step leaves a working identity.
    """
    from pilotnet.crypto.identity import Identity

    node_id = _node_id(args.positional[0])
    path = _identity_path(context, args)
    current = Identity.load(path)
    new = Identity.generate()
    pending = path.with_name(path.name + ".new")
    new.save(pending)
    try:
        reply = _registry().request(context.home.registry(), _registry().signed(
            current, {"type": "rotate_key", "node_id": node_id, "new_public_key": new.public_key_b64}))
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, path)
    return Output(reply, "\n".join([
        f"key rotated for node {node_id}: {new.public_key_b64}",
        "  a running daemon still holds the old key: pilotctl daemon stop && pilotctl daemon start",
    ]))


def deregister(context, args):
    """Remove the node from the registry; its ID from the argument, else from the running daemon."""
    from pilotnet.crypto.identity import Identity

    if args.positional:
        node_id = _node_id(args.positional[0])
    else:
        try:
            node_id = context.ask(schema.INFO)["info"]["node_id"]
        except PilotError as error:
            if error.code != NOT_RUNNING:
                raise
            raise invalid("which node? the daemon is not running to say", hint="pilotctl deregister <node_id>") from None
    identity = Identity.load(_identity_path(context, args))
    reply = _registry().request(
        context.home.registry(), _registry().signed(identity, {"type": "deregister", "node_id": node_id}))
    return Output(reply, f"node {node_id} deregistered")
