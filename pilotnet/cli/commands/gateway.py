"""``gateway start|stop|map|unmap|list``: local IPs for agents (see docs/gateway.md).

``start`` runs ``twistd -n pilot-gateway`` in the background (its own session,
output appended to ``<home>/gateway.log``, pid in ``<home>/gateway.pid``),
waits until its control socket answers, then maps the targets one by one so a
target that cannot be mapped is reported with its own error (and the gateway
is stopped again).  ``map``, ``unmap`` and ``list`` talk to the running
gateway over its control socket, so unlike the reference they change and show
the real mappings.  ``--foreground`` runs the gateway in place instead.
"""

import os
import signal
import subprocess
import sys

from pilotnet.cli.commands.lifecycle import POLL_INTERVAL, START_TIMEOUT, STOP_TIMEOUT, TWISTD, _alive, _remove
from pilotnet.cli.output import Output
from pilotnet.errors import ALREADY_EXISTS, INVALID_ARGUMENT, NOT_RUNNING, TIMEOUT, PilotError

PID_NAME = "gateway.pid"
LOG_NAME = "gateway.log"


def _paths(context):
    from pilotnet.gateway.paths import control_path

    home = context.home.path
    return home / PID_NAME, home / LOG_NAME, control_path(context.home.socket_path())


def _read_pid(path):
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


async def _call(context, command, **arguments):
    from pilotnet.gateway import control

    return await control.call(context.reactor, _paths(context)[2], getattr(control, command), **arguments)


async def status(context):
    """The running gateway's status (pid, subnet, ports, mappings [, dns]), or ``None``."""
    if not os.path.exists(_paths(context)[2]):
        return None
    try:
        return (await _call(context, "Status"))["status"]
    except PilotError:
        return None


def status_now(path):
    """:func:`status` over the blocking control client, for ``pilotctl info`` (no Twisted)."""
    from pilotnet.control import schema
    from pilotnet.control.client import ControlClient

    try:
        with ControlClient(path) as client:
            return client.call(schema.GATEWAY_STATUS)["status"]
    except PilotError:
        return None


def _mapping_line(mapping):
    name = f" ({mapping['hostname']})" if mapping.get("hostname") else ""
    return f"{mapping['local_ip']} → {mapping['pilot_addr']}{name}"


def gateway_text(status):
    """The gateway's lines in ``pilotctl info``."""
    lines = [f"Gateway:       pid {status['pid']}, subnet {status['subnet']}, {len(status['mappings'])} mappings"]
    lines += [f"  {_mapping_line(mapping)}" for mapping in status["mappings"]]
    return "\n".join(lines)


def _sleep(context, seconds):
    from twisted.internet.task import deferLater

    return deferLater(context.clock, seconds, lambda: None)


