"""The trust commands' human output (the reference's wording and columns)."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.cli.commands.trust import handshake_text, pending_text, trusted_text


class TrustTextTests(SynchronousTestCase):
    def test_pending_table_and_empty_hint(self):
        text = pending_text([{"node_id": 7, "justification": "x" * 50, "received_at": 0}])
        header, row = text.splitlines()
        self.assertEqual(header, "NODE ID     JUSTIFICATION                             RECEIVED")
        self.assertTrue(row.startswith("7           " + "x" * 37 + "...  "))
        self.assertTrue(pending_text([]).startswith("no pending handshake requests\n"))

    def test_trust_table_and_empty_hint(self):
        text = trusted_text([{"node_id": 7, "mutual": True, "network": 0, "approved_at": 0},
                             {"node_id": 8, "mutual": False, "network": 3, "approved_at": 0}])
        lines = text.splitlines()
        self.assertEqual(lines[0].split(), ["NODE", "ID", "MUTUAL", "NETWORK", "APPROVED", "AT"])
        self.assertEqual(lines[1].split()[:3], ["7", "yes", "-"])
        self.assertEqual(lines[2].split()[:3], ["8", "no", "3"])
        self.assertEqual(trusted_text([]), 'no trusted peers\n  establish trust: pilotctl handshake '
                                           '<node_id> "reason"')

    def test_handshake_says_what_really_happened(self):
        """The text follows the daemon's status: only a request really sent waits for the peer."""
        sent = handshake_text({"status": "sent", "node_id": 7, "path": "relay"})
        self.assertEqual(sent.splitlines()[:2], ["handshake request sent to node 7 (relayed by the registry)",
                                                 "  next: node 7 must approve — or send a handshake back for "
                                                 "auto-approval"])
        self.assertIn("(delivered directly)", handshake_text({"status": "sent", "node_id": 7, "path": "direct"}))
        approved = handshake_text({"status": "approved", "node_id": 7, "mutual": True})
        self.assertEqual(approved, "node 7 had already asked: request approved, trust established\n"
                                   "  try: pilotctl ping 7")
        self.assertNotIn("must approve", approved)
        trusted = handshake_text({"status": "trusted", "node_id": 7, "mutual": True})
        self.assertEqual(trusted.splitlines()[0], "node 7 is already trusted")
        by_name = handshake_text({"status": "sent", "hostname": "gamma", "path": "relay"})
        self.assertEqual(by_name.splitlines()[0], 'handshake request for "gamma" relayed by the registry')
        self.assertIn("if a node holds that name it must approve", by_name)
