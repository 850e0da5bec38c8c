"""The blocking SDK, driven from a worker thread while trial runs the reactor."""

import os

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from pilotnet.driver import blocking
from pilotnet.errors import INTERNAL, NOT_FOUND, NOT_RUNNING, TIMEOUT, PilotError
from tests.driver.fakedaemon import AGENT_B, NODE
from tests.driver.support import FakeDaemonMixin, bounded


class BlockingTests(FakeDaemonMixin, TestCase):
    def in_thread(self, function):
        self.start_fake_daemon()
        return bounded(deferToThread(function))

    def test_queries_and_echo(self):
        def script():
            with blocking.connect(self.socket_path) as daemon:
                self.assertEqual(daemon.info()["address"], str(NODE))
                self.assertEqual(daemon.resolve("agent-b"), AGENT_B)
                self.assertEqual(daemon.set_hostname("alpha")["hostname"], "alpha")
                with daemon.dial("agent-b", 7) as stream:
                    stream.write(b"x" * 200_000)
                    self.assertEqual(stream.read_exactly(200_000, timeout=5), b"x" * 200_000)
                self.assertIsNone(stream.wait_closed(timeout=5))
        return self.in_thread(script)

    def test_listener_and_datagrams(self):
        def script():
            with blocking.connect(self.socket_path) as daemon, daemon.listen(8000) as listener:
                with daemon.dial("self", 8000) as outgoing:
                    incoming = listener.accept(timeout=5)
                    outgoing.write(b"hi")
                    self.assertEqual(incoming.read(timeout=5), b"hi")
                self.assertEqual(list(incoming), [])
                daemon.send_datagram(str(NODE), 8000, b"dgram")
                self.assertEqual(listener.receive_datagram(timeout=5).data, b"dgram")
        return self.in_thread(script)

    def test_errors_are_pilot_errors(self):
        def script():
            with blocking.connect(self.socket_path) as daemon:
                with self.assertRaises(PilotError) as raised:
                    daemon.dial("ghost", 7)
                self.assertEqual(raised.exception.code, NOT_FOUND)
                stream = daemon.dial("agent-b", 7)
                with self.assertRaises(PilotError) as raised:
                    stream.read(timeout=0.05)
                self.assertEqual(raised.exception.code, TIMEOUT)
        return self.in_thread(script)

    def test_daemon_death_fails_blocked_calls(self):
        def script():
            daemon = blocking.connect(self.socket_path)
            stream = daemon.dial("agent-b", 7)
            reactor.callFromThread(self.fake.disconnect_everyone)
            with self.assertRaises(PilotError) as raised:
                stream.read(timeout=5)
            self.assertEqual(raised.exception.code, NOT_RUNNING)
            with self.assertRaises(PilotError) as raised:
                daemon.info()
            self.assertEqual(raised.exception.code, NOT_RUNNING)
            daemon.close()
        return self.in_thread(script)

    def test_missing_daemon(self):
        def script():
            with self.assertRaises(PilotError) as raised:
                blocking.connect(os.path.join(self.home, "absent.sock"))
            self.assertEqual(raised.exception.code, NOT_RUNNING)
            self.assertEqual(raised.exception.hint, "start the daemon with: pilotctl daemon start")
        return self.in_thread(script)

    def test_refuses_the_reactor_thread(self):
        self.patch(blocking, "isInIOThread", lambda: True)

        def script():
            with self.assertRaises(PilotError) as raised:
                blocking.connect(self.socket_path)
            self.assertEqual(raised.exception.code, INTERNAL)
        return self.in_thread(script)
