"""20 MB across a link that randomly drops datagrams (iptables ``statistic``), through real NATs.

The loss is on what arrives at h3 (the receiver), after the tunnel is up (so the test is
about the stream transport recovering data, not about punching through loss).
Throughput is printed, not asserted.
"""

import hashlib

from twisted.internet import reactor

from tests.netlab import nat
from tests.netlab.lab import LabTestCase
from tests.netlab.traffic import open_stream, pattern, report

SIZE = 20 * 1024 * 1024


async def read_all(stream, size):
    digest = hashlib.sha256()
    received = 0
    while received < size:
        chunk = await stream.read()
        if not chunk:
            raise AssertionError(f"stream ended after {received} of {size} bytes")
        digest.update(chunk)
        received += len(chunk)
    return digest.hexdigest()


class LossyLinkTests(LabTestCase):
    timeout = 300

    async def transfer(self, loss):
        a, b = await self.start({"r1": nat.CONE, "r2": nat.CONE}, ["h1", "h3"])
        outgoing, incoming, _ = await open_stream(self, a, b)
        nat.set_loss(self.topology, "h3", loss)
        payload = pattern(SIZE)
        started = reactor.seconds()
        writing = outgoing.write(payload)
        digest = await read_all(incoming, SIZE)
        await writing
        seconds = reactor.seconds() - started
        self.assertEqual(digest, hashlib.sha256(payload).hexdigest())
        [connection] = [c for c in await (await a.connect()).connections() if c["remote_port"] == 1000]
        report(self, f"{loss:.0%} loss:", f"20 MB intact in {seconds:.1f} s = {SIZE / seconds / 1e6:.2f} MB/s "
                                          f"({connection['retransmits']} retransmits)")
        self.assertGreater(connection["retransmits"], 0)

    async def test_twenty_megabytes_across_five_percent_loss(self):
        await self.transfer(0.05)

    async def test_twenty_megabytes_across_fifteen_percent_loss(self):
        await self.transfer(0.15)
