"""The lab's network: namespaces, a bridged "internet", NAT routers and hosts.

::

    pub (br0 198.51.100.10/24, rendezvous)
     |-- r1 wan 198.51.100.1 -- lan 10.200.1.1/24 -- h1 10.200.1.11, h2 10.200.1.12
     '-- r2 wan 198.51.100.2 -- lan 10.200.2.1/24 -- h3 10.200.2.11

Every namespace is named ``<prefix><pid>-<role>``: the pid keeps concurrent test
processes (``trial -j2``) apart, and lets a later run delete what a killed run
left behind (its pid is gone).  Veth pairs are created directly inside their
namespaces, so nothing but the namespaces themselves ever appears in the root
namespace.  Traffic only ever flows between these namespaces.
"""

import os
import shutil
import subprocess

PREFIX = "pnlab"
PUBLIC_NET = "198.51.100"
RENDEZVOUS_IP = f"{PUBLIC_NET}.10"
ROUTERS = {"r1": 1, "r2": 2}
HOSTS = {"h1": ("r1", 11), "h2": ("r1", 12), "h3": ("r2", 11)}
COMMAND_TIMEOUT = 20


class LabError(Exception):
    """A command that builds or configures the lab failed."""


def run(*command, check=True):
    result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def unavailable_reason():
    """Why namespaces cannot be created here, or None when they can (tried, not guessed)."""
    if os.geteuid() != 0:
        return "the network lab needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "the network lab needs the ip command (iproute2)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    created = run("ip", "netns", "add", probe, check=False)
    if created.returncode != 0:
        return f"network namespaces cannot be created here: {created.stderr.strip()}"
    run("ip", "netns", "delete", probe, check=False)
    return None


def _namespaces():
    listing = run("ip", "netns", "list").stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return True


def delete_stale():
    """Delete lab namespaces whose creating process is gone (an interrupted run)."""
    for name in _namespaces():
        owner = name[len(PREFIX):].split("-", 1)[0]
        if name.startswith(PREFIX) and owner.isdigit() and not _pid_alive(int(owner)):
            run("ip", "netns", "delete", name, check=False)


class Topology:
    """The namespaces above, built by :meth:`build` and removed by :meth:`destroy`."""

    def __init__(self):
        self.prefix = f"{PREFIX}{os.getpid()}-"
        self.created = []

    def ns(self, role):
        return self.prefix + role

    def exec(self, role, *command, check=True):
        """Run ``command`` inside the namespace of ``role``."""
        return run("ip", "netns", "exec", self.ns(role), *command, check=check)

    def host_ip(self, host):
        router, last = HOSTS[host]
        return f"10.200.{ROUTERS[router]}.{last}"

    def router_ip(self, router):
        return f"{PUBLIC_NET}.{ROUTERS[router]}"

    def build(self):
        delete_stale()
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_namespace(self, role):
        run("ip", "netns", "add", self.ns(role))
        self.created.append(self.ns(role))
        self.exec(role, "ip", "link", "set", "lo", "up")

    def _veth(self, role, name, peer_role, peer_name):
        run("ip", "link", "add", name, "netns", self.ns(role), "type", "veth",
            "peer", "name", peer_name, "netns", self.ns(peer_role))

    def _bridge(self, role, bridge, address):
        self.exec(role, "ip", "link", "add", bridge, "type", "bridge")
        self.exec(role, "ip", "addr", "add", address, "dev", bridge)
        self.exec(role, "ip", "link", "set", bridge, "up")

    def _up(self, role, interface, address=None, master=None):
        if address:
            self.exec(role, "ip", "addr", "add", address, "dev", interface)
        if master:
            self.exec(role, "ip", "link", "set", interface, "master", master)
        self.exec(role, "ip", "link", "set", interface, "up")

    def _build(self):
        self._add_namespace("pub")
        self._bridge("pub", "br0", f"{RENDEZVOUS_IP}/24")
        for router, number in ROUTERS.items():
            self._add_namespace(router)
            self._veth(router, "wan", "pub", f"to-{router}")
            self._up("pub", f"to-{router}", master="br0")
            self._up(router, "wan", f"{self.router_ip(router)}/24")
            self._bridge(router, "lan", f"10.200.{number}.1/24")
            self.exec(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for host, (router, _) in HOSTS.items():
            self._add_namespace(host)
            self._veth(host, "eth0", router, f"to-{host}")
            self._up(router, f"to-{host}", master="lan")
            self._up(host, "eth0", f"{self.host_ip(host)}/24")
            self.exec(host, "ip", "route", "add", "default", "via", f"10.200.{ROUTERS[router]}.1")

    def destroy(self):
        """Delete every namespace this topology created (processes must be gone first)."""
        while self.created:
            run("ip", "netns", "delete", self.created.pop(), check=False)
