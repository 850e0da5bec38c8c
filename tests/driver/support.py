"""Shared set-up: a fake daemon on a Unix socket in a short temporary directory.

Unix socket paths are limited to ~107 bytes, too short for trial's working
directory, hence ``tempfile.mkdtemp`` under the system temp dir.
"""

import os
import shutil
import tempfile

from twisted.internet import reactor

from tests.driver import fakedaemon

# Every wait in these tests is bounded by this (seconds); nothing sleeps.
WAIT = 10


def bounded(deferred, seconds=WAIT):
    """``deferred`` failing with TimeoutError instead of hanging the suite."""
    return deferred.addTimeout(seconds, reactor)


class FakeDaemonMixin:
    """Gives a test ``self.socket_path``, ``self.fake`` (factory) and a temp ``self.home``."""

    def start_fake_daemon(self):
        self.home = tempfile.mkdtemp(prefix="pilot-test-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.socket_path = os.path.join(self.home, "pilot.sock")
        self.listening, self.fake = fakedaemon.listen(reactor, self.socket_path)
        self.addCleanup(self.stop_fake_daemon)

    def stop_fake_daemon(self):
        self.fake.disconnect_everyone()
        return self.listening.stopListening()
