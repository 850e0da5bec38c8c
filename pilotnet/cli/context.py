"""What a running command can use: output streams, the home directory, the reactor, the daemon.

Commands never print JSON themselves and never check ``--json`` to decide
where a line goes: :meth:`Context.say` and :meth:`Context.note` print only
for people, and the runner prints the envelope.  The reactor and clock are
injected so tests can drive commands in-process.

Commands that ask the daemon one thing at a time use :meth:`Context.ask`,
the blocking client of :mod:`pilotnet.control.client`, and never import
Twisted; streaming commands use the Twisted SDK (:meth:`Context.daemon`),
imported on first use.
"""

import time

from pilotnet.control.schema import DIAL, RESOLVE_HOSTNAME, CommandSpec
from pilotnet.errors import (
    CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, NOT_TRUSTED, REFUSED, TIMEOUT, UNREACHABLE,
    PilotError,
)

#: Dial failures whose cause the daemon diagnosed (see pilotnet.daemon.reachability), or that a network's
#: policy refused (docs/networks.md).
DIAGNOSED = (NOT_FOUND, UNREACHABLE, NOT_TRUSTED, REFUSED)

#: Seconds the blocking client waits for a Dial's answer beyond the dial's own timeout.
DIAL_GRACE = 5.0


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
        self._control = None

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

    def sleep(self, seconds):
        """Pause a blocking command (between polls); a test's clock may make it return at once."""
        pause = getattr(self._clock, "sleep", None) or time.sleep
        pause(seconds)

    async def daemon(self):
        """The connection to the daemon, opened on first use (``not_running`` if there is none)."""
        if self._daemon is None:
            from pilotnet.driver import client

            self._daemon = await client.connect(self.reactor, self.home.socket_path())
        return self._daemon

    def control(self):
        """The blocking connection to the daemon (:mod:`pilotnet.control.client`), opened on first use."""
        if self._control is None:
            from pilotnet.control.client import ControlClient

            self._control = ControlClient(self.home.socket_path())
        return self._control

    def ask(self, spec: CommandSpec, **arguments):
        """The daemon's answer to one command, over the blocking client."""
        return self.control().call(spec, **arguments)

    def dial_now(self, address, port, timeout=None):
        """:meth:`dial` over the blocking client: the ``Dial`` answer (``conn_id``, ...)."""
        try:
            return self.control().call(DIAL, answer_within=None if timeout is None else timeout + DIAL_GRACE,
                                       address=str(address), port=port, timeout=timeout)
        except PilotError as error:
            raise _cannot_connect(address, port, error) from None

    def resolve_now(self, target):
        """:meth:`resolve` over the blocking client."""
        from pilotnet.driver.targets import parse_target, unresolvable
        from pilotnet.wire.address import Addr

        address = parse_target(target)
        if address is None:
            try:
                address = Addr.parse(self.ask(RESOLVE_HOSTNAME, hostname=target)["result"]["address"])
            except PilotError as error:
                if error.code == NOT_RUNNING:
                    raise
                raise unresolvable(target) from None
            except (KeyError, TypeError):
                raise unresolvable(target) from None
            self.note(f'resolved "{target}" → {address}')
        return address

    async def resolve(self, target):
        """The address of a target; tells people on stderr what a hostname resolved to."""
        from pilotnet.driver.targets import parse_target

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
            raise _cannot_connect(address, port, error) from None

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
        if self._control is not None:
            self._control.close()
            self._control = None
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


def _cannot_connect(address, port, error):
    """The reference's ``cannot connect`` error for a failed dial (errors of the daemon or the input pass as they are)."""
    if error.code in (NOT_RUNNING, INVALID_ARGUMENT):
        return error
    if error.code in DIAGNOSED:  # the daemon found out why: keep its code and its next step
        return PilotError(f"cannot connect to {address} port {port}: {error.message}", code=error.code,
                          hint=error.hint)
    return PilotError(
        f"cannot connect to {address} port {port}: {error.message}", code=CONNECTION_FAILED,
        hint=f"check that {address} is reachable: pilotctl ping {address}",
    )
