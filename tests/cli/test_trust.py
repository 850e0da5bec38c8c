"""The trust commands' human output (the reference's wording and columns)."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.cli.commands.trust import pending_text, trusted_text


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
                                           '<node_id|hostname> "reason"')
