"""``pilotctl`` command latency: a whole command, process start to exit, against a running daemon.

    python -m benchmarks.cli_latency [--runs 20] [--json]

Agents call ``pilotctl`` once per action from a shell, so what they wait for
is a fresh process every time: interpreter start, imports, one request to the
daemon, exit.  Starts a rendezvous and two daemons (benchmarks.daemon_stream's
LocalNetwork), then times ``--runs`` runs of each, one after the other:

- ``python -c pass``: the bare interpreter start, the floor every Python
  command pays on this machine (``.pth`` files in site-packages included), and
  the baseline the commands are compared with;
- ``pilotctl info --json``: one request to the daemon;
- ``pilotctl context --json``: a command that needs no daemon;
- every command that asks the daemon one thing (:data:`DAEMON_COMMANDS`),
  ``send`` included (one exchange with the other local daemon's echo port);
  the slowest of their medians is reported as its own figure.

``pilotctl`` is the script installed next to this interpreter (what a
virtualenv puts on PATH; wrappers such as version-manager shims add their own
start-up time and are left out); ``python -m pilotnet.cli.main`` when there is
none, as in a checkout that was never installed.
"""

import argparse
import os
import subprocess
import sys
import sysconfig
import time

from twisted.internet import defer, task

from benchmarks import positive_int
from benchmarks.daemon_stream import LocalNetwork, median_and_p99, report


def pilotctl_command():
    """The script beside this interpreter, else the module run by this interpreter."""
    script = os.path.join(sysconfig.get_path("scripts"), "pilotctl")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "pilotnet.cli.main"]


def wall_times(commands, runs, env):
    """Milliseconds from spawn to exit of ``runs`` runs of each of ``commands`` (name -> argv; each must succeed).

    The commands take turns, one run of each per round, so a change in the
    machine's load during the measurement touches the baseline and the
    commands alike.  A first round goes untimed: it warms the page cache and
    the daemon's side (a first lookup, a first registry connection), so the
    figures are the steady state an agent calling ``pilotctl`` again and again sees.
    """
    samples = {name: [] for name in commands}
    for round_number in range(runs + 1):
        for name, command in commands.items():
            started = time.perf_counter()
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace')}")
            if round_number:
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def daemon_commands(beta_address):
    """The commands timed one by one: each asks the daemon one thing (``send``: one echo exchange)."""
    return [
        ["info"], ["health"], ["peers"], ["connections"], ["trust"], ["pending"], ["daemon", "status"],
        ["find", "beta"], ["set-tags", "bench"], ["clear-tags"], ["set-hostname", "alpha"], ["set-public"],
        ["enable-tasks"], ["send", beta_address, "7", "--data", "ping"],
    ]


async def run(reactor, runs, as_json):
    network = LocalNetwork(reactor)
    try:
        await network.start_rendezvous()
        daemon = await network.start_daemon("alpha")
        beta = await network.start_daemon("beta")
        env = dict(os.environ, PILOT_HOME=daemon["home"], PILOT_SOCKET=daemon["socket"])
        # As on a user's machine: the warm-up round writes bytecode that later runs load.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        pilotctl = pilotctl_command()
        commands = {"python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
                    "pilotctl context --json (no daemon)": pilotctl + ["context", "--json"]}
        for argv in daemon_commands(beta["info"]["address"]):
            name = " ".join(argv[:2] if argv[0] == "daemon" else argv[:1])
            commands[f"pilotctl {name} --json"] = pilotctl + argv + ["--json"]
        samples = wall_times(commands, runs, env)
    finally:
        network.stop()
    rows = []
    for name in list(commands)[:3]:  # the baseline, a command with no daemon, and info
        p50, p99 = median_and_p99(samples[name])
        rows.append((f"{name}, p50", p50, "ms", None))
        rows.append((f"{name}, p99", p99, "ms", None))
    medians = [(name, median_and_p99(samples[name])[0]) for name in list(commands)[2:]]
    rows += [(f"{name}, p50", p50, "ms", None) for name, p50 in medians[1:]]
    slowest, worst = max(medians, key=lambda item: item[1])
    rows.append((f"slowest daemon command, p50 ({slowest.split()[1]})", worst, "ms", None))
    rows.append(("slowest daemon command, p50", worst, "ms", None))
    report(rows, as_json)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=positive_int, default=20, help="runs of each command")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args.runs, args.json)))


if __name__ == "__main__":
    main()
