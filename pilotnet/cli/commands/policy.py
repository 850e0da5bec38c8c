"""``policy get|set|validate|test``: a network's expression policy (docs/networks.md).

``validate`` and ``test`` run here, on a file or inline JSON, with no daemon:
the same validation and evaluation the daemon applies
(:mod:`pilotnet.policy.document`).  ``get`` asks the registry through the
daemon.  ``set`` validates first, then, as the reference's does, stores the
document at the registry with the admin token when one is configured
(``PILOT_ADMIN_TOKEN`` or config.json's ``admin_token``) and applies it on
the running daemon; without a token the daemon stores it, signed by this
node, which the registry accepts from a network owner or admin.
"""

import json
import time
from pathlib import Path

from pilotnet.cli.args import invalid, parse_number
from pilotnet.cli.output import Output
from pilotnet.control import schema
from pilotnet.errors import NOT_FOUND, NOT_RUNNING, PilotError
from pilotnet.policy.document import MAX_DOCUMENT, load, verdict

#: The longest --event accepted (an event is a handful of variables).
MAX_EVENT = 64 * 1024


def network(args, required=True):
    """``--net N`` as a network number (1-65535); 0 when absent and not required."""
    if not args.has("net"):
        if required:
            raise invalid("--net is required", hint="name the network: --net <network_id>")
        return 0
    number = parse_number(args.text("net"), "network", 0xFFFF)
    if required and number == 0:
        raise invalid("--net must be a network from 1 to 65535 (0 is the backbone)")
    return number


def _document_text(args):
    if args.has("file") == args.has("inline"):
        raise invalid("provide --file or --inline (one of them)", hint="e.g. --file policy.json")
    if args.has("inline"):
        return args.text("inline")
    path = Path(args.text("file"))
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT + 1)
    except OSError as error:
        raise PilotError(f"reading policy file: {error.strerror or error}: {path}", code=NOT_FOUND,
                         hint="check the path given to --file") from None
    if len(data) > MAX_DOCUMENT:
        raise invalid(f"policy file larger than {MAX_DOCUMENT} bytes: {path}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"policy file is not UTF-8 text: {path}") from None


def _describe(policy):
    lines = [f"valid policy: {len(policy.rules)} rules"]
    lines += [f"  - {rule.name} (on {rule.on}): {len(rule.actions)} actions" for rule in policy.rules]
    return "\n".join(lines)


def validate(context, args):
    policy = load(_document_text(args))
    data = {"valid": True, "version": policy.document["version"], "rules": len(policy.rules),
            "events": policy.events(), "default_verdict": policy.default_verdict}
    return Output(data, _describe(policy))


def _event(text):
    if len(text) > MAX_EVENT:
        raise invalid(f"--event is longer than {MAX_EVENT} bytes")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise invalid(f"event JSON: {error}", hint='e.g. --event \'{"type": "connect", "port": 7}\'') from None
    if not isinstance(event, dict):
        raise invalid("the event must be a JSON object")
    kind = event.pop("type", None)
    if not isinstance(kind, str) or not kind:
        raise invalid("event must have a 'type' field (connect, dial, datagram, cycle, join, leave)")
    return kind, event


def test(context, args):
    if not (args.has("file") and args.has("event")):
        raise invalid("usage: pilotctl policy test --file <path> --event '<json>'")
    policy = load(_document_text(args))
    kind, variables = _event(args.text("event"))
    directives = policy.evaluate(kind, variables, time.time())
    decided = verdict(directives)
    data = {"event_type": kind, "verdict": decided, "directives": [d.to_json() for d in directives]}
    lines = [f"event type: {kind} → {len(directives)} directives"]
    lines += [f"  {d.type} (from rule {d.rule!r})" for d in directives]
    if decided is not None:
        lines.append(f"verdict: {decided}")
    return Output(data, "\n".join(lines))


def get(context, args):
    net = network(args)
    reply = context.ask(schema.POLICY_GET, network_id=net)["result"]
    document = reply.get("expr_policy")
    if isinstance(document, str) and document:
        try:
            document = json.loads(document)
        except ValueError:
            pass
    data = {"network_id": net, "expr_policy": document or None}
    text = (f"network {net} has no expression policy" if not document
            else json.dumps(document, indent=2, ensure_ascii=False))
    return Output(data, text)


def admin_token(context):
    """The admin token the reference's admin commands use: ``$PILOT_ADMIN_TOKEN`` or config.json's."""
    return context.home.setting("admin_token", "PILOT_ADMIN_TOKEN", "") or None


def set_policy(context, args):
    net = network(args)
    text = _document_text(args)
    policy = load(text)
    token = admin_token(context)
    summary = f"policy set on network {net}: {len(policy.rules)} rules"
    try:
        result = context.ask(schema.POLICY_SET, network_id=net, policy=text, admin_token=token)["result"]
    except PilotError as error:
        if error.code != NOT_RUNNING or token is None:
            raise
        from pilotnet.cli import registry_direct

        registry_direct.request(context.home.registry(), {
            "type": "set_expr_policy", "network_id": net, "expr_policy": text, "admin_token": token})
        return Output({"network_id": net, "applied": False, "rules": len(policy.rules)},
                      f"{summary} (registry; no daemon running to apply it)")
    return Output(dict(result, network_id=net), f"{summary} (registry + daemon)")
