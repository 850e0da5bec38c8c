"""Running pilotctl command lines in-process against the fake daemon, capturing what they print."""

import io
import json
import os
from inspect import iscoroutinefunction

from twisted.internet import reactor
from twisted.internet.threads import deferToThreadPool

from pilotnet.cli import catalogue
from pilotnet.cli.args import split_globals
from pilotnet.cli.runner import run, start
from tests.driver.support import FakeDaemonMixin, bounded


class ImmediateClock:
    """The reactor's time, but waits between probes and polls end at once (no real pauses in tests)."""

    def seconds(self):
        return reactor.seconds()

    def callLater(self, delay, function, *args, **kwargs):
        return reactor.callLater(0, function, *args, **kwargs)

    def sleep(self, seconds):
        """Blocking commands' pauses end at once too."""


class Result:
    def __init__(self, code, stdout, stderr):
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    @property
    def data(self):
        document = json.loads(self.stdout)
        assert document["status"] == "ok", document
        return document["data"]

    @property
    def error(self):
        return json.loads(self.stderr)

    def __repr__(self):
        return f"<exit {self.code} stdout={self.stdout!r} stderr={self.stderr!r}>"


class TTY(io.StringIO):
    def isatty(self):
        return True


def blocks(argv):
    """Whether the command of ``argv`` runs without the reactor (its handler is not a coroutine)."""
    command, _ = catalogue.find(split_globals(list(argv))[2])
    return command is not None and not iscoroutinefunction(command.load())


class PilotctlMixin(FakeDaemonMixin):
    """``self.pilotctl(*argv)`` runs a command line; ``self.home`` has the fake daemon's socket."""

    clock = None
    timeout = 30  # trial fails a test still running after this many seconds

    def environment(self):
        return {"PILOT_HOME": self.home}

    async def pilotctl(self, *argv, stdin=None, terminal=False):
        """Run a command line; one that blocks on the daemon runs in a thread, so the reactor serves the fake.

        ``terminal``: stderr is a terminal (progress bars show).
        """
        stdout, stderr = io.StringIO(), (TTY() if terminal else io.StringIO())
        arguments = dict(environ=self.environment(), stdout=stdout, stderr=stderr,
                         stdin=stdin if stdin is not None else TTY(), reactor=reactor, clock=self.clock)
        if blocks(argv):
            code = await bounded(deferToThreadPool(reactor, reactor.getThreadPool(), lambda: start(list(argv), **arguments)))
        else:
            code = await bounded(run(list(argv), **arguments))
        return Result(code, stdout.getvalue(), stderr.getvalue())

    def home_file(self, name):
        return os.path.join(self.home, name)
