"""Every ``pilotctl`` command: its arguments, what it does and returns, and where its code lives.

The one table serves dispatch, argument checking, the usage screen and the
machine-readable ``pilotctl context``.  Argument specs use the reference's
notation: ``<x>`` a required positional, ``[x]`` an optional one, ``[x...]``
any number more, ``--flag V`` / ``[--flag V]`` a flag (whose value the
command checks).  Handlers are named as ``module:function`` under
:mod:`pilotnet.cli.commands` and imported only when their command runs.
"""

from pilotnet.cli.args import invalid
from pilotnet.errors import (
    ALREADY_EXISTS, AUTH_REQUIRED, CONNECTION_FAILED, INTERNAL, INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, NOT_TRUSTED,
    REFUSED, TIMEOUT, UNAVAILABLE, UNREACHABLE,
)

CATALOGUE_VERSION = "1.2"

ERROR_CODES = {
    INVALID_ARGUMENT: "bad input; fix the command, do not retry",
    NOT_FOUND: "the target, hostname or resource does not exist or is not visible",
    ALREADY_EXISTS: "the thing being created is already there (daemon running, port bound)",
    NOT_RUNNING: "the daemon is not running; start it with: pilotctl daemon start",
    CONNECTION_FAILED: "the network operation failed; retry may succeed",
    TIMEOUT: "no answer in time; retry with a longer --timeout",
    UNREACHABLE: "the peer gives no sign of life (daemon stopped or network down); retry later",
    NOT_TRUSTED: "the peer is private and does not trust this node (any more); ask it with pilotctl handshake",
    INTERNAL: "an unexpected failure; see the daemon log",
    UNAVAILABLE: "the feature is not available in this version",
    REFUSED: "the remote node refused the request; the message gives its reason",
    AUTH_REQUIRED: "an admin command without the registry's admin token; set PILOT_ADMIN_TOKEN",
}

ENVIRONMENT = {
    "PILOT_HOME": "the node's home directory (default ~/.pilot)",
    "PILOT_SOCKET": "the daemon's control socket (default <home>/pilot.sock)",
    "PILOT_REGISTRY": "the registry host:port (default 127.0.0.1:9000)",
    "PILOT_ADMIN_TOKEN": "the registry's admin token, for admin commands (or admin_token in config.json)",
}

GLOBAL_FLAGS = {
    "--json": "machine-readable output: {\"data\":…,\"status\":\"ok\"} on stdout, errors as JSON on stderr",
    "--home": "the node's home directory (overrides PILOT_HOME)",
    "--help": "this command's usage, flags and an example (also -h)",
}

