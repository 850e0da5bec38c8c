"""Dead tunnels: the keepalive round drops peers silent for PEER_DEAD; ``peers`` says when each was heard."""

from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.facade import ControlFacade
from pilotnet.daemon.node import PEER_DEAD, PEER_KEEPALIVE, NodeService
from pilotnet.daemon.tunnel import Peer


class _Node(SimpleNamespace):
    """What ``_ping_peers`` and the facade's ``peer_list`` use of a :class:`NodeService`, recording."""

    _ping_peers = NodeService._ping_peers

    def peer_list(self):
        return ControlFacade(self).peer_list()

    def __init__(self, clock, peers):
        self._table = {peer.node: peer for peer in peers}
        self.pinged, self.dropped, self.aborted = [], [], []
        super().__init__(node_id=1, reactor=clock, config=SimpleNamespace(encrypt=True),
                         tunnel=SimpleNamespace(peers=lambda: list(self._table.values())),
                         streams=SimpleNamespace(abort_peer=self.aborted.append))

    def _send_ping(self, node):
        self.pinged.append(node)

    def _drop_tunnel(self, node):
        self.dropped.append(node)
        del self._table[node]


def _peer(node, *, heard=None, offered=None):
    peer = Peer(node, ("127.0.0.1", 4000 + node))
    peer.session = object()
    if heard is not None:
        peer.last_heard = heard
    if offered is not None:
        peer.offer_sent_at = offered
    return peer


class DeadPeerTests(SynchronousTestCase):
    def test_a_peer_silent_for_three_rounds_is_dropped_and_its_streams_reset(self):
        clock = Clock()
        clock.advance(1000)
        alive = _peer(2, heard=1000 - PEER_KEEPALIVE)
        dead = _peer(3, heard=1000 - PEER_DEAD - 1, offered=900)
        node = _Node(clock, [alive, dead])
        node._ping_peers()
        self.assertEqual((node.pinged, node.dropped, node.aborted), ([2], [3], [3]))
        self.assertEqual([row["node_id"] for row in node.peer_list()], [2])

    def test_a_peer_never_heard_but_still_being_tried_is_kept(self):
        clock = Clock()
        clock.advance(1000)
        trying = _peer(4, offered=1000 - 5)
        trying.session = None
        node = _Node(clock, [trying, _peer(5, offered=1000 - PEER_DEAD - 1)])
        node._ping_peers()
        self.assertEqual(node.dropped, [5])

    def test_peers_say_when_each_was_last_heard(self):
        clock = Clock()
        clock.advance(1000)
        node = _Node(clock, [_peer(2, heard=997.5), _peer(3, offered=999)])
        rows = {row["node_id"]: row["last_heard_secs"] for row in node.peer_list()}
        self.assertEqual(rows, {2: 2.5, 3: None})
