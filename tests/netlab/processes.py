"""The integration tests' rendezvous and daemon processes, started inside lab namespaces.

``ip netns exec`` replaces itself with the command, so the spawned process is
twistd itself and the integration helpers' kill-in-cleanup reaches it.  The
control socket is a path in the shared filesystem, so the test process drives
a daemon behind a NAT with the SDK and pilotctl as if it were local.
"""

import os
import shutil
import sys

from twisted.internet import reactor

from tests.integration.processes import _TWISTD, DaemonProcess, RendezvousProcess, ProcessOutput, pilotctl
from tests.netlab.topology import RENDEZVOUS_IP

REGISTRY_PORT = 9000
BEACON_PORT = 9001
# Fixed tunnel ports, so a full-cone router can map them statically.
TUNNEL_PORT_BASE = 47000
# Seconds between heartbeats, beacon refreshes and direct-path probes: short, so NAT
# changes show within a scenario.
LAB_KEEPALIVE = "2"


class _InNamespace:
    """Spawn the twistd process inside ``self.namespace``."""

    namespace = None

    def spawn(self, environment=None):
        os.makedirs(self.directory, exist_ok=True)
        self._output = ProcessOutput()
        args = [shutil.which("ip"), "netns", "exec", self.namespace, sys.executable, "-c", _TWISTD, "-n",
                "--pidfile=", self.plugin, *self.arguments(), *self.extra]
        env = dict(os.environ, **(environment or {}))
        self._process = reactor.spawnProcess(self._output, args[0], args, env=env, path=self.directory)
        self.test.addCleanup(self.kill)


class LabRendezvous(_InNamespace, RendezvousProcess):
    """Registry and beacon on the lab's "internet"."""

    def __init__(self, test, directory, namespace):
        super().__init__(test, directory)
        self.namespace = namespace
        self.registry_port = REGISTRY_PORT
        self.beacon_port = BEACON_PORT

    def arguments(self):
        return ["--registry", f"tcp:{self.registry_port}:interface={RENDEZVOUS_IP}",
                "--beacon", f"{RENDEZVOUS_IP}:{self.beacon_port}", "--ports-file", self.ports_file]

    @property
    def registry_address(self):
        return f"{RENDEZVOUS_IP}:{self.registry_port}"

    @property
    def beacon_address(self):
        return (RENDEZVOUS_IP, self.beacon_port)


class LabDaemon(_InNamespace, DaemonProcess):
    """A daemon on a lab host, its tunnel on a fixed port, keepalives every few seconds."""

    def __init__(self, test, directory, rendezvous, namespace, tunnel_port, hostname):
        super().__init__(test, directory, rendezvous, "--keepalive", LAB_KEEPALIVE, hostname=hostname)
        self.namespace = namespace
        self.tunnel_port = tunnel_port

    def arguments(self):
        args = super().arguments()
        args[args.index("--listen") + 1] = f"0.0.0.0:{self.tunnel_port}"
        return args

    async def peers(self):
        """``pilotctl peers --json``: what a user sees of this daemon's peers."""
        result = await pilotctl(self.test, self.home, "peers", "--json", socket_path=self.socket_path)
        self.test.assertEqual(result.code, 0, result)
        return {peer["node_id"]: peer for peer in result.json()["data"]["peers"]}
