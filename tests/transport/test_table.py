from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.transport import ConnectionTable, State
from pilotnet.wire.packet import FLAG_ACK, FLAG_RST, FLAG_SYN

from .peer import LOCAL, LOCAL_PORT, QUIET, REMOTE, REMOTE_PORT, ack, dialer, from_peer


class ConnectionTableTests(SynchronousTestCase):
    def test_syn_to_listening_port_creates_an_acceptor(self):
        table = ConnectionTable(QUIET)
        table.listen(LOCAL_PORT)
        routed = table.route(from_peer(FLAG_SYN), 0.0)
        self.assertTrue(routed.accepted)
        self.assertIs(routed.connection.state, State.SYN_RECV)
        again = table.route(ack(1), 0.1)
        self.assertIs(again.connection, routed.connection)
        self.assertIs(again.connection.state, State.ESTABLISHED)

    def test_acceptors_take_the_configuration_chosen_for_their_peer(self):
        chosen = replace(QUIET, mss=4096)
        asked = []
        table = ConnectionTable(QUIET, config_for=lambda remote: asked.append(remote) or chosen)
        table.listen(LOCAL_PORT)
        routed = table.route(from_peer(FLAG_SYN), 0.0)
        self.assertIs(routed.connection.config, chosen)
        self.assertEqual(routed.connection.stats()["mss"], 4096)
        self.assertEqual(asked, [REMOTE])

    def test_syn_without_listener_is_reset_with_swapped_addresses(self):
        routed = ConnectionTable(QUIET).route(from_peer(FLAG_SYN), 0.0)
        self.assertIsNone(routed.connection)
        rst = routed.reply
        self.assertEqual((rst.flags, rst.src, rst.dst, rst.src_port, rst.dst_port, rst.seq, rst.ack),
                         (FLAG_RST, LOCAL, REMOTE, LOCAL_PORT, REMOTE_PORT, 0, 0))

    def test_unmatched_non_syn_is_dropped_silently(self):
        table = ConnectionTable(QUIET)
        self.assertEqual(table.route(ack(5), 0.0), (None, False, None))
        self.assertEqual(table.route(from_peer(FLAG_RST), 0.0), (None, False, None))
        self.assertEqual(table.unmatched, 2)

    def test_per_port_limit_resets(self):
        table = ConnectionTable(QUIET, max_per_port=1)
        table.listen(LOCAL_PORT)
        table.route(from_peer(FLAG_SYN), 0.0)
        other = from_peer(FLAG_SYN)
        other.src_port += 1
        self.assertEqual(table.route(other, 0.0).reply.flags, FLAG_RST)

    def test_dialed_connections_are_found_and_reaped(self):
        table = ConnectionTable(QUIET)
        conn = dialer()
        conn.open(0.0)
        table.add(conn)
        routed = table.route(from_peer(FLAG_SYN | FLAG_ACK, ack=1), 0.1)
        self.assertIs(routed.connection, conn)
        conn.abort(1.0)
        self.assertEqual(table.reap(), [conn])
        self.assertEqual(len(table), 0)