#: What each command flag means (the same flag means the same thing in every command).
FLAGS = {
    "registry": "the registry's host:port",
    "beacon": "the beacon's host:port",
    "hostname": "this node's hostname",
    "socket": "the daemon's control socket path",
    "set": "store KEY=VALUE in config.json",
    "listen": "the UDP address the tunnel listens on (host:port)",
    "endpoint": "a fixed public host:port to announce, skipping discovery (daemon start); where audit entries go "
                "(audit-export set: an http(s) URL, or udp:// or tcp://host:port for syslog)",
    "identity": "the identity file (default <home>/identity.json)",
    "owner": "an owner label kept by the registry",
    "config": "a daemon config file",
    "log-format": "text or json",
    "mss": "the stream's maximum segment size in bytes",
    "local-mss": "the segment size on loopback paths (0: as --mss)",
    "public": "make the node public from the start",
    "trust-auto-approve": "approve every handshake request automatically",
    "no-encrypt": "do not encrypt tunnels (testing only)",
    "no-echo": "do not run the echo service (port 7)",
    "foreground": "run in this terminal instead of the background",
    "check": "print nothing; exit 0 if the daemon answers, 1 if not",
    "search": "keep rows containing this text (case-insensitive)",
    "count": "how many (probes, messages, events; 0 = until interrupted where allowed)",
    "timeout": "give up after this long (30s, 2m, or seconds)",
    "message": "the text to send (else stdin)",
    "data": "the text to send",
    "port": "the virtual port to send to",
    "type": "the kind: text, json or binary (send-message); received or submitted (task list); "
            "oidc, saml, entra_id, ldap, webhook or none (idp set)",
    "clear": "delete them instead of listing them (inbox, received); clear the value (external-id)",
    "task": "the task's description",
    "id": "the task's ID",
    "justification": "why (sent to the submitter)",
    "results": "the results as text",
    "file": "a file: the results to send (task send-results) or the policy document (policy)",
    "webhook": "POST the node's events to this http(s) URL (docs/webhooks.md)",
    "webhook-allow-private": "let the webhook reach loopback and private addresses",
    "subnet": "the gateway's IPv4 subnet for local IPs (default 10.4.0.0/16)",
    "ports": "the TCP ports each local IP listens on, comma-separated",
    "dns-port": "answer <agent>.pilot queries on 127.0.0.1 at this UDP port",
    "admin-token": "the registry's admin token (else $PILOT_ADMIN_TOKEN or admin_token in config.json)",
    "name": "the network's name (lowercase letters, digits and hyphens)",
    "join-rule": "who may join: open, token or invite (invite needs --enterprise)",
    "token": "the secret a node must present to join a token network",
    "enterprise": "make it an enterprise network (roles, invitations, policies)",
    "node-id": "the node that creates the network (default: the running daemon's)",
    "network-admin-token": "a token that manages this network only",
    "rules": "managed-network rules as JSON (links, cycle, prune, prune_by, fill, fill_how, grace)",
    "rules-file": "a file holding the managed-network rules as JSON",
    "max-members": "the most members the network takes (0: no limit, at most 10000)",
    "description": "the network's description (at most 256 characters)",
    "allowed-ports": "the only ports members may reach each other on, comma-separated (none: all)",
    "net": "the network ID (managed: 0 or absent means the first managed network)",
    "inline": "the policy document as JSON text",
    "event": 'the event as JSON: {"type": "connect", "port": 7, ...} (docs/networks.md)',
    "topic": "the topic the score is about",
    "delta": "how much to add to the score (negative lowers it; default 1)",
    "force": "required: run a cycle now",
    "node": "the member's node ID",
    "tags": "comma-separated tags (at most 10)",
    "networks": "network IDs to join at start-up, comma-separated",
    "identity-token": "a token the registry's identity provider verifies (docs/audit.md, Identity)",
    "network": "a network, by ID (or by name where a name is accepted)",
    "limit": "at most this many entries, newest first (1-1000, default 100)",
    "format": "the audit export format: json, splunk_hec or syslog_cef",
    "splunk-token": "the Splunk HTTP Event Collector token",
    "index": "the Splunk index",
    "source": "the source named in exported entries (default pilot-registry)",
    "url": "the identity provider's URL",
    "issuer": "the identity provider's issuer (OIDC) or entity ID (SAML)",
    "client-id": "the client (application) ID registered with the identity provider",
    "tenant-id": "the Microsoft Entra ID tenant",
    "domain": "the directory's domain (LDAP)",
    "remove-unlisted": "also remove members whose external ID the directory no longer lists",
}


class Command:
    """One command of the catalogue (a plain class: ``dataclasses`` is slow to import)."""

    __slots__ = ("name", "args", "description", "returns", "handler", "example")

    def __init__(self, name, args, description, returns, handler, example):
        self.name = name
        self.args = args
        self.description = description
        self.returns = returns
        self.handler = handler
        self.example = example

    def __repr__(self):
        return f"<Command {self.name}>"

    @property
    def usage(self):
        return " ".join(("pilotctl", self.name) + self.args)

    @property
    def flags(self):
        return {arg.strip("[]").split()[0][2:] for arg in self.args if arg.strip("[").startswith("--")}

    @property
    def flag_specs(self):
        """``--count N``, ``--public``: each flag as the usage line writes it."""
        return [arg.strip("[]") for arg in self.args if arg.strip("[").startswith("--")]

    @property
    def positional_range(self):
        """(fewest, most) positional arguments; most is None for ``[x...]``."""
        positional = [arg for arg in self.args if not arg.strip("[").startswith("--")]
        fewest = sum(1 for arg in positional if arg.startswith("<"))
        most = None if any(arg.endswith("...]") for arg in positional) else len(positional)
        return fewest, most

    def check(self, args):
        """``invalid_argument`` for an unknown flag or the wrong number of positional arguments."""
        unknown = sorted(set(args.flags) - self.flags)
        if unknown:
            raise invalid(f"unknown flag --{unknown[0]} for {self.name}", hint=f"usage: {self.usage}")
        fewest, most = self.positional_range
        count = len(args.positional)
        if count < fewest or (most is not None and count > most):
            raise invalid(f"usage: {self.usage}")

    def load(self):
        module, function = self.handler.split(":")
        # __import__ rather than importlib.import_module: importlib's package (and the warnings module it
        # imports) is start-up time a fast command does not need.
        return getattr(__import__(f"pilotnet.cli.commands.{module}", fromlist=(function,)), function)


_PLACEHOLDER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ_=")


