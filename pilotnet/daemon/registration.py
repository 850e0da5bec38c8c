"""The node's registration with the registry, as an explicit state machine on an injected clock.

The registry assigns (or gives back) our node ID when we register, and forgets
us when our heartbeats stop.  What the node does about it:

=================  ===============================  ==========================================
state              event                            next
=================  ===============================  ==========================================
STARTING           ``start()``                      REGISTERING (the first attempt)
REGISTERING        the registry answers             REGISTERED (failures reset)
REGISTERING        the attempt fails, no node ID    UNREGISTERED
REGISTERING        the attempt fails, had an ID     REGISTERED (heartbeats go on with it)
UNREGISTERED       a beat                           REGISTERING (every beat tries again)
REGISTERED         a heartbeat answered             REGISTERED (failures reset, ``alive()``)
REGISTERED         a heartbeat fails                REGISTERED, one failure more; REGISTERING
                                                    after :data:`FAILURES_BEFORE_REREGISTER`
                                                    in a row, or at once on ``not_found``: a
                                                    registry that restarted without its store
                                                    (or reaped us) no longer knows us
=================  ===============================  ==========================================

Beats come every ``interval`` seconds from the first attempt's end on, and
one never overlaps another or an attempt under way (the beat waits for it).
The work itself is the node's: ``register()`` sends the registration and
returns a Deferred of the node ID; ``registered(node_id)`` applies it
(settings to re-apply, trust to reload, events to emit; if it fails, we are
registered all the same); ``heartbeat(node_id)`` returns a Deferred that fails
with a :class:`~pilotnet.errors.PilotError`; ``alive()`` follows every
answered heartbeat.
"""

import enum
from typing import Callable, Optional

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pilotnet.errors import NOT_FOUND, PilotError

log = Logger()

#: Consecutive failed heartbeats after which we register again.
FAILURES_BEFORE_REREGISTER = 3


class RegistrationState(enum.Enum):
    STARTING = "starting"
    REGISTERING = "registering"
    REGISTERED = "registered"
    UNREGISTERED = "unregistered"


class Registration(service.Service):
    """Registers, heartbeats, re-registers; a child service of the node (its timer stops with it)."""

    def __init__(self, clock: IReactorTime, interval: float, *,
                 register: Callable[[], defer.Deferred],
                 registered: Callable[[int], object],
                 heartbeat: Callable[[int], defer.Deferred],
                 alive: Callable[[], object] = lambda: None) -> None:
        self.clock = clock
        self.interval = interval
        self._register = register
        self._registered = registered
        self._heartbeat = heartbeat
        self._alive = alive
        self.state = RegistrationState.STARTING
        self.node_id: Optional[int] = None
        #: Heartbeats failed in a row.
        self.failures = 0
        self._beats = task.LoopingCall(self.beat)
        self._beats.clock = clock

    @defer.inlineCallbacks
    def start(self):
        """The first registration attempt; then the beats begin.  Never fails: a failure is logged."""
        if self.state is not RegistrationState.STARTING:
            return
        try:
            yield self._attempt()
        except PilotError as error:
            log.warn("registration failed: {reason}; retrying with the heartbeat", reason=error.message)
        if self.running and not self._beats.running:
            beating = self._beats.start(self.interval, now=False)
            # Only a bug ends the beats (every refusal is a PilotError, handled): say so.
            beating.addErrback(lambda failure: log.failure("heartbeats stopped", failure))

    def stopService(self):
        if self._beats.running:
            self._beats.stop()
        return super().stopService()

    @defer.inlineCallbacks
    def beat(self):
        """One heartbeat, or one registration attempt, as the state says."""
        state = self.state
        if state is RegistrationState.UNREGISTERED:
            yield self._try_again()
        elif state is RegistrationState.REGISTERED:
            try:
                yield self._heartbeat(self.node_id)
            except PilotError as error:
                self.failures += 1
                log.warn("heartbeat failed ({count}): {reason}", count=self.failures, reason=error.message)
                if error.code == NOT_FOUND or self.failures >= FAILURES_BEFORE_REREGISTER:
                    yield self._try_again()
                return
            self.failures = 0
            yield self._alive()

    @defer.inlineCallbacks
    def _try_again(self):
        try:
            yield self._attempt()
        except PilotError as error:
            log.warn("re-registration failed: {reason}", reason=error.message)

    @defer.inlineCallbacks
    def _attempt(self):
        self.state = RegistrationState.REGISTERING
        try:
            node_id = yield self._register()
        except Exception:
            self.state = (RegistrationState.UNREGISTERED if self.node_id is None
                          else RegistrationState.REGISTERED)
            raise
        self.node_id = node_id
        self.failures = 0
        self.state = RegistrationState.REGISTERED
        yield self._registered(node_id)
