"""The Go project's demo, replayed: ``curl http://10.4.0.1/`` reaches a web site an agent serves.

Node B (h3) serves a directory with ``twistd web --listen pilot:80``; on node A
(h1, behind another NAT) ``pilotctl gateway start --ports 80,9000 <B>`` gives B
the local IP 10.4.0.1, and programs in A's namespace reach B with plain TCP.
Everything runs inside the lab's namespaces (the gateway's aliases are on the
loopback of h1's namespace, its DNS front on h1's 127.0.0.1:53, which h1's
resolv.conf names through ``/etc/netns/<namespace>/``); the test removes what it
adds to h1's loopback and that resolv.conf, also when it fails, and the lab
deletes the namespaces.
"""

import hashlib
import json
import os
import shutil
import signal
import sys

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from tests.integration.processes import TwistdProcess, _Collect, wait_until
from tests.netlab import nat
from tests.netlab.lab import LabTestCase
from tests.netlab.processes import _InNamespace
from tests.netlab.traffic import report

BULK_PORT = 9000
BULK_SIZE = 50 * 1024 * 1024
PAGE = b"<h1>served by an agent over Pilot</h1>\n"
ALIAS_LABEL = "lo:pilotgw"
NETNS_ETC = "/etc/netns"


def escaped(text):
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def remove_if_empty(directory):
    try:
        os.rmdir(directory)
    except OSError:
        pass  # something else put a file there since: leave it


