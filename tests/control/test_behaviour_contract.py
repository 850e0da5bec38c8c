"""One contract, two daemons: the SDK and pilotctl tests' fake daemon behaves as the real control protocol does.

Most SDK and CLI tests talk to :mod:`tests.driver.fakedaemon`; what they prove
holds for the real daemon only where the fake answers as the daemon would.
:class:`ControlContract` says what a client can see (ports, streams, echo,
datagrams and their refusals) and runs twice, in memory (``twisted.test.iosim``)
and on a Clock:

* against the fake: two SDK clients of one fake daemon, the second standing
  for the peer's client (the fake's whole network is its own node);
* against the real :class:`~pilotnet.daemon.control.ControlProtocol`: one per
  node, for two :class:`MemoryNode` objects whose stream stacks (the daemon's
  own :class:`~pilotnet.daemon.streams.Streams`, echo on port 7) are joined by
  an instant, lossless wire.

A behaviour the contract states that one side lacks fails that side's run.
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pilotnet.daemon.control import ControlProtocol
from pilotnet.daemon.echo import EchoService
from pilotnet.daemon.facade import IControlledNode
from pilotnet.daemon.streams import Streams
from pilotnet.driver.client import Daemon, _ControlProtocol
from pilotnet.errors import ALREADY_EXISTS, CONNECTION_FAILED, INTERNAL, PilotError
from pilotnet.services.eventstream import EventBroker
from pilotnet.transport.config import StreamConfig
from pilotnet.wire.address import EPHEMERAL_PORT_MIN, PORT_ECHO, Addr
from pilotnet.wire.packet import PROTO_DATAGRAM, PROTO_STREAM, Packet
from tests.driver.fakedaemon import AGENT_B, FakeDaemonProtocol, FakeNode

LISTEN_PORT = 1000
UNBOUND_PORT = 1001


def _client_of(server_protocol, clock):
    """An SDK :class:`Daemon` connected to ``server_protocol`` in memory; the pump that carries their bytes."""
    client_protocol = _ControlProtocol()
    pump = iosim.connect(server_protocol, iosim.makeFakeServer(server_protocol),
                         client_protocol, iosim.makeFakeClient(client_protocol), greet=False)
    return Daemon(client_protocol, clock), pump


class ControlContract:
    """What a client sees of a daemon; a subclass builds the world (``make_world``)."""

    def setUp(self):
        self.clock = Clock()
        self.local, self.local_again, self.peer, self.peer_address, self._pumps = self.make_world()

    def settle(self):
        """Carry every byte and packet until nothing moves."""
        for _ in range(200):
            moved = sum(1 for pump in self._pumps if pump.pump())
            moved += self.move_packets()
            self.clock.advance(0)
            if not moved:
                return

    def move_packets(self):
        return 0

    def result(self, deferred):
        self.settle()
        return self.successResultOf(deferred)

    def refusal(self, deferred):
        """The error ``deferred`` fails with (caught before the answer comes: AMP logs and drops an error
        that reaches the end of a call's callbacks when it arrives)."""
        failures = []
        deferred.addErrback(failures.append)
        self.settle()
        [failure] = failures
        failure.trap(PilotError)
        return failure.value

    def test_info_names_the_node_by_its_address(self):
        info = self.result(self.local.info())
        self.assertEqual(info["address"], str(Addr(0, info["node_id"])))

    def test_a_port_is_bound_once(self):
        self.result(self.local.listen(LISTEN_PORT))
        self.assertEqual(self.refusal(self.local_again.listen(LISTEN_PORT)).code, ALREADY_EXISTS)
        # Its holder too: the SDK would hold two Listeners for one port, one never served.
        self.assertEqual(self.refusal(self.local.listen(LISTEN_PORT)).code, ALREADY_EXISTS)

    def test_a_port_is_free_again_once_its_client_is_gone(self):
        self.result(self.local.listen(LISTEN_PORT))
        self.result(self.local.close())
        self.result(self.local_again.listen(LISTEN_PORT))

    def test_port_seven_echoes(self):
        stream = self.result(self.local.dial(self.peer_address, PORT_ECHO))
        self.assertEqual((stream.remote_address, stream.remote_port), (self.peer_address, PORT_ECHO))
        self.result(stream.write(b"hello"))
        self.assertEqual(self.result(stream.read_exactly(5)), b"hello")

    def test_a_listener_accepts_and_both_sides_talk(self):
        listener = self.result(self.peer.listen(LISTEN_PORT))
        outgoing = self.result(self.local.dial(self.peer_address, LISTEN_PORT))
        incoming = self.result(listener.accept())
        local_address = Addr.parse(self.result(self.local.info())["address"])
        self.assertEqual((incoming.remote_address, incoming.remote_port), (local_address, outgoing.local_port))
        self.result(outgoing.write(b"ping"))
        self.assertEqual(self.result(incoming.read_exactly(4)), b"ping")
        self.result(incoming.write(b"pong"))
        self.assertEqual(self.result(outgoing.read_exactly(4)), b"pong")

    def test_closing_ends_the_other_sides_reads(self):
        listener = self.result(self.peer.listen(LISTEN_PORT))
        outgoing = self.result(self.local.dial(self.peer_address, LISTEN_PORT))
        incoming = self.result(listener.accept())
        self.result(outgoing.write(b"last words"))
        outgoing.close()
        self.assertEqual(self.result(incoming.read_exactly(10)), b"last words")
        self.assertEqual(self.result(incoming.read()), b"")

    def test_a_dial_to_an_unbound_port_is_refused(self):
        refusal = self.refusal(self.local.dial(self.peer_address, UNBOUND_PORT))
        self.assertEqual(refusal.code, CONNECTION_FAILED)

    def test_a_datagram_reaches_the_client_that_bound_its_port(self):
        listener = self.result(self.peer.listen(LISTEN_PORT))
        self.result(self.local.send_datagram(self.peer_address, LISTEN_PORT, b"one datagram"))
        datagram = self.result(listener.receive_datagram())
        local_address = Addr.parse(self.result(self.local.info())["address"])
        self.assertEqual((datagram.src_address, datagram.data), (local_address, b"one datagram"))


class FakeDaemonContractTests(ControlContract, SynchronousTestCase):
    def make_world(self):
        node = FakeNode()
        clients = [_client_of(FakeDaemonProtocol(node), self.clock) for _ in range(3)]
        (local, _), (local_again, _), (peer, _) = clients
        return local, local_again, peer, AGENT_B, [pump for _, pump in clients]


@implementer(IControlledNode)
class MemoryNode:
    """A node's stream stack on an in-memory wire, as the control protocol sees it.

    The registry's side of :class:`IControlledNode` is not modelled here (the
    contract covers ports, streams and datagrams): those methods fail with
    ``internal``, loudly, should a test reach them.
    """

    def __init__(self, node_id, clock, wire):
        self.node_id = node_id
        self._wire = wire
        self.streams = Streams(clock=clock, transmit=wire.append, config=StreamConfig(), max_per_port=8,
                               max_connections=32, syn_rate=100)
        self.events = EventBroker()
        self.trust = None
        self.networks = None
        self.managed = None
        EchoService(self.streams, PORT_ECHO, clock)

    def dial(self, remote, port, owner, timeout=None):
        return self.streams.dial(Addr(0, self.node_id), remote, port, owner)

    def send_datagram(self, remote, port, data, client=None):
        self._wire.append(Packet(PROTO_DATAGRAM, Addr(0, self.node_id), remote, EPHEMERAL_PORT_MIN, port,
                                 payload=data))
        return defer.succeed((1, 0))

    def info(self):
        return {"node_id": self.node_id, "address": str(Addr(0, self.node_id))}

    def peer_list(self):
        return []

    def _not_modelled(self, *args, **kwargs):
        return defer.fail(PilotError("not modelled by the in-memory node", code=INTERNAL))

    lookup = resolve_hostname = set_hostname = set_visibility = set_tags = _not_modelled
    set_task_exec = deregister = set_webhook = clear_webhook = _not_modelled


class RealControlContractTests(ControlContract, SynchronousTestCase):
    def make_world(self):
        self.wire = []
        self.nodes = {node_id: MemoryNode(node_id, self.clock, self.wire) for node_id in (5, 9)}
        clients = [_client_of(ControlProtocol(self.nodes[node_id], self.clock), self.clock) for node_id in (5, 5, 9)]
        (local, _), (local_again, _), (peer, _) = clients
        return local, local_again, peer, Addr(0, 9), [pump for _, pump in clients]

    def move_packets(self):
        packets, self.wire[:] = list(self.wire), []
        for packet in packets:
            streams = self.nodes[packet.dst.node].streams
            if packet.protocol == PROTO_STREAM:
                streams.stream_packet(packet)
            else:
                streams.datagram_packet(packet)
        return len(packets)

    def test_the_memory_node_is_a_controlled_node(self):
        verifyObject(IControlledNode, self.nodes[5])
