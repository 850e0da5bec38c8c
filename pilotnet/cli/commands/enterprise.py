"""The registry admin's commands: audit log and export, identity provider, blueprints, directory sync.

Spelled as the reference's ``pilotctl`` spells them (controlplane §4.4);
each sends one admin message straight to the registry with the admin token
(:mod:`pilotnet.cli.admin`), so no daemon is needed.  docs/audit.md
describes what they set.
"""

import json

from pilotnet.cli.admin import ask
from pilotnet.cli.args import Args, invalid, parse_number
from pilotnet.cli.output import Output
from pilotnet.errors import NOT_FOUND, PilotError

EXPORT_FORMATS = ("json", "splunk_hec", "syslog_cef")
IDP_TYPES = ("oidc", "saml", "entra_id", "ldap", "webhook", "none")
#: A blueprint or directory file larger than a registry message cannot be sent anyway.
MAX_FILE = 4 * 1024 * 1024


def _data(reply: dict) -> dict:
    return {key: value for key, value in reply.items() if key != "type"}


def _read_json(path: str, what: str) -> object:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise PilotError(f"{what} not found: {path}", code=NOT_FOUND) from None
    except OSError as error:
        raise invalid(f"cannot read {what} {path}: {error.strerror}") from None
    if len(raw) > MAX_FILE:
        raise invalid(f"{what} {path} is larger than {MAX_FILE} bytes")
    try:
        return json.loads(raw)
    except ValueError as error:
        raise invalid(f"{what} {path} is not JSON: {error}", hint="docs/audit.md shows the format") from None


def _network_id(text: str) -> int:
    return parse_number(text, "network ID", 0xFFFF)


def _require(args: Args, name: str, usage: str) -> str:
    value = args.text(name)
    if not value or value == "true":
        raise invalid(f"--{name} is required", hint=f"usage: {usage}")
    return value


# -- audit log and export ------------------------------------------------------------------

def audit(context, args: Args) -> Output:
    message: dict[str, object] = {"type": "get_audit_log"}
    if args.has("network"):
        message["network_id"] = _network_id(args.text("network"))
    limit = args.integer("limit", 0, minimum=1)
    if limit:
        if limit > 1000:
            raise invalid("--limit is at most 1000 (the log keeps the last 1000 entries)")
        message["limit"] = limit
    entries = ask(context, args, message).get("entries", [])
    lines = []
    for entry in entries:
        where = "".join(f" {name}={entry[field]}" for name, field in (("node", "node_id"), ("network", "network_id"))
                        if field in entry)
        details = f"  {entry['details']}" if entry.get("details") else ""
        lines.append(f"{entry['timestamp']}  {entry['action']}{where}{details}")
    return Output({"entries": entries, "total": len(entries)}, "\n".join(lines) or "no audit entries")


def audit_export_get(context, args: Args) -> Output:
    reply = _data(ask(context, args, {"type": "get_audit_export"}))
    if not reply.get("enabled"):
        return Output(reply, "audit export disabled\n  set one: pilotctl audit-export set --format json --endpoint URL")
    return Output(reply, "\n".join([
        f"audit export: {reply['format']} -> {reply['endpoint']}",
        f"  exported {reply.get('exported', 0)}, failed {reply.get('failed', 0)}, "
        f"dropped {reply.get('dropped', 0)}, queued {reply.get('queued', 0)}",
    ]))


def audit_export_set(context, args: Args) -> Output:
    usage = "pilotctl audit-export set --format json|splunk_hec|syslog_cef --endpoint URL"
    export_format = _require(args, "format", usage)
    if export_format not in EXPORT_FORMATS:
        raise invalid(f'--format must be one of {", ".join(EXPORT_FORMATS)}, not "{export_format}"')
    message = {"type": "set_audit_export", "format": export_format, "endpoint": _require(args, "endpoint", usage)}
    for flag, field in (("splunk-token", "splunk_token"), ("index", "index"), ("source", "source")):
        if args.has(flag):
            message[field] = args.text(flag)
    if export_format == "splunk_hec" and "splunk_token" not in message:
        raise invalid("--splunk-token is required for splunk_hec (the HTTP Event Collector token)")
    reply = _data(ask(context, args, message))
    text = f"audit export set: {reply['format']} -> {reply['endpoint']}"
    if reply.get("secret"):
        text += f"\n  signing secret (shown once; receivers check X-Pilot-Signature with it): {reply['secret']}"
    return Output(reply, text)


def audit_export_disable(context, args: Args) -> Output:
    return Output(_data(ask(context, args, {"type": "set_audit_export", "format": "disable"})), "audit export disabled")


# -- identity provider -----------------------------------------------------------------------

IDP_FLAGS = (("url", "url"), ("issuer", "issuer"), ("client-id", "client_id"), ("tenant-id", "tenant_id"),
             ("domain", "domain"))


def idp_get(context, args: Args) -> Output:
    reply = _data(ask(context, args, {"type": "get_idp_config"}))
    if not reply.get("configured"):
        return Output(reply, "no identity provider\n  set one: pilotctl idp set --type webhook --url URL")
    lines = [f"identity provider: {reply['idp_type']}"]
    lines += [f"  {field}: {reply[field]}" for _, field in IDP_FLAGS if reply.get(field)]
    lines.append("  verifies registration tokens" if reply.get("verifies_tokens")
                 else "  stored for your tools (this registry verifies tokens only through a webhook)")
    return Output(reply, "\n".join(lines))