def usage_parts(usage):
    """``"[--a B] --c D e"`` -> ``("[--a B]", "--c D", "e")``: bracketed groups, flags with their value, words.

    Scanned by hand: ``re`` costs every pilotctl start about 7 ms (see :mod:`pilotnet.cli.args`).
    """
    parts, position = [], 0
    while position < len(usage):
        if usage[position].isspace():
            position += 1
            continue
        closing = usage.find("]", position) if usage[position] == "[" else -1
        if closing != -1:
            end = closing + 1
        else:
            end = position
            while end < len(usage) and not usage[end].isspace():
                end += 1
            value_end = end + 1
            while value_end < len(usage) and usage[value_end] in _PLACEHOLDER:
                value_end += 1
            if usage.startswith("--", position) and end - position > 2 \
                    and usage.startswith(" ", end) and value_end > end + 1:
                end = value_end
        parts.append(usage[position:end])
        position = end
    return tuple(parts)


def _command(name, args, description, returns, handler, example):
    return Command(name, usage_parts(args), description, returns, handler, example)


_TIMEOUT = "[--timeout D]"

COMMANDS = [
    # bootstrap
    _command("init", "[--registry ADDR] [--beacon ADDR] [--hostname NAME] [--socket PATH]",
             "write settings into config.json", "config_path, registry, beacon, socket, hostname",
             "bootstrap:init",
             "pilotctl init --registry registry.example.org:9000 --hostname agent-a"),
    _command("config", "[--set KEY=VALUE]", "show config.json and the paths in use, or set one key",
             "the config plus config_path, pid_file, log_file; or key, value", "bootstrap:config",
             "pilotctl config --set registry=10.0.0.5:9000"),
    _command("context", "", "this catalogue, machine-readable",
             "version, commands, error_codes, global_flags, environment, config_file", "bootstrap:context",
             "pilotctl context --json"),
    # daemon lifecycle
    _command("daemon start",
             "[--registry ADDR] [--beacon ADDR] [--listen ADDR] [--endpoint ADDR] [--socket PATH] "
             "[--identity PATH] [--hostname NAME] [--owner NAME] [--config PATH] [--log-format FMT] "
             "[--mss BYTES] [--local-mss BYTES] [--public] [--trust-auto-approve] [--no-encrypt] [--no-echo] [--foreground] "
             "[--webhook URL] [--webhook-allow-private] [--networks IDS]",
             "start the daemon in the background and wait until it answers",
             "pid, node_id, address, hostname, socket, log_file", "lifecycle:start",
             "pilotctl daemon start --hostname agent-a --public"),
    _command("daemon stop", "", "stop the daemon (SIGTERM, SIGKILL after 10s)", "pid [, forced]",
             "lifecycle:stop",
             "pilotctl daemon stop"),
    _command("daemon status", "[--check]", "is the daemon running and answering",
             "running, responsive, pid, pid_file, socket [, node_id, address, hostname, uptime_secs, "
             "peers, connections]", "lifecycle:status",
             "pilotctl daemon status --check && echo up"),
    # the node
    _command("info", "", "the node's identity, counters, peers and connections", "the daemon's Info object",
             "node:info",
             "pilotctl info --json"),
    _command("peers", "[--search TEXT]", "peers with their path (direct or relay) and crypto state",
             "peers[{node_id, address, endpoint, path, encrypted, authenticated}], total", "node:peers",
             "pilotctl peers --search relay"),
    _command("connections", "", "stream connections with the transport's counters",
             "connections[…], total", "node:connections",
             "pilotctl connections"),
    _command("disconnect", "<conn_id>", "close one connection", "conn_id", "node:disconnect",
             "pilotctl disconnect 42"),
    # registry and discovery
    _command("set-hostname", "<name>", "set this node's hostname", "hostname, node_id", "registry:set_hostname",
             "pilotctl set-hostname agent-a"),
    _command("clear-hostname", "", "remove this node's hostname", "hostname", "registry:clear_hostname",
             "pilotctl clear-hostname"),
    _command("find", "<hostname>", "resolve a hostname to a node", "hostname, node_id, address, public",
             "registry:find",
             "pilotctl find agent-b"),
    _command("set-public", "", "make this node visible to everyone", "node_id, type, visibility",
             "registry:set_public",
             "pilotctl set-public"),
    _command("set-private", "", "hide this node from non-trusted nodes", "node_id, type, visibility",
             "registry:set_private",
             "pilotctl set-private"),
    _command("set-tags", "<tag> [tag...]", "set up to 3 tags on this node", "node_id, tags",
             "registry:set_tags",
             "pilotctl set-tags gpu vision"),
    _command("clear-tags", "", "remove this node's tags", "tags", "registry:clear_tags",
             "pilotctl clear-tags"),
    _command("enable-tasks", "", "accept task submissions", "node_id, task_exec, type", "registry:enable_tasks",
             "pilotctl enable-tasks"),
    _command("disable-tasks", "", "refuse task submissions", "node_id, task_exec, type",
             "registry:disable_tasks",
             "pilotctl disable-tasks"),
    # straight to the registry (no daemon needed)
    _command("lookup", "<node_id>", "a node's registry record, asked of the registry directly",
             "the registry's lookup reply", "registry:lookup",
             "pilotctl lookup 42"),
    _command("register", "[listen_addr] [--identity PATH] [--identity-token TOKEN]",
             "register this node's identity with the registry directly (creates the identity if missing)",
             "the registry's register reply (node_id, address, ...)", "registry:register",
             "pilotctl register 203.0.113.7:4000"),
    _command("rotate-key", "<node_id> [--identity PATH]",
             "replace the node's key at the registry (signed by the current key) and in the identity file",
             "the registry's rotate_key reply (node_id, address, public_key)", "registry:rotate_key",
             "pilotctl rotate-key 42"),
    _command("deregister", "[node_id] [--identity PATH]",
             "remove this node from the registry directly (the node ID defaults to the running daemon's)",
             "type", "registry:deregister",
             "pilotctl deregister 42"),
    # registry administration (straight to the registry, with the admin token; docs/audit.md)
    _command("audit", "[--network ID] [--limit N] [--admin-token TOKEN]", "the registry's audit log, newest first",
             "entries[{event_id, timestamp, action, network_id?, node_id?, details?}], total", "enterprise:audit",
             "pilotctl audit --network 3"),
    _command("audit-export get", "[--admin-token TOKEN]",
             "where the registry exports its audit entries, with counters",
             "enabled, format, endpoint, index?, source, exported, failed, dropped, queued",
             "enterprise:audit_export_get", "pilotctl audit-export get"),
    _command("audit-export set",
             "--format FMT --endpoint URL [--splunk-token TOKEN] [--index NAME] [--source NAME] "
             "[--admin-token TOKEN]",
             "export every audit entry as signed JSON, to Splunk HEC, or to syslog as CEF",
             "enabled, format, endpoint, index?, source [, secret]", "enterprise:audit_export_set",
             "pilotctl audit-export set --format syslog_cef --endpoint tcp://siem.example.com:6514"),
    _command("audit-export disable", "[--admin-token TOKEN]", "stop exporting audit entries", "enabled",
             "enterprise:audit_export_disable",
             "pilotctl audit-export disable"),
    _command("idp get", "[--admin-token TOKEN]", "the registry's identity provider",
             "configured, idp_type, url, issuer?, client_id?, tenant_id?, domain?, verifies_tokens",
             "enterprise:idp_get",
             "pilotctl idp get"),
    _command("idp set", "--type TYPE [--url URL] [--issuer ISSUER] [--client-id ID] [--tenant-id ID] "
             "[--domain DOMAIN] [--admin-token TOKEN]",
             "set the identity provider; a webhook one verifies the identity tokens nodes register with",
             "configured, idp_type, url, ... [, secret]", "enterprise:idp_set",
             "pilotctl idp set --type webhook --url https://verify.example.com/pilot"),
    _command("external-id", "<node_id> [external_id] [--clear] [--admin-token TOKEN]",
             "a node's external ID (what directory-sync matches): show it, set it, or --clear it",
             "node_id, external_id [, verified, source, set_at]", "enterprise:external_id",
             "pilotctl external-id 42 alice@example.com"),
    _command("provision", "<blueprint.json> [--admin-token TOKEN]",
             "networks, members, policies, the webhook, audit export and identity provider from one file",
             "blueprint, networks[{name, network_id, created, joined, invited}], webhook?, audit_export?, idp_config?",
             "enterprise:provision", "pilotctl provision team.json"),
    _command("deprovision", "<network-name> [--admin-token TOKEN]", "delete a network a blueprint provisioned",
             "name, network_id, deleted", "enterprise:deprovision", "pilotctl deprovision ml-team"),
    _command("provision-status", "[--admin-token TOKEN]",
             "the networks blueprints provisioned, and the registry-wide settings",
             "networks[{name, network_id, blueprint, provisioned_at, exists, members}], webhook, audit_export, idp",
             "enterprise:provision_status", "pilotctl provision-status"),
    _command("directory-sync", "<directory.json> [--network ID] [--remove-unlisted] [--admin-token TOKEN]",
             "make a network's members those your directory lists (by the nodes' external IDs)",
             "network_id, synced_at, entries, matched, pending, removed, remove_unlisted, errors",
             "enterprise:directory_sync", "pilotctl directory-sync staff.json --network 3 --remove-unlisted"),
    _command("directory-status", "<network_id> [--admin-token TOKEN]",
             "a network's last directory sync and who still waits",
             "network_id, synced_at, entries, matched, pending, removed, members, exists, errors",
             "enterprise:directory_status", "pilotctl directory-status 3"),
    # webhooks
    _command("set-webhook", "<url>", "POST this node's events to an http(s) URL (kept in config.json)",
             "webhook, enabled, secret_file, sent, failed, dropped, queued", "webhooks:set_webhook",
             "pilotctl set-webhook https://ops.example.com/pilot-events"),
    _command("clear-webhook", "", "stop posting this node's events", "webhook, enabled", "webhooks:clear_webhook",
             "pilotctl clear-webhook"),
    # trust
    _command("handshake", "<node_id|address|hostname> [justification...]",
             "ask a node for mutual trust (direct and relayed by the registry, raced; a private node's "
             "hostname is asked by name)", "status (sent|approved|trusted), node_id or hostname, path, mutual",
             "trust:handshake",
             'pilotctl handshake agent-b "we share the vision pipeline"'),
    _command("approve", "<node_id>", "approve a pending handshake request", "status, node_id", "trust:approve",
             "pilotctl approve 42"),
    _command("reject", "<node_id> [reason...]", "reject a pending handshake request", "status, node_id",
             "trust:reject",
             'pilotctl reject 42 "unknown requester"'),
    _command("pending", "", "handshake requests waiting for approval",
             "pending[{node_id, public_key, justification, received_at}]", "trust:pending",
             "pilotctl pending"),
    _command("trust", "", "trusted peers", "trusted[{node_id, public_key, approved_at, mutual, network}]",
             "trust:trust",
             "pilotctl trust --json"),
    _command("untrust", "<node_id>", "revoke trust in a node at once", "node_id", "trust:untrust",
             "pilotctl untrust 42"),
    # diagnostics
    _command("health", "", "is the daemon up, with its headline counters",
             "status, uptime_seconds, connections, peers, bytes_sent, bytes_recv", "node:health",
             "pilotctl health --json"),
    _command("ping", f"<address|hostname> [--count N] {_TIMEOUT}",
             "round trips to the echo port, a fresh connection per probe",
             "target, results[{seq, rtt_ms, bytes} | {seq, error}], timeout", "diagnostics:ping",
             "pilotctl ping agent-b --count 3"),
    _command("traceroute", f"<address> {_TIMEOUT}", "connection setup time and echo round trips",
             "target, setup_ms, rtt_samples[{rtt_ms, bytes}]", "diagnostics:traceroute",
             "pilotctl traceroute 0:0000.0000.002A"),
    _command("bench", f"<address|hostname> [size_mb] {_TIMEOUT}", "stream throughput through the echo port",
             "target, sent_bytes, recv_bytes, send_duration_ms, total_duration_ms, send_mbps, total_mbps",
             "diagnostics:bench",
             "pilotctl bench agent-b 10"),
    # communication
    _command("connect", f"<address|hostname> [port] [--message TEXT] {_TIMEOUT}",
             "send a message (or stdin) on a stream and print the reply", "target, port, sent, response",
             "messaging:connect",
             "pilotctl connect agent-b 1000 --message hello"),
    _command("send", f"<address|hostname> <port> --data TEXT {_TIMEOUT}",
             "send data on a stream and print the reply", "target, port, sent, response", "messaging:send",
             "pilotctl send agent-b 1000 --data hello --timeout 5s"),
    _command("recv", f"<port> [--count N] {_TIMEOUT}", "accept streams on a port and print one message from each",
             "messages[{seq, port, data, bytes} | {seq, port, error}], timeout", "messaging:recv",
             "pilotctl recv 1000 --count 2"),
    _command("listen", f"<port> [--count N] {_TIMEOUT}", "print the datagrams sent to a port",
             "messages[{src_addr, src_port, data, bytes}], timeout (NDJSON lines when --count is 0)",
             "messaging:listen",
             "pilotctl listen 1000 --count 0 --json"),
    _command("send-message", "<address|hostname> --data TEXT [--type KIND]",
             "send a text, json or binary message to a node's inbox (port 1001)", "target, type, bytes, ack",
             "mailbox:send_message",
             'pilotctl send-message agent-b --data \'{"job":1}\' --type json'),
    _command("send-file", "<address|hostname> <path>", "send a file to a node (port 1001), with progress",
             "filename, bytes, destination, ack", "mailbox:send_file",
             "pilotctl send-file agent-b ./report.pdf"),
    _command("received", "[--clear]", "files other nodes sent here",
             "files[{name, bytes, modified, path}], total, dir; or cleared", "mailbox:received",
             "pilotctl received"),
    _command("inbox", "[--clear]", "messages other nodes sent here",
             "messages[{type, from, data, bytes, received_at}], total, dir; or cleared", "mailbox:inbox",
             "pilotctl inbox --clear"),
    # events
    _command("publish", "[address|hostname] <topic> --data TEXT",
             "publish an event (through the local daemon unless a node is named)", "target, topic, bytes",
             "events:publish",
             "pilotctl publish metrics.cpu --data 42"),
    _command("subscribe", f"[address|hostname] <topic> [--count N] {_TIMEOUT}",
             "print events matching a topic pattern (metrics.* matches metrics.cpu and metrics.cpu.load)",
             "events[{topic, data, bytes}], timeout (NDJSON lines when --count is 0)", "events:subscribe",
             "pilotctl subscribe 'metrics.*' --count 10"),
    _command("broadcast", "<network_id> <message> [--port P]",
             "send a datagram to every other member of a network (default port 1000; receive with listen)",
             "network_id, address, port, bytes, sent, unreachable", "messaging:broadcast",
             'pilotctl broadcast 3 "maintenance at noon"'),
    # tasks
    _command("task submit", '<address|hostname> --task TEXT', "ask a node to carry out a task",
             "target, task_id, task, status, message, accepted", "tasks:submit",
             'pilotctl task submit agent-b --task "summarise report.pdf"'),
    _command("task accept", "--id ID", "accept a task received within the last minute",
             "task_id, status, message", "tasks:accept",
             "pilotctl task accept --id 5f2c"),
    _command("task decline", "--id ID --justification TEXT", "decline a received task",
             "task_id, status, justification, message", "tasks:decline",
             'pilotctl task decline --id 5f2c --justification "no GPU free"'),
    _command("task execute", "", "start the first accepted task", "task_id, task_description, status, from",
             "tasks:execute",
             "pilotctl task execute"),
    _command("task send-results", "--id ID [--results TEXT] [--file PATH]",
             "send a task's results (text, or a document/data file) to its submitter",
             "task_id, status, sent_to, sent_type [, filename, file_size]", "tasks:send_results",
             "pilotctl task send-results --id 5f2c --file summary.md"),
    _command("task list", "[--type KIND]", "received and submitted tasks",
             "tasks[{task_id, description, status, from, to, created_at, category}]", "tasks:list_tasks",
             "pilotctl task list --type received"),
    _command("task queue", "", "received tasks waiting to be carried out",
             "queue[{task_id, description, from, created_at}], count", "tasks:queue",
             "pilotctl task queue"),
    # networks, managed at the registry with the admin token (docs/networks.md)
    _command("network create",
             "--name NAME [--join-rule RULE] [--token T] [--enterprise] [--node-id N] "
             "[--network-admin-token T] [--rules JSON] [--rules-file PATH] [--admin-token T]",
             "create a network at the registry; its creator (this node by default) is the owner",
             "the registry's reply: network_id, name, join_rule, enterprise [, managed]",
             "network_admin:create",
             "pilotctl network create --name team --join-rule token --token s3cret"),
    _command("network delete", "<network_id> [--admin-token T]", "delete a network and its invitations",
             "type, network_id", "network_admin:delete", "pilotctl network delete 3"),
    _command("network rename", "<network_id> <name> [--admin-token T]", "rename a network",
             "type, network_id, name", "network_admin:rename", "pilotctl network rename 3 research"),
    _command("network promote", "<network_id> <node> [--admin-token T]",
             "make a member an admin (enterprise networks)", "type, network_id, target_node_id, role",
             "network_admin:promote", "pilotctl network promote 3 42"),
    _command("network demote", "<network_id> <node> [--admin-token T]",
             "make an admin a plain member again (enterprise networks)",
             "type, network_id, target_node_id, role", "network_admin:demote", "pilotctl network demote 3 42"),
    _command("network kick", "<network_id> <node> [--admin-token T]",
             "remove a member (never the owner; enterprise networks)", "type, network_id, target_node_id",
             "network_admin:kick", "pilotctl network kick 3 42"),
    _command("network role", "<network_id> <node>", "a member's role: owner, admin or member",
             "type, network_id, target_node_id, role", "network_admin:role", "pilotctl network role 3 42"),
    _command("network policy",
             "<network_id> [--max-members N] [--description TEXT] [--allowed-ports LIST] [--admin-token T]",
             "show a network's policy, or set the given fields (enterprise networks)",
             "type, network_id, max_members, allowed_ports, description", "network_admin:policy",
             "pilotctl network policy 3 --allowed-ports 80,443 --max-members 50"),
    # network policies and managed networks (docs/networks.md)
    _command("policy get", "--net N", "a network's expression policy (from the registry, through the daemon)",
             "network_id, expr_policy", "policy:get", "pilotctl policy get --net 3"),
    _command("policy set", "--net N [--file PATH] [--inline JSON]",
             "validate, store at the registry and apply a network's expression policy (owner, admin or admin token)",
             "network_id, applied, rules", "policy:set_policy", "pilotctl policy set --net 3 --file policy.json"),
    _command("policy validate", "[--file PATH] [--inline JSON]", "check a policy document here, without a daemon",
             "valid, version, rules, events, default_verdict", "policy:validate",
             "pilotctl policy validate --file policy.json"),
    _command("policy test", "--file PATH --event JSON", "evaluate a policy document against one event, here",
             "event_type, verdict (gate events), directives[{type, rule, params}]", "policy:test",
             'pilotctl policy test --file policy.json --event \'{"type": "connect", "port": 7}\''),
    _command("managed score", "<node_id> [--net N] [--topic T] [--delta N]", "raise or lower a managed peer's score",
             "node_id, delta, topic, network_id", "managed:score", "pilotctl managed score 42 --delta 5"),
    _command("managed status", "[--net N]", "a managed network's rules and state on this node",
             "network_id, peers, max_links, cycle, prune, prune_by, fill, fill_how, grace, cycle_num, joined_at",
             "managed:status", "pilotctl managed status --net 3"),
    _command("managed rankings", "[--net N]", "the managed peers by score",
             "network_id, rankings[{rank, node_id, score, added_at, last_seen, topics}]", "managed:rankings",
             "pilotctl managed rankings"),
    _command("managed cycle", "[--force] [--net N]", "run a prune/fill cycle now (needs --force)",
             "network_id, pruned, filled, peers, cycle_num, pruned_ids, filled_ids", "managed:cycle",
             "pilotctl managed cycle --force --net 3"),
    _command("member-tags set", "--net N --node ID --tags LIST", "set a member's admin-assigned tags in a network",
             "network_id, node_id, tags", "managed:tags_set",
             "pilotctl member-tags set --net 3 --node 42 --tags gpu,eu"),
    _command("member-tags get", "--net N [--node ID]", "a member's tags, or every member's",
             "tags, or members{node_id: [tags]}", "managed:tags_get", "pilotctl member-tags get --net 3"),
    # networks, through the daemon (docs/networks.md)
    _command("network list", "", "every network the registry lists, with its join rule and member count",
             "networks[{id, name, join_rule, members, created}]", "network_membership:list_networks",
             "pilotctl network list"),
    _command("network join", "<network_id> [--token T]", "join a network (its members trust each other)",
             "type, network_id, address", "network_membership:join",
             "pilotctl network join 3 --token s3cret"),
    _command("network leave", "<network_id>", "leave a network: the trust it gave ends at once",
             "type, network_id", "network_membership:leave",
             "pilotctl network leave 3"),
    _command("network members", "<network_id>", "a network's members",
             "network_id, nodes[{node_id, address, hostname, version, public, offline}]",
             "network_membership:members",
             "pilotctl network members 3"),
    _command("network invite", "<network_id> <node>", "invite a node to an invite-only network",
             "type, network_id [, status]", "network_invites:invite",
             "pilotctl network invite 3 agent-b"),
    _command("network invites", "", "invitations waiting for this node",
             "invites[{network_id, inviter_id, timestamp}]", "network_invites:invites",
             "pilotctl network invites"),
    _command("network accept", "<network_id>", "accept an invitation (join the network)",
             "type, accepted, network_id", "network_invites:accept",
             "pilotctl network accept 3"),
    _command("network reject", "<network_id>", "reject an invitation", "type, accepted, network_id",
             "network_invites:reject",
             "pilotctl network reject 3"),
    # about pilotctl itself
    _command("version", "", "pilotctl's version", "version", "bootstrap:version", "pilotctl version"),
    _command("help", "[command...]", "the usage screen, or one command's help (as <command> --help)",
             "usage, description, flags, returns, example", "bootstrap:help", "pilotctl help ping"),
    _command("completion", "<shell>", "a bash or zsh completion script for pilotctl",
             "the script (printed as is)", "bootstrap:completion",
             "pilotctl completion bash > ~/.local/share/bash-completion/completions/pilotctl"),
    # gateway (needs root for start; see docs/gateway.md)
    _command("gateway start", "[--subnet CIDR] [--ports LIST] [--dns-port PORT] [--foreground] [target...]",
             "run the gateway in the background: each target (address|hostname [ip]) gets a local IP",
             "pid, subnet, ports, mappings[{local_ip, pilot_addr, hostname, ports, connections}] [, dns]",
             "gateway:start", "pilotctl gateway start --ports 80 agent-alpha"),
    _command("gateway stop", "", "stop the gateway: listeners and loopback aliases go", "pid [, forced]",
             "gateway:stop", "pilotctl gateway stop"),
    _command("gateway map", "<address|hostname> [ip]", "map an agent on the running gateway",
             "local_ip, pilot_addr [, hostname, ports, connections]", "gateway:map_target",
             "pilotctl gateway map agent-beta 10.4.0.2"),
    _command("gateway unmap", "<ip>", "remove a mapping from the running gateway", "unmapped, pilot_addr",
             "gateway:unmap", "pilotctl gateway unmap 10.4.0.2"),
    _command("gateway list", "", "the running gateway's mappings", "mappings[…], total", "gateway:list_mappings",
             "pilotctl gateway list --json"),
]

