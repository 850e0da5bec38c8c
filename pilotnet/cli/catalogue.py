"""Every ``pilotctl`` command: its arguments, what it does and returns, and where its code lives.

The one table serves dispatch, argument checking, the usage screen and the
machine-readable ``pilotctl context``.  Argument specs use the reference's
notation: ``<x>`` a required positional, ``[x]`` an optional one, ``[x...]``
any number more, ``--flag V`` / ``[--flag V]`` a flag (whose value the
command checks).  Handlers are named as ``module:function`` under
:mod:`pilotnet.cli.commands` and imported only when their command runs.
"""

import importlib
import re
from dataclasses import dataclass

from pilotnet.cli.args import invalid
from pilotnet.errors import (
    ALREADY_EXISTS, CONNECTION_FAILED, INTERNAL, INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, TIMEOUT,
)

CATALOGUE_VERSION = "1.2"

ERROR_CODES = {
    INVALID_ARGUMENT: "bad input; fix the command, do not retry",
    NOT_FOUND: "the target, hostname or resource does not exist or is not visible",
    ALREADY_EXISTS: "the thing being created is already there (daemon running, port bound)",
    NOT_RUNNING: "the daemon is not running; start it with: pilotctl daemon start",
    CONNECTION_FAILED: "the network operation failed; retry may succeed",
    TIMEOUT: "no answer in time; retry with a longer --timeout",
    INTERNAL: "an unexpected failure; see the daemon log",
}

ENVIRONMENT = {
    "PILOT_HOME": "the node's home directory (default ~/.pilot)",
    "PILOT_SOCKET": "the daemon's control socket (default <home>/pilot.sock)",
    "PILOT_REGISTRY": "the registry host:port (default 127.0.0.1:9000)",
}

GLOBAL_FLAGS = {
    "--json": "machine-readable output: {\"data\":…,\"status\":\"ok\"} on stdout, errors as JSON on stderr",
    "--home": "the node's home directory (overrides PILOT_HOME)",
}


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple
    description: str
    returns: str
    handler: str

    @property
    def usage(self):
        return " ".join(("pilotctl", self.name) + self.args)

    @property
    def flags(self):
        return {arg.strip("[]").split()[0][2:] for arg in self.args if arg.strip("[").startswith("--")}

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
        return getattr(importlib.import_module(f"pilotnet.cli.commands.{module}"), function)


_ARG = re.compile(r"\[[^\]]*\]|--\S+(?: [A-Z_=]+)?|\S+")


def _command(name, args, description, returns, handler):
    return Command(name, tuple(_ARG.findall(args)), description, returns, handler)


_TIMEOUT = "[--timeout D]"

