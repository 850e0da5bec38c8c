"""Loopback aliases for mapped IPs (Linux ``ip addr ... dev lo``), and those a killed gateway left.

Every alias the gateway adds carries the label :data:`LABEL`, so the next
start finds the ones a gateway that died without stopping left behind (inside
its subnet) and removes them, without a state file that a crash could leave
stale too.  Adding addresses to an interface needs root (CAP_NET_ADMIN):
:func:`require_root` says so before anything is tried.  A subnet inside
127.0.0.0/8 needs no aliases at all (:class:`NoAliases`).  Commands run off the
reactor thread would be overkill: each is a short ``ip`` call made only when
a mapping changes.
"""

import ipaddress
import os
import shutil
import subprocess
import sys
from typing import List, Sequence

from pilotnet.errors import INTERNAL, INVALID_ARGUMENT, PilotError

DEVICE = "lo"
#: The label marking our aliases (``lo:`` + at most 12 characters, the kernel's limit of 15).
LABEL = "lo:pilotgw"
COMMAND_TIMEOUT = 10


LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
PRIVILEGED_PORTS = 1024


def require_root(what: str, subnet: ipaddress.IPv4Network, ports: Sequence[int]) -> None:
    """``invalid_argument`` naming what needs root, unless this process has it or nothing needs it.

    A subnet inside 127.0.0.0/8 needs no aliases (Linux already routes all
    of it to ``lo``), so a gateway there with ports from 1024 up runs as
    any user.
    """
    needs = []
    if not subnet.subnet_of(LOOPBACK):
        needs.append("it adds an address per mapping to the loopback interface (ip addr add <ip>/32 dev lo)")
        if not sys.platform.startswith("linux"):
            raise PilotError(f"{what} adds loopback aliases with Linux's ip command; this is {sys.platform}",
                             code=INVALID_ARGUMENT, hint="use a subnet inside 127.0.0.0/8, which needs no aliases")
        if shutil.which("ip") is None:
            raise PilotError(f"{what} needs the ip command (iproute2)", code=INVALID_ARGUMENT, hint="install iproute2")
    if ports and min(ports) < PRIVILEGED_PORTS:
        needs.append(f"it listens on port {min(ports)}, below {PRIVILEGED_PORTS}")
    if needs and os.geteuid() != 0:
        raise PilotError(
            f"{what} needs root: " + "; ".join(needs), code=INVALID_ARGUMENT,
            hint="run it with sudo (e.g. sudo pilotctl gateway start ...), or use a subnet inside 127.0.0.0/8 "
                 "and ports from 1024 up")


def aliases_for(subnet: ipaddress.IPv4Network):
    """What adds the mapped IPs to ``lo``: nothing for a loopback subnet, else :class:`LoopbackAliases`."""
    return NoAliases() if subnet.subnet_of(LOOPBACK) else LoopbackAliases()


class NoAliases:
    """For a subnet inside 127.0.0.0/8: every address there is already local."""

    def add(self, ip: str) -> None:
        pass

    def remove(self, ip: str) -> None:
        pass

    def remove_stale(self, subnet) -> List[str]:
        return []


def _ip(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


class LoopbackAliases:
    """Adds and removes ``<ip>/32`` on ``lo`` with our label."""

    def add(self, ip: str) -> None:
        result = _ip("addr", "add", f"{ip}/32", "dev", DEVICE, "label", LABEL)
        if result.returncode != 0 and "File exists" not in result.stderr:
            raise PilotError(f"cannot add loopback alias {ip}: {result.stderr.strip()}", code=INTERNAL)

    def remove(self, ip: str) -> None:
        _ip("addr", "del", f"{ip}/32", "dev", DEVICE)

    def ours(self) -> List[str]:
        """The addresses on ``lo`` carrying our label."""
        result = _ip("-o", "-4", "addr", "show", "dev", DEVICE, "label", LABEL)
        found = []
        for line in result.stdout.splitlines():
            fields = line.split()
            if "inet" in fields:
                found.append(fields[fields.index("inet") + 1].split("/")[0])
        return found

    def remove_stale(self, subnet: ipaddress.IPv4Network) -> List[str]:
        """Remove our aliases inside ``subnet`` (left by a gateway that was killed); what was removed."""
        stale = [ip for ip in self.ours() if ipaddress.IPv4Address(ip) in subnet]
        for ip in stale:
            self.remove(ip)
        return stale