def pattern(seed, size):
    block = hashlib.sha256(seed).digest() * 2048
    return (block * (size // len(block) + 1))[:size]


# Runs inside h1: sends BULK_SIZE bytes of one pattern, half-closes, reads to the end,
# prints what it received (sha256 and length) as JSON.
BULK_CLIENT = """
import hashlib, json, socket, sys, threading
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = hashlib.sha256(b"to-agent").digest() * 2048
payload = (block * (size // len(block) + 1))[:size]
sock = socket.create_connection((host, port), timeout=120)
def send():
    sock.sendall(payload)
    sock.shutdown(socket.SHUT_WR)
sender = threading.Thread(target=send)
sender.start()
digest, received = hashlib.sha256(), 0
while True:
    chunk = sock.recv(1 << 16)
    if not chunk:
        break
    digest.update(chunk)
    received += len(chunk)
sender.join()
print(json.dumps({"sha256": digest.hexdigest(), "bytes": received}))
"""


@implementer(IHalfCloseableProtocol)
class SinkThenSend(Protocol):
    """On B: takes everything until the client half-closes, then sends its own BULK_SIZE bytes back."""

    def __init__(self, results):
        self.results = results
        self.digest = hashlib.sha256()
        self.received = 0

    def dataReceived(self, data):
        self.digest.update(data)
        self.received += len(data)

    def readConnectionLost(self):
        self.results.append((self.digest.hexdigest(), self.received))
        reply = pattern(b"from-agent", BULK_SIZE)
        for offset in range(0, len(reply), 1 << 20):
            self.transport.write(reply[offset:offset + (1 << 20)])
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass


class WebServer(_InNamespace, TwistdProcess):
    """``twistd -n web --listen pilot:80 --path <dir>`` in B's namespace, through B's daemon."""

    plugin = "web"

    def __init__(self, test, directory, daemon):
        super().__init__(test, directory)
        self.namespace = daemon.namespace
        self.daemon = daemon

    def arguments(self):
        return ["--listen", f"pilot:80:socket={escaped(self.daemon.socket_path)}", "--path", self.directory]


class GatewayDemoTests(LabTestCase):
    timeout = 600

    async def run_in(self, host, *command, env=None, timeout=120.0):
        """Run ``command`` in ``host``'s namespace without blocking the reactor: (exit code, stdout, stderr)."""
        collect = _Collect()
        args = [shutil.which("ip"), "netns", "exec", self.topology.ns(host), *command]
        process = reactor.spawnProcess(collect, args[0], args, env=dict(os.environ, **(env or {})))
        killer = reactor.callLater(timeout, process.signalProcess, "KILL")
        code = await collect.ended
        if killer.active():
            killer.cancel()
        else:
            self.fail(f"{' '.join(command)} did not finish within {timeout:g}s")
        return code, collect.stdout.decode(), collect.stderr.decode()

    async def gateway(self, *args):
        """``pilotctl gateway ... --json`` on node A, in A's namespace: (exit code, envelope or error)."""
        code, out, err = await self.run_in(
            "h1", sys.executable, "-m", "pilotnet.cli.main", "gateway", *args, "--json",
            env={"PILOT_HOME": self.a.home, "PILOT_SOCKET": self.a.socket_path})
        if code == 0:
            return code, json.loads(out)["data"]
        return code, json.loads(err.strip().splitlines()[-1])

    async def ok(self, *args):
        code, data = await self.gateway(*args)
        self.assertEqual(code, 0, data)
        return data

    async def aliases(self):
        _, out, _ = await self.run_in("h1", "ip", "-o", "-4", "addr", "show", "dev", "lo")
        return sorted(line.split()[3].split("/")[0] for line in out.splitlines() if ALIAS_LABEL in line)

    def kill_gateway(self):
        """Cleanup: whatever happened, no gateway process and no alias survive this test."""
        try:
            pid = int(open(os.path.join(self.a.home, "gateway.pid")).read())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        self.topology.exec("h1", "ip", "addr", "flush", "dev", "lo", "label", ALIAS_LABEL, check=False)

    def use_dns_front(self, host):
        """``ip netns exec`` gives programs in ``host`` /etc/netns/<namespace>/resolv.conf as their resolv.conf."""
        if not os.path.isdir(NETNS_ETC):
            os.mkdir(NETNS_ETC)
            self.addCleanup(remove_if_empty, NETNS_ETC)  # after the namespace's own directory below
        directory = os.path.join(NETNS_ETC, self.topology.ns(host))
        os.mkdir(directory)
        self.addCleanup(shutil.rmtree, directory, True)
        with open(os.path.join(directory, "resolv.conf"), "w") as conf:
            conf.write("nameserver 127.0.0.1\n")

    async def curl(self, url):
        return await self.run_in("h1", "curl", "--silent", "--show-error", "--max-time", "30", url)

    async def test_the_demo_through_the_gateway(self):
        self.a, self.b = await self.start({"r1": nat.CONE, "r2": nat.CONE}, ["h1", "h3"])
        self.addCleanup(self.kill_gateway)
        site = os.path.abspath(self.mktemp())
        os.makedirs(site)
        with open(os.path.join(site, "index.html"), "wb") as page:
            page.write(PAGE)
        WebServer(self, site, self.b).spawn()
        bulk_results = []
        listening = await serverFromString(reactor, f"pilot:{BULK_PORT}:socket={escaped(self.b.socket_path)}") \
            .listen(Factory.forProtocol(lambda: SinkThenSend(bulk_results)))
        self.addCleanup(listening.stopListening)

        started = await self.ok("start", "--ports", f"80,{BULK_PORT}", "--dns-port", "53", self.b.address)
        self.assertEqual(started["subnet"], "10.4.0.0/16")
        self.assertEqual(started["dns"], {"host": "127.0.0.1", "port": 53})
        self.assertEqual([(m["local_ip"], m["pilot_addr"]) for m in started["mappings"]],
                         [("10.4.0.1", self.b.address)])
        self.assertEqual(await self.aliases(), ["10.4.0.1"])

        # curl http://10.4.0.1/ returns B's page (once twistd web has bound port 80 on B).
        async def page_served():
            code, out, _ = await self.curl("http://10.4.0.1/")
            return code == 0 and out.encode() == PAGE
        await wait_until(page_served, "curl http://10.4.0.1/ to return B's page", timeout=60, interval=1)

        # map / unmap / list on the running gateway.
        self.assertEqual((await self.ok("map", "h3"))["local_ip"], "10.4.0.1")  # already mapped: same IP
        mapped = await self.ok("map", self.a.address, "10.4.0.9")
        self.assertEqual((mapped["local_ip"], mapped["pilot_addr"]), ("10.4.0.9", self.a.address))
        listed = await self.ok("list")
        self.assertEqual((listed["total"], [m["local_ip"] for m in listed["mappings"]]), (2, ["10.4.0.1", "10.4.0.9"]))
        self.assertEqual(await self.aliases(), ["10.4.0.1", "10.4.0.9"])
        code, error = await self.gateway("map", "12345", "10.9.0.1")
        self.assertEqual((code, error["code"], error["message"]),
                         (1, "invalid_argument", "IP 10.9.0.1 not in subnet 10.4.0.0/16"))
        self.assertEqual(await self.ok("unmap", "10.4.0.9"), {"unmapped": "10.4.0.9", "pilot_addr": self.a.address})
        code, error = await self.gateway("unmap", "10.4.0.9")
        self.assertEqual((code, error["code"], error["message"]), (1, "not_found", "no mapping for 10.4.0.9"))
        self.assertEqual(await self.aliases(), ["10.4.0.1"])

        # With h1's resolver pointed at the DNS front, curl http://h3.pilot/ just works.
        self.use_dns_front("h1")
        code, out, err = await self.curl("http://h3.pilot/")
        self.assertEqual((code, out.encode()), (0, PAGE), err)

        # 50 MB each way through the gateway, byte-exact, with half-close carrying the end across.
        began = reactor.seconds()
        code, out, err = await self.run_in("h1", sys.executable, "-c", BULK_CLIENT, "10.4.0.1", str(BULK_PORT),
                                           str(BULK_SIZE), timeout=400)
        seconds = reactor.seconds() - began
        self.assertEqual(code, 0, err)
        self.assertEqual(bulk_results, [(hashlib.sha256(pattern(b"to-agent", BULK_SIZE)).hexdigest(), BULK_SIZE)])
        self.assertEqual(json.loads(out), {"sha256": hashlib.sha256(pattern(b"from-agent", BULK_SIZE)).hexdigest(),
                                           "bytes": BULK_SIZE})
        report(self, "gateway bulk:", f"2 x 50 MB intact in {seconds:.1f} s ({2 * BULK_SIZE / seconds / 1e6:.1f} MB/s)")

        # pilotctl info shows the mappings.
        _, out, _ = await self.run_in("h1", sys.executable, "-m", "pilotnet.cli.main", "info", "--json",
                                      env={"PILOT_HOME": self.a.home, "PILOT_SOCKET": self.a.socket_path})
        gateway = json.loads(out)["data"]["gateway"]
        self.assertEqual([m["local_ip"] for m in gateway["mappings"]], ["10.4.0.1"])

        # stop leaves no alias behind.
        stopped = await self.ok("stop")
        self.assertNotIn("forced", stopped)
        self.assertEqual(await self.aliases(), [])
        code, error = await self.gateway("list")
        self.assertEqual((code, error["code"]), (1, "not_running"))

        # A killed gateway's aliases are removed at the next start.
        await self.ok("start", "--ports", "80", self.b.address, self.a.address, "10.4.0.7")
        self.assertEqual(await self.aliases(), ["10.4.0.1", "10.4.0.7"])
        os.kill(int(open(os.path.join(self.a.home, "gateway.pid")).read()), signal.SIGKILL)
        await wait_until(lambda: self._dead(), "the killed gateway to be gone")
        self.assertEqual(await self.aliases(), ["10.4.0.1", "10.4.0.7"])  # left behind
        await self.ok("start", "--ports", "80", self.b.address)
        self.assertEqual(await self.aliases(), ["10.4.0.1"])
        await wait_until(page_served, "the page through the restarted gateway", timeout=30, interval=1)
        await self.ok("stop")
        self.assertEqual(await self.aliases(), [])

    def _dead(self):
        pid = int(open(os.path.join(self.a.home, "gateway.pid")).read())
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
