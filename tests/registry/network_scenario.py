"""One run of network changes, and the network state it leaves, for the persistence tests.

The SQLite store, the PostgreSQL store and replication each run
:func:`run_network_changes` against a registry and compare
:func:`network_state` of the registry that comes back (restarted, or a
standby) with the one that made the changes.
"""

from tests.registry.fixtures import ADMIN_TOKEN, identity

EXPR_POLICY = {"version": 1, "rules": [{"name": "web", "on": "connect", "match": "port == 80",
                                        "actions": [{"type": "allow"}]}]}
RULES = {"links": 3, "cycle": "1h", "prune": 1, "prune_by": "age", "fill": 1, "fill_how": "random"}
NAMES = ("owner", "admin", "member", "guest")


def run_sync(coroutine):
    """The result of a coroutine that never waits (the scenario over a registry driven in memory)."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value
    raise AssertionError("the scenario waited on something")


async def run_network_changes(ask, register):
    """Networks, roles, invites, policies, tags and a key expiry; returns ``{name: node_id}``.

    ``register(identity)`` registers a node and returns its ID;
    ``ask(request, signer=None)`` sends a request (signed by ``signer``) and
    returns the reply, which must not be an error.  Both may return a value or
    an awaitable (a Deferred of a registry on PostgreSQL).
    """
    async def settled(value):
        return await value if hasattr(value, "__await__") else value

    keys = {name: identity(10 + number) for number, name in enumerate(NAMES)}
    ids = {name: await settled(register(key)) for name, key in keys.items()}

    async def admin(kind, **fields):
        return await settled(ask(dict(fields, type=kind, admin_token=ADMIN_TOKEN)))

    async def signed(who, kind, **fields):
        return await settled(ask(dict(fields, type=kind, node_id=ids[who]), keys[who]))

    team = (await admin("create_network", node_id=ids["owner"], name="team", join_rule="invite",
                        enterprise=True, network_admin_token="team-key", rules=RULES))["network_id"]
    for name in ("admin", "member"):
        await admin("invite_to_network", network_id=team, inviter_id=ids["owner"],
                    target_node_id=ids[name])
        await signed(name, "respond_invite", network_id=team, accept=True)
    await signed("owner", "promote_member", network_id=team, target_node_id=ids["admin"])
    await signed("admin", "set_network_policy", network_id=team, max_members=20,
                 allowed_ports=[80, 443], description="the team")
    await signed("admin", "set_expr_policy", network_id=team, expr_policy=EXPR_POLICY)
    await signed("admin", "set_member_tags", network_id=team, target_node_id=ids["member"],
                 tags=["gpu"])
    await signed("admin", "invite_to_network", network_id=team, inviter_id=ids["admin"],
                 target_node_id=ids["guest"])
    await signed("member", "set_key_expiry", expires_at="2030-01-01T00:00:00Z")
    lab = (await admin("create_network", node_id=ids["owner"], name="lab"))["network_id"]
    await signed("member", "join_network", network_id=lab)
    vault = (await admin("create_network", node_id=ids["owner"], name="vault", join_rule="token",
                         token="s3cret"))["network_id"]
    await signed("guest", "join_network", network_id=vault, token="s3cret")
    temp = (await admin("create_network", node_id=ids["owner"], name="temp",
                        enterprise=True))["network_id"]
    await signed("guest", "join_network", network_id=temp)
    await signed("owner", "promote_member", network_id=temp, target_node_id=ids["guest"])
    await signed("owner", "delete_network", network_id=temp)
    await signed("owner", "rename_network", network_id=lab, name="lab-two")
    return ids


def network_state(directory):
    """What the network messages stored: networks, roles and tags, invitations, key expiries."""
    state = {(kind, key): value for kind, key, value in directory.entities()
             if kind in ("network", "member", "invite")}
    state["key_expiries"] = {node_id: node.key_expires for node_id, node in directory.nodes.items()}
    return state