COMMANDS = [
    # bootstrap
    _command("init", "[--registry ADDR] [--beacon ADDR] [--hostname NAME] [--socket PATH]",
             "write settings into config.json", "config_path, registry, beacon, socket, hostname",
             "bootstrap:init"),
    _command("config", "[--set KEY=VALUE]", "show config.json and the paths in use, or set one key",
             "the config plus config_path, pid_file, log_file; or key, value", "bootstrap:config"),
    _command("context", "", "this catalogue, machine-readable",
             "version, commands, error_codes, global_flags, environment, config_file", "bootstrap:context"),
    # daemon lifecycle
    _command("daemon start",
             "[--registry ADDR] [--beacon ADDR] [--listen ADDR] [--endpoint ADDR] [--socket PATH] "
             "[--identity PATH] [--hostname NAME] [--owner NAME] [--config PATH] [--log-format FMT] "
             "[--mss BYTES] [--local-mss BYTES] [--public] [--trust-auto-approve] [--no-encrypt] [--no-echo] [--foreground]",
             "start the daemon in the background and wait until it answers",
             "pid, node_id, address, hostname, socket, log_file", "lifecycle:start"),
    _command("daemon stop", "", "stop the daemon (SIGTERM, SIGKILL after 10s)", "pid [, forced]",
             "lifecycle:stop"),
    _command("daemon status", "[--check]", "is the daemon running and answering",
             "running, responsive, pid, pid_file, socket [, node_id, address, hostname, uptime_secs, "
             "peers, connections]", "lifecycle:status"),
    # the node
    _command("info", "", "the node's identity, counters, peers and connections", "the daemon's Info object",
             "node:info"),
    _command("peers", "[--search TEXT]", "peers with their path (direct or relay) and crypto state",
             "peers[{node_id, address, endpoint, path, encrypted, authenticated}], total", "node:peers"),
    _command("connections", "", "stream connections with the transport's counters",
             "connections[…], total", "node:connections"),
    _command("disconnect", "<conn_id>", "close one connection", "conn_id", "node:disconnect"),
    # registry and discovery
    _command("set-hostname", "<name>", "set this node's hostname", "hostname, node_id", "registry:set_hostname"),
    _command("clear-hostname", "", "remove this node's hostname", "hostname", "registry:clear_hostname"),
    _command("find", "<hostname>", "resolve a hostname to a node", "hostname, node_id, address, public",
             "registry:find"),
    _command("set-public", "", "make this node visible to everyone", "node_id, type, visibility",
             "registry:set_public"),
    _command("set-private", "", "hide this node from non-trusted nodes", "node_id, type, visibility",
             "registry:set_private"),
    _command("set-tags", "<tag> [tag...]", "set up to 3 tags on this node", "node_id, tags",
             "registry:set_tags"),
    _command("clear-tags", "", "remove this node's tags", "tags", "registry:clear_tags"),
    _command("enable-tasks", "", "accept task submissions", "node_id, task_exec, type", "registry:enable_tasks"),
    _command("disable-tasks", "", "refuse task submissions", "node_id, task_exec, type",
             "registry:disable_tasks"),
    _command("lookup", "<node_id>", "a node's registry record", "the registry's lookup reply", "registry:lookup"),
    _command("deregister", "", "remove this node from the registry", "type", "registry:deregister"),
    # trust
    _command("handshake", "<node_id|address|hostname> [justification...]",
             "ask a node for mutual trust (direct, or relayed by the registry)", "status, node_id",
             "trust:handshake"),
    _command("approve", "<node_id>", "approve a pending handshake request", "status, node_id", "trust:approve"),
    _command("reject", "<node_id> [reason...]", "reject a pending handshake request", "status, node_id",
             "trust:reject"),
    _command("pending", "", "handshake requests waiting for approval",
             "pending[{node_id, public_key, justification, received_at}]", "trust:pending"),
    _command("trust", "", "trusted peers", "trusted[{node_id, public_key, approved_at, mutual, network}]",
             "trust:trust"),
    _command("untrust", "<node_id>", "revoke trust in a node at once", "node_id", "trust:untrust"),
    # diagnostics
    _command("ping", f"<address|hostname> [--count N] {_TIMEOUT}",
             "round trips to the echo port, a fresh connection per probe",
             "target, results[{seq, rtt_ms, bytes} | {seq, error}], timeout", "diagnostics:ping"),
    _command("traceroute", f"<address> {_TIMEOUT}", "connection setup time and echo round trips",
             "target, setup_ms, rtt_samples[{rtt_ms, bytes}]", "diagnostics:traceroute"),
    _command("bench", f"<address|hostname> [size_mb] {_TIMEOUT}", "stream throughput through the echo port",
             "target, sent_bytes, recv_bytes, send_duration_ms, total_duration_ms, send_mbps, total_mbps",
             "diagnostics:bench"),
    # communication
    _command("connect", f"<address|hostname> [port] [--message TEXT] {_TIMEOUT}",
             "send a message (or stdin) on a stream and print the reply", "target, port, sent, response",
             "messaging:connect"),
    _command("send", f"<address|hostname> <port> --data TEXT {_TIMEOUT}",
             "send data on a stream and print the reply", "target, port, sent, response", "messaging:send"),
    _command("recv", f"<port> [--count N] {_TIMEOUT}", "accept streams on a port and print one message from each",
             "messages[{seq, port, data, bytes} | {seq, port, error}], timeout", "messaging:recv"),
    _command("listen", f"<port> [--count N] {_TIMEOUT}", "print the datagrams sent to a port",
             "messages[{src_addr, src_port, data, bytes}], timeout (NDJSON lines when --count is 0)",
             "messaging:listen"),
    _command("send-message", "<address|hostname> --data TEXT [--type KIND]",
             "send a text, json or binary message to a node's inbox (port 1001)", "target, type, bytes, ack",
             "mailbox:send_message"),
    _command("send-file", "<address|hostname> <path>", "send a file to a node (port 1001), with progress",
             "filename, bytes, destination, ack", "mailbox:send_file"),
    _command("received", "[--clear]", "files other nodes sent here",
             "files[{name, bytes, modified, path}], total, dir; or cleared", "mailbox:received"),
    _command("inbox", "[--clear]", "messages other nodes sent here",
             "messages[{type, from, data, bytes, received_at}], total, dir; or cleared", "mailbox:inbox"),
    # events
    _command("publish", "[address|hostname] <topic> --data TEXT",
             "publish an event (through the local daemon unless a node is named)", "target, topic, bytes",
             "events:publish"),
    _command("subscribe", f"[address|hostname] <topic> [--count N] {_TIMEOUT}",
             "print events matching a topic pattern (metrics.* matches metrics.cpu and metrics.cpu.load)",
             "events[{topic, data, bytes}], timeout (NDJSON lines when --count is 0)", "events:subscribe"),
    # tasks
    _command("task submit", '<address|hostname> --task TEXT', "ask a node to carry out a task",
             "target, task_id, task, status, message, accepted", "tasks:submit"),
    _command("task accept", "--id ID", "accept a task received within the last minute",
             "task_id, status, message", "tasks:accept"),
    _command("task decline", "--id ID --justification TEXT", "decline a received task",
             "task_id, status, justification, message", "tasks:decline"),
    _command("task execute", "", "start the first accepted task", "task_id, task_description, status, from",
             "tasks:execute"),
    _command("task send-results", "--id ID [--results TEXT] [--file PATH]",
             "send a task's results (text, or a document/data file) to its submitter",
             "task_id, status, sent_to, sent_type [, filename, file_size]", "tasks:send_results"),
    _command("task list", "[--type KIND]", "received and submitted tasks",
             "tasks[{task_id, description, status, from, to, created_at, category}]", "tasks:list_tasks"),
    _command("task queue", "", "received tasks waiting to be carried out",
             "queue[{task_id, description, from, created_at}], count", "tasks:queue"),
]

BY_NAME = {command.name: command for command in COMMANDS}
#: Commands with sub-commands (``daemon start``, ``task submit``).
GROUPS = ("daemon", "task")


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


def usage_screen():
    lines = ["usage: pilotctl [--json] [--home DIR] <command> [arguments]", "", "commands:"]
    lines += [f"  {command.usage[len('pilotctl '):]}" for command in COMMANDS]
    lines += ["", "machine-readable catalogue: pilotctl context"]
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
