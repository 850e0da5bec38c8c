"""``twistd -n pilot-rendezvous`` as a real process: TCP registry, UDP beacon, durability."""

import os
import signal
import time

from twisted.internet import reactor
from twisted.internet.defer import DeferredQueue
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import sign_fresh_request, sign_request
from pilotnet.registry.client import RegistryError, connect_registry
from pilotnet.wire import beacon as wire
from tests.integration.processes import RendezvousProcess, wait_until


class _Node(DatagramProtocol):
    def __init__(self):
        self.inbox = DeferredQueue()

    def datagramReceived(self, data, addr):
        self.inbox.put(wire.decode(data))


def _identity(number):
    return Identity.from_seed(number.to_bytes(4, "big") * 8)


class RendezvousProcessTests(TestCase):
    timeout = 60

    async def connect(self, server):
        client = await connect_registry(reactor, server.registry_endpoint)
        self.addCleanup(client.transport.abortConnection)
        return client

    async def test_register_over_tcp_discover_over_udp_then_stop(self):
        server = await RendezvousProcess(self, self.mktemp(), "--log-format", "json").start()
        client = await self.connect(server)
        alice = _identity(1)
        registered = await client.request({"type": "register", "public_key": alice.public_key_b64,
                                           "listen_addr": "127.0.0.1:4000"})
        self.assertEqual(registered["address"], "0:0000.0000.0001")
        beat = await client.request(sign_request(alice, {"type": "heartbeat",
                                                         "node_id": registered["node_id"]}))
        self.assertEqual(beat["type"], "heartbeat_ok")

        node = _Node()
        port = reactor.listenUDP(0, node, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        node.transport.write(wire.padded_discover(registered["node_id"]),
                             server.beacon_address)
        reply = await node.inbox.get()
        self.assertEqual(reply, wire.DiscoverReply(wire.Endpoint("127.0.0.1",
                                                                 port.getHost().port)))
        # The beacon announced itself to the registry beside it.
        beacons = await client.request({"type": "beacon_list"})
        self.assertEqual(beacons["beacons"][0]["addr"], "127.0.0.1:%d" % server.beacon_address[1])

        reason = await server.stop()
        # twistd shuts down cleanly, then reports the signal it was stopped by.
        self.assertIsInstance(reason, (ProcessDone, ProcessTerminated))
        self.assertIn("Main loop terminated.", server.output)
        self.assertIn('"log_namespace": "pilotnet.registry.tap"', server.output)

    async def test_acknowledged_state_survives_kill_9(self):
        directory = self.mktemp()
        store = ["--store", "registry.db", "--registrations-per-minute", "100000"]
        server = await RendezvousProcess(self, directory, *store).start()
        client = await self.connect(server)
        acknowledged = {}
        pairs = []
        stream = []
        for number in range(1, 400):
            identity = _identity(number)
            stream.append(client.request({"type": "register",
                                          "public_key": identity.public_key_b64}))
            stream[-1].addCallback(lambda reply, i=identity: acknowledged.__setitem__(
                i.public_key_b64, reply["node_id"]))
            stream[-1].addErrback(lambda failure: failure.trap(RegistryError))
            if number == 150:
                await stream[0]
                # Mutual trust between the first two nodes, then kill mid-stream.
                a, b = _identity(1), _identity(2)
                await stream[1]
                ids = acknowledged[a.public_key_b64], acknowledged[b.public_key_b64]
                await client.request(sign_fresh_request(
                    a, {"type": "report_trust", "node_id": ids[0], "peer_id": ids[1]}, time.time()))
                await client.request(sign_fresh_request(
                    b, {"type": "report_trust", "node_id": ids[1], "peer_id": ids[0]}, time.time()))
                pairs.append(ids)
                server.kill()
        await server._output.ended.addErrback(lambda failure: None)
        self.assertGreaterEqual(len(acknowledged), 150)

        restarted = await RendezvousProcess(self, directory, *store).start()
        client = await self.connect(restarted)
        for public_key, node_id in acknowledged.items():
            again = await client.request({"type": "register", "public_key": public_key})
            self.assertEqual(again["node_id"], node_id)
        (a_id, b_id), = pairs
        trusted = await client.request({"type": "check_trust", "node_id": a_id, "peer_id": b_id})
        self.assertIs(trusted["trusted"], True)
        await restarted.stop()


class DaemonizedRendezvous(RendezvousProcess):
    """``twistd pilot-rendezvous`` as an operator starts it: forked into the background.

    twistd builds the services, then forks; anything started before the fork
    (a thread, say) is gone in the daemon, which ``twistd -n`` never shows.
    """

    def twistd_options(self):
        self.pidfile = os.path.join(self.directory, "twistd.pid")
        return [f"--pidfile={self.pidfile}", "--logfile=twistd.log"]

    def check_alive(self):
        pass  # the process we spawned exits once it has forked; the ports file tells

    def daemon_pid(self):
        with open(self.pidfile) as handle:
            return int(handle.read())

    def kill(self):
        try:
            os.kill(self.daemon_pid(), signal.SIGKILL)
        except (OSError, ValueError):
            pass

    async def stop(self):
        os.kill(self.daemon_pid(), signal.SIGTERM)
        await wait_until(lambda: not os.path.exists(self.pidfile), "the daemonized rendezvous to exit")


class DaemonizedRendezvousTests(TestCase):
    timeout = 60

    async def test_a_forked_rendezvous_stores_and_answers(self):
        server = await DaemonizedRendezvous(self, self.mktemp(), "--store", "registry.db").start()
        client = await connect_registry(reactor, server.registry_endpoint)
        self.addCleanup(client.transport.abortConnection)
        alice = _identity(1)
        # A registration is answered only once the store's writer thread has committed it.
        registered = await client.request({"type": "register", "public_key": alice.public_key_b64})
        self.assertEqual(registered["address"], "0:0000.0000.0001")
        found = await client.request({"type": "lookup", "node_id": registered["node_id"]})
        self.assertEqual(found["node_id"], registered["node_id"])
        await server.stop()
        with open(os.path.join(server.directory, "twistd.log")) as log:
            self.assertIn("Main loop terminated.", log.read())