async def start(context, args):
    from pilotnet.gateway.aliases import require_root
    from pilotnet.gateway.mappings import DEFAULT_PORTS, parse_ports, parse_subnet
    from pilotnet.gateway.tap import pair_targets
    from twisted.python.usage import UsageError

    subnet = parse_subnet(args.text("subnet", "10.4.0.0/16"))
    ports = parse_ports(args.text("ports", ",".join(map(str, DEFAULT_PORTS))))
    try:
        targets = pair_targets(args.positional)
    except UsageError as error:
        raise PilotError(str(error), code="invalid_argument") from None
    require_root("pilotctl gateway start", subnet, ports)
    home = context.home
    home.ensure()
    pid_path, log_path, control = _paths(context)
    pid = _read_pid(pid_path)
    if pid is not None and _alive(pid):
        raise PilotError(f"gateway is already running (pid {pid})", code=ALREADY_EXISTS,
                         hint="stop it first with: pilotctl gateway stop")
    running = await status(context)
    if running is not None:
        raise PilotError(f"a gateway (pid {running['pid']}) already answers on {control}", code=ALREADY_EXISTS,
                         hint="stop it first with: pilotctl gateway stop")
    await context.daemon()  # not_running, with the usual hint, before anything starts
    command = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "pilot-gateway", "--home", str(home.path),
               "--socket", home.socket_path(), "--subnet", str(subnet), "--ports", ",".join(map(str, ports))]
    if args.has("dns-port"):
        command += ["--dns-port", args.text("dns-port")]
    if args.boolean("foreground"):
        pid_path.write_text(f"{os.getpid()}\n")
        os.execv(command[0], command + [part for pair in targets for part in pair if part])
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True)
    finally:
        os.close(log)
    pid_path.write_text(f"{process.pid}\n")
    context.note(f"starting gateway (pid {process.pid})...")
    await _wait_ready(context, process, log_path)
    try:
        for target, ip in targets:
            arguments = {"target": target} if ip is None else {"target": target, "ip": ip}
            mapping = (await _call(context, "Map", **arguments))["mapping"]
            context.note(f"mapped {_mapping_line(mapping)}")
    except PilotError:
        os.kill(process.pid, signal.SIGTERM)
        _remove(pid_path)
        raise
    data = await _call(context, "Status")
    data = data["status"]
    text = f"gateway running (pid {data['pid']}) on {data['subnet']}, ports {','.join(map(str, data['ports']))}"
    if "dns" in data:
        text += f"\n  DNS: {data['dns']['host']} port {data['dns']['port']} answers <agent>.pilot"
    return Output(data, text)


async def _wait_ready(context, process, log_path):
    now = context.reactor.seconds
    started = now()
    while now() - started < START_TIMEOUT:
        code = process.poll()
        if code is not None:
            _remove(_paths(context)[0])
            raise PilotError(f"gateway exited with code {code} before it was ready", code=NOT_RUNNING,
                             hint=f"check logs: tail -n 50 {log_path}")
        if await status(context) is not None:
            return
        await _sleep(context, POLL_INTERVAL)
    raise PilotError(f"gateway started (pid {process.pid}) but did not answer within {START_TIMEOUT:g}s",
                     code=TIMEOUT, hint=f"check logs: tail -f {log_path}")


async def stop(context, args):
    pid_path = _paths(context)[0]
    pid = _read_pid(pid_path)
    if pid is None or not _alive(pid):
        _remove(pid_path)
        raise PilotError("gateway is not running", code=NOT_RUNNING)
    try:
        os.kill(pid, signal.SIGTERM)
    except PermissionError:
        raise PilotError(f"the gateway (pid {pid}) runs as another user", code=INVALID_ARGUMENT,
                         hint="stop it as that user, e.g. sudo -E pilotctl gateway stop") from None
    now = context.reactor.seconds
    deadline = now() + STOP_TIMEOUT
    while _alive(pid) and now() < deadline:
        await _sleep(context, POLL_INTERVAL)
    forced = _alive(pid)
    if forced:
        os.kill(pid, signal.SIGKILL)
    _remove(pid_path)
    if forced:
        return Output({"pid": pid, "forced": True},
                      f"gateway force-stopped (pid {pid}); its aliases go at the next start")
    return Output({"pid": pid}, f"gateway stopped (pid {pid})")


async def map_target(context, args):
    arguments = {"target": args.positional[0]}
    if len(args.positional) > 1:
        arguments["ip"] = args.positional[1]
    mapping = (await _call(context, "Map", **arguments))["mapping"]
    return Output(mapping, _mapping_line(mapping))


async def unmap(context, args):
    mapping = (await _call(context, "Unmap", ip=args.positional[0]))["mapping"]
    return Output({"unmapped": mapping["local_ip"], "pilot_addr": mapping["pilot_addr"]},
                  f"unmapped {mapping['local_ip']}")


async def list_mappings(context, args):
    mappings = (await _call(context, "Status"))["status"]["mappings"]
    lines = [_mapping_line(mapping) for mapping in mappings]
    text = "\n".join(lines + [f"total: {len(mappings)}"]) if mappings else "no mappings"
    return Output({"mappings": mappings, "total": len(mappings)}, text)
