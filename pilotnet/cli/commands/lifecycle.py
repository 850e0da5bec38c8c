"""``daemon start|stop|status``: run the node daemon in the background and keep track of it.

``start`` launches ``twistd -n pilot-daemon`` in a new session (so it
outlives the terminal and ``pilotctl`` itself), appends its output to
``<home>/pilot.log``, records its pid in ``<home>/pilot.pid`` and then polls
the control socket until ``Info`` answers.  ``--foreground`` replaces the
``pilotctl`` process with the daemon instead, keeping the same pid.
"""

import os
import signal
import sys
import time

from pilotnet.cli.home import DEFAULT_BEACON, DEFAULT_REGISTRY
from pilotnet.cli.output import Exit, Output, format_uptime
from pilotnet.control import schema
from pilotnet.control.client import ControlClient
from pilotnet.errors import ALREADY_EXISTS, NOT_RUNNING, TIMEOUT, PilotError

POLL_INTERVAL = 0.2
#: How often ``start`` probes for the daemon it launched: a daemon is ready in about a quarter of a
#: second, so polling every POLL_INTERVAL would add up to that much again.  A probe before the
#: socket exists fails at once (connect: no such file).
READY_POLL_INTERVAL = 0.02
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
PROBE_TIMEOUT = 3.0

# pilotctl flags handed to the daemon unchanged: value options, then switches.
PASSED_OPTIONS = ("listen", "endpoint", "identity", "owner", "config", "log-format", "mss",
                  "local-mss", "webhook", "networks")
PASSED_SWITCHES = ("public", "trust-auto-approve", "no-encrypt", "no-echo", "webhook-allow-private")


# ``python -m twisted.scripts.twistd`` does nothing (the module has no main
# guard); this runs twistd with the same interpreter and packages as pilotctl.
TWISTD = "from twisted.scripts.twistd import run; run()"


def daemon_command(options):
    """The command line that runs the daemon in the foreground, for ``options`` (flag name → value)."""
    command = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "pilot-daemon"]
    for name, value in options.items():
        command += [f"--{name}"] if value is True else [f"--{name}", value]
    return command


def _daemon_options(context, args):
    """The daemon's options: flags first, then (for registry and beacon) config before environment."""
    home = context.home
    config = home.load_config()
    options = {"home": str(home.path), "socket": args.text("socket") or home.socket_path()}
    for key, variable, default in (("registry", "PILOT_REGISTRY", DEFAULT_REGISTRY),
                                   ("beacon", "PILOT_BEACON", DEFAULT_BEACON)):
        options[key] = args.text(key) or config.get(key) or home.environ.get(variable) or default
    hostname = args.text("hostname") or config.get("hostname")
    if hostname:
        options["hostname"] = hostname
    for name in PASSED_OPTIONS:
        if args.has(name):
            options[name] = args.text(name)
    for name in PASSED_SWITCHES:
        if args.boolean(name):
            options[name] = True
    return options


