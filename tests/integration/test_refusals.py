"""A command the remote node refuses exits non-zero with the remote's reason: real daemons, the real pilotctl.

(``task submit`` refused under the polo rule is in ``test_services``.)
"""

import os
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.integration.test_services import NetworkMixin


class RefusalTests(NetworkMixin, TestCase):
    async def test_the_data_exchange_refusing_a_message_or_a_file(self):
        alpha, beta = await self.start("alpha", "beta", options={
            "beta": ["--message-max-bytes", "1000", "--received-max-bytes", "100000"]})
        message = await self.on(alpha, "send-message", "beta", "--data", "x" * 1001, "--json")
        self.assertEqual(message.code, 1, message)
        error = message.error()
        self.assertEqual(error["code"], "refused")
        self.assertEqual(error["message"], f"{beta.address} refused the message: a TEXT message of 1001 bytes is "
                                           "larger than this node accepts (1000 bytes)")

        source = Path(self.mktemp())
        source.mkdir()
        (source / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
        # Refused at its header, while pilotctl is still writing the content: the reason is what it reports.
        big = await self.on(alpha, "send-file", "beta", str(source / "big.bin"))
        self.assertEqual(big.code, 1, big)
        self.assertEqual(big.stdout, "")
        self.assertIn(f"error: {beta.address} refused the file: received files are full:", big.stderr)
        self.assertIn("2097152 more bytes refused", big.stderr)
        self.assertIn("pilotctl received --clear", big.stderr)

        (source / "small.txt").write_text("fits")
        self.assertEqual((await self.ok(alpha, "send-file", "beta", str(source / "small.txt")))["ack"],
                         "ACK FILE 4 bytes")
        self.assertEqual((await self.ok(alpha, "send-message", "beta", "--data", "fits"))["ack"], "ACK TEXT 4 bytes")
        self.assertEqual(await self.ok(beta, "received", "--clear"), {"cleared": 1, "in_transfer": 0})
