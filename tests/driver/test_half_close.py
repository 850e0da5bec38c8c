"""SDK streams: half-close (``shutdown_write``) and half-open streams that outlive the peer's end."""

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from pilotnet.driver import client
from pilotnet.errors import CONNECTION_FAILED, PilotError
from tests.driver.fakedaemon import NODE
from tests.driver.support import FakeDaemonMixin, bounded


class HalfCloseTests(FakeDaemonMixin, TestCase):
    async def pair(self):
        self.start_fake_daemon()
        daemon = await bounded(client.connect(reactor, socket_path=self.socket_path))
        self.addCleanup(daemon.close)
        listener = await daemon.listen(5100)
        dialled = await daemon.dial(str(NODE), 5100)
        accepted = await bounded(listener.accept())
        return dialled, accepted

    async def test_shutdown_write_sends_the_end_and_refuses_later_writes(self):
        dialled, accepted = await self.pair()
        await dialled.write(b"request")
        dialled.shutdown_write()
        self.assertEqual(await bounded(accepted.read_exactly(7)), b"request")
        self.assertEqual(await bounded(accepted.read()), b"")  # the end arrived
        with self.assertRaises(PilotError) as raised:
            await dialled.write(b"late")
        self.assertEqual(raised.exception.code, CONNECTION_FAILED)
        await bounded(dialled.close())
        self.assertIsNone(await bounded(dialled.closed))

    async def test_a_half_open_stream_reads_the_end_and_stays_open_for_writing(self):
        dialled, accepted = await self.pair()
        accepted.half_open = True
        await dialled.close()
        self.assertEqual(await bounded(accepted.read()), b"")
        self.assertFalse(accepted._ended)  # the peer's end is only the end of its data
        await bounded(accepted.write(b"still writable"))
        await bounded(accepted.close())
        self.assertIsNone(await bounded(accepted.closed))

    async def test_by_default_the_peers_end_closes_the_stream(self):
        dialled, accepted = await self.pair()
        await dialled.close()
        self.assertEqual(await bounded(accepted.read()), b"")
        self.assertIsNone(await bounded(accepted.closed))
