"""What a running command can use: output streams, the home directory, the reactor, the daemon.

Commands never print JSON themselves and never check ``--json`` to decide
where a line goes: :meth:`Context.say` and :meth:`Context.note` print only
for people, and the runner prints the envelope.  The reactor and clock are
injected so tests can drive commands in-process.  Twisted and the SDK are
imported on first use, so commands that need neither start without them.
"""

from pilotnet.driver.targets import parse_target
from pilotnet.errors import (
    CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, NOT_TRUSTED, TIMEOUT, UNREACHABLE, PilotError,
)

#: Dial failures whose cause the daemon diagnosed (see pilotnet.daemon.reachability).
DIAGNOSED = (NOT_FOUND, UNREACHABLE, NOT_TRUSTED)


class Context:
    def __init__(self, json_mode, home, stdout, stderr, stdin=None, reactor=None, clock=None):
        self.json = json_mode
        self.home = home
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self._reactor = reactor
        self._clock = clock
        self._daemon = None

    @property
    def reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    @property
    def clock(self):
        """What pauses between probes and polls (the reactor unless a test injects a faster one).

        Timeouts and measured times always use the reactor.
        """
        return self._clock or self.reactor

    async def daemon(self):
        """The connection to the daemon, opened on first use (``not_running`` if there is none)."""
        if self._daemon is None:
            from pilotnet.driver import client

            self._daemon = await client.connect(self.reactor, self.home.socket_path())
        return self._daemon

    async def resolve(self, target):
        """The address of a target; tells people on stderr what a hostname resolved to."""
        address = parse_target(target)
        if address is None:
            address = await (await self.daemon()).resolve(target)
            self.note(f'resolved "{target}" → {address}')
        return address

    async def dial(self, address, port, timeout=None):
        """A stream to ``port`` on ``address``, or the reference's ``cannot connect`` error with the reason."""
        daemon = await self.daemon()
        try:
            return await daemon.dial(address, port, timeout)
        except PilotError as error:
            if error.code in (NOT_RUNNING, INVALID_ARGUMENT):
                raise
            if error.code in DIAGNOSED:  # the daemon found out why: keep its code and its next step
                raise PilotError(f"cannot connect to {address} port {port}: {error.message}", code=error.code,
                                 hint=error.hint) from None
            raise PilotError(
                f"cannot connect to {address} port {port}: {error.message}", code=CONNECTION_FAILED,
                hint=f"check that {address} is reachable: pilotctl ping {address}",
            ) from None

    async def within(self, deferred, seconds, message):
        """The result of ``deferred``, or a ``timeout`` error with ``message`` after ``seconds``."""
        if seconds is None:
            return await deferred
        from twisted.internet.defer import TimeoutError

        try:
            return await deferred.addTimeout(seconds, self.reactor)
        except TimeoutError:
            raise PilotError(message, code=TIMEOUT, hint="retry with a longer --timeout") from None

    def close(self):
        if self._daemon is not None:
            return self._daemon.close()
        return None

    def say(self, text, end="\n"):
        """A line for people on stdout (nothing in ``--json`` mode)."""
        if not self.json:
            self.stdout.write(text + end)
            self.stdout.flush()

    def note(self, text, end="\n"):
        """A line for people on stderr (nothing in ``--json`` mode)."""
        if not self.json:
            self.stderr.write(text + end)
            self.stderr.flush()

    def emit(self, text):
        """A line on stdout in every mode (NDJSON streams)."""
        self.stdout.write(text + "\n")
        self.stdout.flush()