BY_NAME = {command.name: command for command in COMMANDS}
#: Commands with sub-commands (``daemon start``, ``task submit``).
GROUPS = ("daemon", "task", "gateway", "network", "policy", "managed", "member-tags", "audit-export", "idp")


def find(argv):
    """``(command, remaining argv)`` for a command line, or ``(None, argv)``; groups have sub-commands."""
    if not argv:
        return None, argv
    if argv[0] in GROUPS and len(argv) > 1:
        command = BY_NAME.get(f"{argv[0]} {argv[1]}")
        if command is not None:
            return command, argv[2:]
    return BY_NAME.get(argv[0]), argv[1:]


def group_usage(group):
    """``usage: pilotctl daemon start|stop|status``: a group named without a known sub-command."""
    subcommands = [c.name.split(" ", 1)[1] for c in COMMANDS if c.name.startswith(group + " ")]
    return f"usage: pilotctl {group} {'|'.join(subcommands)}"


def group_help_document(group):
    """``pilotctl daemon --help``: a group's sub-commands with what each does, and an example."""
    members = [command for command in COMMANDS if command.name.startswith(group + " ")]
    return {"usage": group_usage(group)[len("usage: "):], "example": members[0].example,
            "commands": {command.usage: command.description for command in members}}


def group_help_text(group):
    document = group_help_document(group)
    lines = [f"usage: {document['usage']}", "", "commands:"]
    for usage, description in document["commands"].items():
        lines += [f"  {usage}", f"      {description}"]
    lines += ["", f"help on one of them: pilotctl {group} <command> --help", "", "example:",
              f"  {document['example']}"]
    return "\n".join(lines)


