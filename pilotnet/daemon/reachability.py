"""Why a dial gets no answer, told within seconds instead of after the SYN backoff.

A SYN to a stopped peer, or to a private peer that no longer trusts us (its
gate drops our SYNs silently, as the reference's does), is retransmitted with
backoff for about half a minute before the dial fails, and the user learns
nothing.  A :class:`DialWatch` finds out sooner:

* :data:`PROBE_AFTER` seconds into an unanswered dial it pings the peer over
  the tunnel (a ping is answered whatever the trust: the gate is for SYNs and
  datagrams), tries the relay if nothing came back directly, and asks the
  registry whether the node exists, whether it is public and whether the pair
  of us is trusted;
* at :data:`VERDICT_AFTER` seconds, if the dial is still unanswered, the
  evidence decides (:func:`verdict`): no such node (``not_found``), a private
  peer the registry holds no trust pair with us for (``not_trusted``: its gate
  drops us, alive or not), or nothing heard from the peer (``unreachable``).
  With no verdict (the peer is alive and should let us in) the dial carries on.

The dial is then abandoned (its connection reset) and fails with that error.
The clock and the probes are injected; :mod:`pilotnet.daemon.node` provides
the real probes.
"""

from typing import Any, NamedTuple, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import Interface

from pilotnet.errors import NOT_FOUND, NOT_TRUSTED, UNREACHABLE, PilotError

PROBE_AFTER = 1.0
VERDICT_AFTER = 4.0


class RegistryView(NamedTuple):
    """What the registry says about a peer, as far as reaching it goes."""

    registered: bool
    public: bool = False
    trusted: bool = False


class IReachabilityProbe(Interface):
    """The node's side of a :class:`DialWatch`."""

    def last_heard(node):
        """When (clock seconds) an authenticated frame last came from ``node``; -inf if never."""

    def probe(node, silent):
        """Ping ``node`` now; ``silent``: nothing came from it since the dial began (try the relay too)."""

    def registry_view(node):
        """A Deferred :class:`RegistryView` of ``node``; may fail (the registry is unreachable)."""


def verdict(node: int, view: Optional[RegistryView], heard: bool, waited: float,
            silent_for: float = float("inf")) -> Optional[PilotError]:
    """The error a still-unanswered dial to ``node`` fails with; None to keep waiting.

    ``silent_for``: seconds since anything came from the peer (infinite: never).
    """
    if view is not None and not view.registered:
        return PilotError(f"node {node} does not exist: the registry has no such node", code=NOT_FOUND,
                          hint="check the node ID or address (a node that deregistered must register again)")
    if view is not None and not view.public and not view.trusted:
        # Its gate drops us whether or not it is up: that is the thing to fix first.
        how = "answers but refuses the connection" if heard else "is private and refuses the connection"
        return PilotError(f"node {node} {how}: it does not trust this node (any more)", code=NOT_TRUSTED,
                          hint=f'ask it for trust again: pilotctl handshake {node} "reason"')
    if not heard:
        last = "never heard from" if silent_for == float("inf") else f"last heard {silent_for:.0f}s ago"
        return PilotError(f"node {node} is unreachable: no answer on the tunnel within {waited:g}s ({last})",
                          code=UNREACHABLE, hint="its daemon may be stopped or its network down; retry later")
    return None


class DialWatch:
    """Watches one dial; :attr:`result` fires with the stream, or with the dial's error or the verdict."""

    def __init__(self, clock: IReactorTime, dialing: defer.Deferred, node: int, probe,
                 probe_after: float = PROBE_AFTER, verdict_after: float = VERDICT_AFTER):
        self.clock = clock
        self.node = node
        self._dialing = dialing
        self._probe = probe
        self._started = clock.seconds()
        self._probed_at: Optional[float] = None
        self._view: Optional[RegistryView] = None
        self._verdict_after = verdict_after
        self.result: defer.Deferred[Any] = defer.Deferred(canceller=lambda _: self._stop())
        self._timers = [clock.callLater(probe_after, self._probe_now),
                        clock.callLater(verdict_after, self._judge)]
        dialing.addBoth(self._settled)

    def _stop(self):
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        if not self._dialing.called:
            self._dialing.cancel()

    def _settled(self, outcome):
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        if not self.result.called:
            if isinstance(outcome, Failure):
                self.result.errback(outcome)
            else:
                self.result.callback(outcome)
        elif isinstance(outcome, Failure):
            outcome.trap(defer.CancelledError)  # the dial we gave up on
        return None

    def _probe_now(self):
        now = self.clock.seconds()
        self._probed_at = now
        silent = self._probe.last_heard(self.node) < self._started
        self._probe.probe(self.node, silent)
        asking = self._probe.registry_view(self.node)
        asking.addCallbacks(self._remember_view, lambda _: None)

    def _remember_view(self, view):
        self._view = view

    def _judge(self):
        if self.result.called:
            return
        probed_at = self._probed_at if self._probed_at is not None else self._started
        last_heard = self._probe.last_heard(self.node)
        error = verdict(self.node, self._view, last_heard >= probed_at, self._verdict_after,
                        self.clock.seconds() - last_heard)
        if error is None:
            return
        self.result.errback(error)
        self._stop()
