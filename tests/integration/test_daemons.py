"""Two real daemons and a rendezvous: encrypted streams, datagrams, restarts."""

import hashlib
import os

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from pilotnet.crypto.identity import Identity
from pilotnet.crypto.tunnel import TunnelKeyPair, build_auth_key_offer
from pilotnet.daemon.source_limits import PER_SOURCE_BURST, PER_SOURCE_RATE
from pilotnet.driver.secure import secure_client, secure_server
from pilotnet.wire.tunnel import MAGIC_SEALED
from tests.integration.lossy_relay import LossyRelay, listen_relay
from tests.integration.processes import DaemonProcess, RendezvousProcess, pause, wait_until


def pattern(size):
    block = hashlib.sha256(b"pilotnet").digest() * 32
    return (block * (size // len(block) + 1))[:size]


async def read_all(stream, size):
    """Read ``size`` bytes as they come (consuming them, so flow control keeps moving)."""
    chunks = []
    received = 0
    while received < size:
        chunk = await stream.read()
        if not chunk:
            raise AssertionError(f"stream ended after {received} of {size} bytes")
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


class TwoDaemonsTests(TestCase):
    timeout = 120

    async def network(self, extra=()):
        base = self.mktemp()
        store = os.path.abspath(os.path.join(base, "registry.db"))
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous"), "--store", store).start()
        self.alpha = await DaemonProcess(self, os.path.join(base, "alpha"), self.rendezvous, *extra,
                                         hostname="alpha").start()
        self.beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous, *extra,
                                        hostname="beta").start()

    async def test_echo_through_an_encrypted_tunnel(self):
        await self.network()
        daemon = await self.alpha.connect()
        stream = await daemon.dial(self.beta.address, 7)
        payload = pattern(3_000_000)
        writing = stream.write(payload)  # read while writing: the echo must drain
        echoed = await read_all(stream, len(payload))
        await writing
        self.assertEqual(hashlib.sha256(echoed).hexdigest(), hashlib.sha256(payload).hexdigest())
        # Both daemons are on this host: segments of 32 KiB, one datagram each (Twisted
        # would cut any datagram beyond 8 KiB unless the tunnel reads the UDP maximum).
        [connection] = [c for c in await daemon.connections() if c["remote_port"] == 7]
        self.assertEqual(connection["mss"], 32768)
        self.assertLess(connection["segs_sent"], len(payload) // 16384)
        await stream.close()
        peers = await daemon.peers()
        [peer] = peers
        self.assertEqual(peer["node_id"], self.beta.node_id)
        self.assertEqual(peer["path"], "direct")
        self.assertTrue(peer["encrypted"])
        self.assertTrue(peer["authenticated"])

    async def test_stream_between_two_clients_both_ways(self):
        await self.network()
        server = await self.beta.connect()
        listener = await server.listen(1000)
        client = await self.alpha.connect()
        outgoing = await client.dial("beta", 1000)
        incoming = await listener.accept()
        self.assertEqual(str(incoming.remote_address), self.alpha.address)
        await outgoing.write(b"ping from alpha")
        self.assertEqual(await incoming.read_exactly(15), b"ping from alpha")
        await incoming.write(b"pong from beta")
        self.assertEqual(await outgoing.read_exactly(14), b"pong from beta")
        await outgoing.close()
        self.assertEqual(await incoming.read(), b"")

    async def test_datagrams_reach_only_the_bound_port(self):
        await self.network()
        receiver = await self.beta.connect()
        listener = await receiver.listen(4000)
        other = await receiver.listen(4001)
        sender = await self.alpha.connect()
        for index in range(3):
            await sender.send_datagram(self.beta.address, 4000, b"datagram %d" % index)
        elsewhere = other.receive_datagram()
        received = sorted([(await listener.receive_datagram()) for _ in range(3)])
        self.assertEqual([d.data for d in received], [b"datagram %d" % i for i in range(3)])
        self.assertEqual({str(d.src_address) for d in received}, {self.alpha.address})
        self.assertFalse(elsewhere.called)
        elsewhere.addErrback(lambda failure: None)  # fails when the client disconnects

    async def test_a_restarted_daemon_keeps_its_address_and_peers_reconnect(self):
        await self.network()
        client = await self.alpha.connect()
        stream = await client.dial(self.beta.address, 7)
        await stream.write(b"before")
        self.assertEqual(await stream.read_exactly(6), b"before")
        address = self.beta.address
        await self.beta.stop()
        self.beta = await DaemonProcess(self, self.beta.directory, self.rendezvous, hostname="beta").start()
        self.assertEqual(self.beta.address, address)
        stream = await client.dial(address, 7, timeout=30)
        await stream.write(b"after")
        self.assertEqual(await stream.read_exactly(5), b"after")

    async def test_daemons_survive_a_registry_restart(self):
        """The registry restarts from its store; the daemons reconnect and carry on."""
        await self.network(extra=("--keepalive", "1"))
        await self.rendezvous.stop()
        await self.rendezvous.start()
        client = await self.alpha.connect()

        async def resolvable():
            try:
                answer = await client.resolve_hostname("beta")
            except Exception:
                return False
            return answer

        await wait_until(resolvable, "the registry to answer again", timeout=60, interval=0.5)
        stream = await client.dial("beta", 7, timeout=30)
        await stream.write(b"still here")
        self.assertEqual(await stream.read_exactly(10), b"still here")


class Flooder(DatagramProtocol):
    """An attacker's UDP socket: counts what the daemon sends back."""

    def __init__(self):
        self.replies = 0
        self.reply_bytes = 0

    def datagramReceived(self, data, address):
        self.replies += 1
        self.reply_bytes += len(data)


class FloodTests(TestCase):
    """One source floods a daemon's tunnel socket with frames it cannot authenticate."""

    timeout = 120

    async def test_a_flood_buys_bounded_replies_and_the_daemon_keeps_working(self):
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), self.rendezvous, hostname="alpha").start()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous, hostname="beta").start()
        client = await alpha.connect()
        stream = await client.dial(beta.address, 7)  # keyed before the flood
        await stream.write(b"before")
        self.assertEqual(await stream.read_exactly(6), b"before")

        flooder = Flooder()
        port = reactor.listenUDP(0, flooder, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        target = ("127.0.0.1", beta.info["tunnel_port"])
        intruder = Identity.generate()
        offer_key = TunnelKeyPair.generate()
        started = reactor.seconds()
        flood_bytes = 0
        for index in range(3000):
            # A sealed frame from a node beta has no session with, then a PILA signed by the
            # wrong key: for a real node (a signature check) or an unknown one (a lookup).
            sealed = MAGIC_SEALED + (100_000 + index).to_bytes(4, "big") + os.urandom(192)
            claimed = alpha.node_id if index % 2 else 200_000 + index
            forged = build_auth_key_offer(intruder, claimed, offer_key).encode()
            for frame in (sealed, forged):
                port.write(frame, target)
                flood_bytes += len(frame)
            if index % 100 == 99:
                await pause(0)  # let the reactor breathe (and the replies in)
        await pause(1.0)
        elapsed = reactor.seconds() - started

        # At most the source's burst plus its rate over the time the flood lasted (both kinds together).
        self.assertLessEqual(flooder.replies, PER_SOURCE_BURST + PER_SOURCE_RATE * elapsed)
        self.assertLess(flooder.reply_bytes, flood_bytes)
        info = await (await beta.connect()).info()
        self.assertGreater(info["tunnel"]["rate_limited"], 5000)
        # The daemon still answers on the established stream, and its registry link is up.
        await stream.write(b"after")
        self.assertEqual(await stream.read_exactly(5), b"after")
        self.assertEqual((await (await beta.connect()).resolve_hostname("alpha"))["node_id"], alpha.node_id)
        self.assertNotIn("requests/s", self.rendezvous.output)


class LossyPathTests(TestCase):
    """Streams across a lossy path to beta, which no beacon knows: the beacon's relay is a dead end.

    beta registers a lossy relay's address as its endpoint and has no beacon, so every
    datagram to it crosses the relay; alpha has the rendezvous' beacon, whose relay
    cannot reach beta.  A daemon that gave up on the direct path for that relay would
    strand the stream (the relay answers no probe, so it must not).
    """

    timeout = 120

    async def _start(self, loss):
        base = self.mktemp()
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        # beta's tunnel port is only known once it runs, so the relay is pointed at it afterwards.
        self.relay = LossyRelay(None, loss=loss, seed=7)
        port = listen_relay(reactor, self.relay)
        self.addCleanup(port.stopListening)
        # The relay stands for a network: network-sized segments, as between two machines.
        network = ("--local-mss", "0")
        self.beta = await DaemonProcess(self, os.path.join(base, "beta"), rendezvous, *network,
                                        "--endpoint", f"127.0.0.1:{port.getHost().port}", "--beacon", "").start()
        self.relay.target = ("127.0.0.1", self.beta.info["tunnel_port"])
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), rendezvous, *network).start()
        return await alpha.connect()

    async def test_data_arrives_intact_across_ten_percent_loss(self):
        client = await self._start(loss=0.10)
        stream = await client.dial(self.beta.address, 7, timeout=60)
        payload = pattern(3_000_000)
        writing = stream.write(payload)  # read while writing: the echo must drain
        echoed = await read_all(stream, len(payload))
        await writing
        self.assertEqual(hashlib.sha256(echoed).digest(), hashlib.sha256(payload).digest())
        self.assertGreater(self.relay.dropped, 50)
        [connection] = [c for c in await client.connections() if c["remote_port"] == 7]
        self.assertGreater(connection["retransmits"], 0)

    async def test_a_dial_through_a_burst_of_loss_keeps_to_the_direct_path(self):
        """Everything is lost for the dial's first seconds: its relay probe finds the relay dead,
        so the key offer and the SYN go direct again and are answered once the burst ends."""
        client = await self._start(loss=1.0)
        reactor.callLater(2.5, setattr, self.relay, "loss", 0.0)
        stream = await client.dial(self.beta.address, 7, timeout=30)
        await stream.write(b"after the burst")
        self.assertEqual(await read_all(stream, 15), b"after the burst")
        [peer] = [p for p in await client.peers() if p["node_id"] == self.beta.node_id]
        self.assertEqual(peer["path"], "direct")


class SecureChannelTests(TestCase):
    timeout = 60

    async def test_secure_channel_round_trip_between_two_programs(self):
        base = self.mktemp()
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), rendezvous).start()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), rendezvous).start()
        server_daemon = await beta.connect()
        listener = await server_daemon.listen(443)
        client_daemon = await alpha.connect()
        stream = await client_daemon.dial(beta.address, 443)

        async def serve():
            channel = await secure_server(await listener.accept())
            request = await channel.read()
            await channel.write(b"sealed reply to " + request)

        serving = ensureDeferred(serve())
        channel = await secure_client(stream)
        await channel.write(b"a secret")
        self.assertEqual(await channel.read(), b"sealed reply to a secret")
        await serving