def usage_screen():
    lines = ["usage: pilotctl [--json] [--home DIR] <command> [arguments]", "", "commands:"]
    lines += [f"  {command.usage[len('pilotctl '):]}" for command in COMMANDS]
    lines += ["", "help on one command: pilotctl <command> --help", "machine-readable catalogue: pilotctl context"]
    return "\n".join(lines)


def help_document(command):
    """One command's help as data: what ``--help`` prints, and its ``--json`` form."""
    return {
        "usage": command.usage, "description": command.description, "returns": command.returns,
        "flags": {spec: FLAGS[spec.split()[0][2:]] for spec in command.flag_specs}, "example": command.example,
    }


def help_text(command):
    document = help_document(command)
    flags = dict(document["flags"], **{"--json": "machine-readable output"})
    width = max(map(len, flags))
    lines = [f"usage: {command.usage}", "", command.description, "", "flags:"]
    lines += [f"  {flag.ljust(width)}  {meaning}" for flag, meaning in flags.items()]
    lines += ["", f"returns (--json): {command.returns}", "", "example:", f"  {command.example}"]
    return "\n".join(lines)


def context_document():
    return {
        "version": CATALOGUE_VERSION,
        "commands": {
            command.name: {"args": list(command.args), "description": command.description, "returns": command.returns}
            for command in COMMANDS
        },
        "error_codes": ERROR_CODES,
        "global_flags": GLOBAL_FLAGS,
        "environment": ENVIRONMENT,
        "config_file": "~/.pilot/config.json",
    }
