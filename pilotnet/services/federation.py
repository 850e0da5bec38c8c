"""Event stream across machines with no broker to run: daemons subscribe at each other.

For every pattern a local client subscribes to, the daemon holds one
subscription (an ordinary port-1002 stream, the reference's framing) at each
trusted peer's broker.  The peer then forwards its events matching that
pattern, and we hand them to the local clients of that pattern only
(:meth:`EventBroker.deliver_forwarded`), as the frames they came in.  So:

- an agent talks only to its own daemon, and three agents on three machines
  form a pipeline with nothing else deployed;
- a peer forwards only what somebody here wants;
- forwarded events are never forwarded again, so brokers cannot loop, and a
  client gets each event once however many of our patterns it matched.

Links are reconciled with what is wanted (:meth:`Federation.refresh`) when
local patterns or the set of trusted peers change, and periodically, which
also re-opens links a peer's restart broke.
"""

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.errors import PilotError
from pilotnet.interfaces import IStreamOwner
from pilotnet.wire.address import PORT_EVENT_STREAM
from pilotnet.wire.eventstream import EventDecoder, encode_event

log = Logger()


@implementer(IStreamOwner)
class _Link:
    """Our subscription ``pattern`` at ``peer``'s broker."""

    def __init__(self, federation, peer, pattern):
        self.federation = federation
        self.peer = peer
        self.pattern = pattern
        self.decoder = EventDecoder()
        self.conn_id = None
        self.closed = False

    # IStreamOwner: a dialed stream is never accepted, and carries no datagrams.
    def stream_accepted(self, port, stream):
        pass

    def datagram(self, src, src_port, dst_port, data):
        pass

    def stream_data(self, conn_id, data):
        try:
            events = self.decoder.feed_frames(data)
        except PilotError:
            self.federation.close_link(self)
            return None
        if events:
            self.federation.broker.deliver_forwarded(self.pattern, [frame for _, frame in events])
        return None

    def stream_closed(self, conn_id, code, message):
        self.closed = True
        self.federation.forget_link(self)


class Federation:
    """Subscriptions at trusted peers' brokers for our local patterns.

    ``dial(node, port, owner)`` opens a stream owned by ``owner`` (Deferred of
    a handle with ``conn_id``); ``streams`` writes and closes them;
    ``peers()`` names the nodes whose brokers we subscribe at.
    """

    def __init__(self, broker, streams, dial, peers):
        self.broker = broker
        self.streams = streams
        self.dial = dial
        self.peers = peers
        self.links = {}
        broker.on_local_patterns_changed = self.refresh

    def wanted(self):
        patterns = self.broker.local_patterns()
        return {(peer, pattern) for peer in self.peers() for pattern in patterns}

    def refresh(self):
        wanted = self.wanted()
        for key in [k for k in self.links if k not in wanted]:
            self.close_link(self.links[key])
        for key in wanted - set(self.links):
            self._open(*key)

    def _open(self, peer, pattern):
        link = self.links[(peer, pattern)] = _Link(self, peer, pattern)
        opening = defer.maybeDeferred(self.dial, peer, PORT_EVENT_STREAM, link)
        opening.addCallbacks(self._opened, self._failed, callbackArgs=(link,), errbackArgs=(link,))

    def _opened(self, stream, link):
        link.conn_id = stream.conn_id
        stream.conn.nodelay = True  # events are latency-bound (see EventStreamService)
        if self.links.get((link.peer, link.pattern)) is not link:
            self.streams.close(stream.conn_id)  # no longer wanted while it was opening
            return
        self.streams.write(link.conn_id, encode_event(link.pattern), link)

    def _failed(self, failure, link):
        failure.trap(PilotError)
        log.debug("no event subscription at node {peer}: {reason}", peer=link.peer,
                  reason=failure.value.message)
        self.forget_link(link)

    def close_link(self, link):
        self.forget_link(link)
        if link.conn_id is not None and not link.closed:
            link.closed = True
            try:
                self.streams.close(link.conn_id)
            except PilotError:
                pass

    def forget_link(self, link):
        if self.links.get((link.peer, link.pattern)) is link:
            del self.links[(link.peer, link.pattern)]