def idp_set(context, args: Args) -> Output:
    idp_type = _require(args, "type", "pilotctl idp set --type oidc|saml|entra_id|ldap|webhook --url URL")
    if idp_type not in IDP_TYPES:
        raise invalid(f'--type must be one of {", ".join(IDP_TYPES)}, not "{idp_type}"')
    message = {"type": "set_idp_config", "idp_type": "" if idp_type == "none" else idp_type}
    for flag, field in IDP_FLAGS:
        if args.has(flag):
            message[field] = args.text(flag)
    reply = _data(ask(context, args, message))
    if not reply.get("configured"):
        return Output(reply, "identity provider cleared")
    text = f"identity provider set: {reply['idp_type']}" + (f" ({reply['url']})" if reply.get("url") else "")
    if reply.get("secret"):
        text += f"\n  signing secret (shown once; the webhook checks X-Pilot-Signature with it): {reply['secret']}"
    return Output(reply, text)


def external_id(context, args: Args) -> Output:
    node_id = parse_number(args.positional[0], "node ID", 0xFFFFFFFF)
    if len(args.positional) > 1 or args.boolean("clear"):
        value = "" if args.boolean("clear") else args.positional[1]
        reply = _data(ask(context, args, {"type": "set_external_id", "node_id": node_id, "external_id": value}))
        return Output(reply, f"node {node_id}: external ID {value}" if value else f"node {node_id}: external ID cleared")
    reply = _data(ask(context, args, {"type": "get_identity", "node_id": node_id}))
    if not reply.get("external_id"):
        return Output(reply, f"node {node_id} has no external ID")
    how = "verified by the identity provider" if reply.get("verified") else "set by the admin"
    return Output(reply, f"node {node_id}: {reply['external_id']} ({how}, {reply.get('set_at')})")


# -- blueprints -----------------------------------------------------------------------------------

def provision(context, args: Args) -> Output:
    blueprint = _read_json(args.positional[0], "blueprint")
    reply = _data(ask(context, args, {"type": "provision_network", "blueprint": blueprint}))
    lines = [f"provisioned{' blueprint ' + reply['blueprint'] if reply.get('blueprint') else ''}:"]
    for network in reply.get("networks", []):
        state = "created" if network["created"] else "already there"
        added = "".join(f", {verb} {', '.join(map(str, network[verb]))}" for verb in ("joined", "invited")
                        if network.get(verb))
        lines.append(f"  network {network['name']} (id {network['network_id']}): {state}{added}")
    for setting, shown in (("idp_config", "identity provider"), ("webhook", "registry webhook"),
                           ("audit_export", "audit export")):
        if reply.get(setting):
            lines.append(f"  {shown} set")
    return Output(reply, "\n".join(lines))


def deprovision(context, args: Args) -> Output:
    name = args.positional[0]
    reply = _data(ask(context, args, {"type": "deprovision_network", "name": name}))
    return Output(reply, f"deprovisioned network {name} (id {reply['network_id']})")


def provision_status(context, args: Args) -> Output:
    reply = _data(ask(context, args, {"type": "get_provision_status"}))
    networks = reply.get("networks", [])
    if networks:
        lines = [f"{'NAME':<24}{'ID':<8}{'MEMBERS':<9}{'BLUEPRINT':<16}PROVISIONED"]
        lines += [f"{n['name']:<24}{n['network_id']:<8}{(n['members'] if n['exists'] else 'gone'):<9}"
                  f"{n['blueprint'] or '-':<16}{n['provisioned_at']}" for n in networks]
    else:
        lines = ["no provisioned networks"]
    lines.append(f"webhook: {'set' if reply.get('webhook') else 'none'}, audit export: "
                 f"{'set' if reply.get('audit_export') else 'none'}, identity provider: {reply.get('idp') or 'none'}")
    return Output(reply, "\n".join(lines))


# -- directory sync --------------------------------------------------------------------------------

def directory_sync(context, args: Args) -> Output:
    document = _read_json(args.positional[0], "directory file")
    if isinstance(document, list):
        document = {"entries": document}
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise invalid("a directory file is a list of entries, or an object with \"entries\"",
                      hint="docs/audit.md, Directory sync, shows the format")
    message = {"type": "directory_sync", "entries": document["entries"],
               "remove_unlisted": args.boolean("remove-unlisted") or bool(document.get("remove_unlisted"))}
    network = args.text("network") if args.has("network") else document.get("network", document.get("network_id"))
    if network is None:
        raise invalid("which network? give --network N (ID or name) or \"network\" in the file")
    if isinstance(network, int) or (isinstance(network, str) and network.isdigit()):
        message["network_id"] = _network_id(str(network))
    else:
        message["network"] = str(network)
    reply = _data(ask(context, args, message))
    text = (f"synchronised network {reply['network_id']}: {len(reply['matched'])} matched, "
            f"{len(reply['pending'])} waiting for their node, {len(reply['removed'])} removed")
    text += "".join(f"\n  error: {error}" for error in reply.get("errors", []))
    return Output(reply, text)


def directory_status(context, args: Args) -> Output:
    network_id = _network_id(args.positional[0])
    reply = _data(ask(context, args, {"type": "directory_status", "network_id": network_id}))
    lines = [f"network {network_id}: last synchronised {reply['synced_at']} ({reply['entries']} entries)",
             f"  members {reply['members']}, matched {len(reply['matched'])}, "
             f"waiting {len(reply['pending'])}, removed {len(reply['removed'])}"]
    lines += [f"  waiting: {external_id}" for external_id in reply["pending"]]
    return Output(reply, "\n".join(lines))