def _read_pid(home):
    try:
        return int(home.pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid):
    """Whether ``pid`` runs; reaps it first if it is our own exited child (tests start daemons in-process)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path):
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _probe(socket_path):
    """The daemon's Info if it answers on ``socket_path`` within a few seconds, else ``None``.

    A local connect and one answer (the blocking client), so no ``daemon``
    command needs Twisted.
    """
    try:
        with ControlClient(socket_path, timeout=PROBE_TIMEOUT) as daemon:
            return daemon.call(schema.INFO)["info"]
    except PilotError:
        return None





def start(context, args):
    home = context.home
    home.ensure()
    options = _daemon_options(context, args)
    socket_path = options["socket"]
    pid = _read_pid(home)
    if pid is not None and _alive(pid):
        raise PilotError(f"daemon is already running (pid {pid})", code=ALREADY_EXISTS,
                         hint="stop it first with: pilotctl daemon stop")
    if _probe(socket_path) is not None:
        raise PilotError(f"a daemon is already answering on {socket_path}", code=ALREADY_EXISTS,
                         hint="stop it first with: pilotctl daemon stop")
    _remove(home.pid_path)
    command = daemon_command(options)
    if args.boolean("foreground"):
        home.pid_path.write_text(f"{os.getpid()}\n")
        os.execv(command[0], command)
    import subprocess

    log_path = home.log_path
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    finally:
        os.close(log)
    home.pid_path.write_text(f"{process.pid}\n")
    context.note(f"starting daemon (pid {process.pid})...", end="")
    info = _wait_ready(context, process, socket_path, log_path)
    context.note("")
    data = {
        "pid": process.pid, "node_id": info.get("node_id"), "address": info.get("address"),
        "hostname": info.get("hostname", ""), "socket": socket_path, "log_file": str(log_path),
    }
    lines = [f"Daemon running (pid {process.pid})", f"  Address:  {data['address']}"]
    if data["hostname"]:
        lines.append(f"  Hostname: {data['hostname']}")
    lines += [f"  Socket:   {socket_path}", f"  Logs:     {log_path}"]
    return Output(data, "\n".join(lines))


def _wait_ready(context, process, socket_path, log_path):
    now = time.monotonic
    started = now()
    polls = 0
    while now() - started < START_TIMEOUT:
        code = process.poll()
        if code is not None:
            _remove(context.home.pid_path)
            context.note("")
            raise PilotError(f"daemon exited with code {code} before it was ready", code=NOT_RUNNING,
                             hint=f"check logs: tail -n 50 {log_path}")
        info = _probe(socket_path)
        if info is not None:
            return info
        polls += 1
        if polls % round(1 / READY_POLL_INTERVAL) == 0:
            context.note(".", end="")
        context.sleep(READY_POLL_INTERVAL)
    context.note("")
    raise PilotError(
        f"daemon started (pid {process.pid}) but did not become ready within {START_TIMEOUT:g}s",
        code=TIMEOUT, hint=f"check logs: tail -f {log_path}",
    )


def stop(context, args):
    home = context.home
    pid = _read_pid(home)
    if pid is None or not _alive(pid):
        stale = pid is not None
        _remove(home.pid_path)
        socket_path = home.socket_path()
        if _probe(socket_path) is not None:
            raise PilotError(f"a daemon answers on {socket_path} but there is no pid file for it",
                             code=NOT_RUNNING, hint=f"find and kill the process manually: lsof -U | grep {socket_path}")
        raise PilotError("daemon is not running" + (" (cleaned up stale state)" if stale else ""), code=NOT_RUNNING)
    os.kill(pid, signal.SIGTERM)
    now = time.monotonic
    deadline = now() + STOP_TIMEOUT
    while _alive(pid) and now() < deadline:
        context.sleep(POLL_INTERVAL)
    forced = _alive(pid)
    if forced:
        os.kill(pid, signal.SIGKILL)
    _remove(home.pid_path)
    if forced:
        return Output({"pid": pid, "forced": True}, f"daemon force-stopped (pid {pid})")
    return Output({"pid": pid}, f"daemon stopped (pid {pid})")


def status(context, args):
    home = context.home
    socket_path = home.socket_path()
    pid = _read_pid(home)
    running = pid is not None and _alive(pid)
    info = _probe(socket_path)
    if args.boolean("check"):
        raise Exit(0 if info is not None else 1)
    data = {
        "running": running or info is not None, "responsive": info is not None,
        "pid": pid if running else 0, "pid_file": str(home.pid_path), "socket": socket_path,
    }
    if info is None:
        if running:
            text = f"Daemon: running (pid {pid}) but not answering on {socket_path}\n  check logs: tail -f {home.log_path}"
        else:
            text = "Daemon: stopped\n  start with: pilotctl daemon start"
        return Output(data, text)
    for key in ("node_id", "address", "hostname", "uptime_secs", "peers", "connections"):
        data[key] = info.get(key)
    lines = [f"Daemon: running (pid {data['pid'] or 'unknown'})",
             f"  Node ID:     {info.get('node_id')}", f"  Address:     {info.get('address')}"]
    if info.get("hostname"):
        lines.append(f"  Hostname:    {info['hostname']}")
    lines += [f"  Uptime:      {format_uptime(info.get('uptime_secs', 0))}",
              f"  Peers:       {info.get('peers', 0)}", f"  Connections: {info.get('connections', 0)}"]
    return Output(data, "\n".join(lines))
