"""Port 444: receiving and sending the signed trust messages (reference dataplane §7.6).

Receiving (:class:`HandshakePort`): each stream to port 444 carries one JSON
object.  Go peers send it in one segment, but nothing in a stream protocol
promises that, so we read until the object is complete (braces balanced
outside strings), the peer closes, or :data:`READ_TIMEOUT` passes.  Then
:class:`Verifier` decides whether to believe it, and the ones it believes go to
the trust logic.  Every refusal is counted by reason and logged; none is
answered (the reference drops silently, so a prober learns nothing).

The checks, cheapest first: well-formed; timestamp within 5 minutes past and
30 seconds ahead; signed, and the signature verifies for us as the receiver;
**sent by the node it names** (the tunnel authenticated the stream's source
node: the signature covers only ``handshake:<from>:<to>``, so it is the same
in every message from A to B, and without this check anyone holding one of
A's messages could forge the others); not seen before (a bounded replay set);
and the key is the one the registry holds for that node.

Sending (:class:`HandshakeCourier`): one write of the encoded object, then a
graceful close.  A message is sent direct only when it fits in one
:data:`GO_SEGMENT` segment, because a Go receiver reads only the first.
"""

import hashlib

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.crypto.handshake import is_signed_by
from pilotnet.errors import CONNECTION_FAILED, TIMEOUT, DecodeError, PilotError
from pilotnet.interfaces import IStreamOwner
from pilotnet.wire import handshake
from pilotnet.wire.address import Addr

log = Logger()

PORT = 444
READ_TIMEOUT = 10.0
SEND_TIMEOUT = 5.0
GO_SEGMENT = 1024
REPLAY_TTL = 10 * 60.0
REPLAY_CAPACITY = 8192
REJECT_REASONS = ("malformed", "stale", "unsigned", "bad_signature", "wrong_sender", "replayed",
                  "unknown_key", "key_mismatch")


def object_end(data):
    """Index just past the first complete top-level JSON object in ``data``; None while incomplete.

    Raises :class:`DecodeError` when ``data`` does not start (after
    whitespace) with ``{``: no amount of waiting makes that an object.
    """
    depth = 0
    in_string = escaped = False
    for index, byte in enumerate(data):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B:  # {
            depth += 1
        elif byte == 0x7D:  # }
            depth -= 1
            if depth == 0:
                return index + 1
        elif depth == 0 and byte not in b" \t\r\n":
            raise DecodeError("handshake message: expected a JSON object")
    return None


class ReplayCache:
    """Digests of messages already accepted, each kept :data:`REPLAY_TTL` seconds, at most ``capacity``."""

    def __init__(self, capacity=REPLAY_CAPACITY, ttl=REPLAY_TTL):
        self.capacity = capacity
        self.ttl = ttl
        self._seen = {}

    def __len__(self):
        return len(self._seen)

    def add(self, digest, now):
        """True if ``digest`` is new (and now remembered); False for a replay or a full cache."""
        seen = self._seen
        if digest in seen and seen[digest] > now:
            return False
        if len(seen) >= self.capacity:
            for key in [k for k, expiry in seen.items() if expiry <= now]:
                del seen[key]
            if len(seen) >= self.capacity:
                return False
        seen[digest] = now + self.ttl
        return True


class Rejected(Exception):
    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Verifier:
    """Decides whether a port-444 message is genuine; counts what it refuses.

    ``peer_keys`` is the registry's view of node keys
    (:class:`pilotnet.daemon.tunnel.IPeerKeys`).
    """

    def __init__(self, clock, peer_keys, node_id):
        self.clock = clock
        self.peer_keys = peer_keys
        self.node_id = node_id  # a callable: ours is learnt at registration
        self.replays = ReplayCache()
        self.rejected = dict.fromkeys(REJECT_REASONS, 0)

    @defer.inlineCallbacks
    def verify(self, data, sender):
        """The :class:`HandshakeMessage` in ``data`` from tunnel node ``sender``; raises :class:`Rejected`."""
        try:
            try:
                message = handshake.decode_message(data)
            except DecodeError as error:
                raise Rejected("malformed", error.message) from None
            now = self.clock.seconds()
            if not handshake.is_fresh(message, now):
                raise Rejected("stale", f"timestamp {message.timestamp} is outside the accepted window")
            if not message.public_key or not message.signature:
                raise Rejected("unsigned", "no public key or signature")
            if not is_signed_by(message, self.node_id(), message.public_key):
                raise Rejected("bad_signature", "the signature does not verify")
            if message.node_id != sender:
                raise Rejected("wrong_sender", f"claims node {message.node_id} but came from node {sender}")
            digest = hashlib.sha256(handshake.encode_message(message)).digest()
            if not self.replays.add(digest, now):
                raise Rejected("replayed", "already seen (or the replay set is full)")
            try:
                registered = yield self.peer_keys.public_key(message.node_id)
            except PilotError as error:
                raise Rejected("unknown_key", error.message) from None
            if registered != message.public_key:
                raise Rejected("key_mismatch", "the key differs from the registry's for that node")
        except Rejected as rejected:
            self.rejected[rejected.reason] += 1
            log.warn("handshake message from node {sender} refused ({reason}): {detail}",
                     trust_event="handshake.refused", peer=sender, reason=rejected.reason, detail=rejected.detail)
            raise
        return message


class _Inbound:
    __slots__ = ("sender", "buffer", "timer", "done")

    def __init__(self, sender, timer):
        self.sender = sender
        self.buffer = b""
        self.timer = timer
        self.done = False


@implementer(IStreamOwner)
class HandshakePort:
    """The port-444 listener: reassembles each stream's object and hands it to ``verifier`` then ``deliver``."""

    def __init__(self, streams, clock, verifier, deliver):
        self.streams = streams
        self.clock = clock
        self.verifier = verifier
        self.deliver = deliver
        self._inbound = {}
        streams.bind(PORT, self)

    def stream_accepted(self, port, stream):
        timer = self.clock.callLater(READ_TIMEOUT, self._finish, stream.conn_id)
        self._inbound[stream.conn_id] = _Inbound(stream.remote.node, timer)

    def stream_data(self, conn_id, data):
        inbound = self._inbound.get(conn_id)
        if inbound is None or inbound.done:
            return None
        inbound.buffer += data
        try:
            end = object_end(inbound.buffer)
        except DecodeError:
            end = len(inbound.buffer)  # hopeless: let the verifier count it as malformed
        if end is not None:
            inbound.buffer = inbound.buffer[:end]
            self._finish(conn_id)
        elif len(inbound.buffer) > handshake.MAX_MESSAGE_SIZE:
            self._finish(conn_id)
        return None

    def stream_closed(self, conn_id, code, message):
        self._finish(conn_id)

    def datagram(self, src, src_port, dst_port, data):
        pass

    def _finish(self, conn_id):
        inbound = self._inbound.pop(conn_id, None)
        if inbound is None:
            return
        inbound.done = True
        if inbound.timer.active():
            inbound.timer.cancel()
        try:
            self.streams.close(conn_id)
        except PilotError:
            pass  # the peer already closed it
        if not inbound.buffer:
            return
        verifying = self.verifier.verify(inbound.buffer, inbound.sender)
        verifying.addCallback(self.deliver)
        verifying.addErrback(lambda failure: failure.trap(Rejected))
        verifying.addErrback(lambda failure: log.failure("handling a handshake message failed", failure))


@implementer(IStreamOwner)
class HandshakeCourier:
    """Sends one message per stream to a peer's port 444.

    ``dial(address, port, owner, timeout)`` is the node's dial.  The Deferred
    of :meth:`send` fires when the peer has closed its side (it has read the
    message), fails with ``connection_failed`` / ``timeout`` otherwise.
    """

    def __init__(self, dial, streams, clock):
        self._dial = dial
        self.streams = streams
        self.clock = clock
        self._waiting = {}

    @staticmethod
    def fits(message):
        return len(handshake.encode_message(message)) <= GO_SEGMENT

    @defer.inlineCallbacks
    def send(self, node, message, timeout=SEND_TIMEOUT):
        data = handshake.encode_message(message)
        stream = yield self._dial(Addr(0, node), PORT, self, timeout)
        done = self._waiting[stream.conn_id] = defer.Deferred()
        done.addTimeout(timeout, self.clock)
        try:
            yield self.streams.write(stream.conn_id, data, self)
            self.streams.close(stream.conn_id)
            yield done
        except defer.TimeoutError:
            raise PilotError(f"node {node} did not take the handshake message in {timeout:g}s",
                             code=TIMEOUT) from None
        finally:
            self._waiting.pop(stream.conn_id, None)

    def stream_accepted(self, port, stream):
        pass

    def stream_data(self, conn_id, data):
        return None  # the receiver never answers on this stream

    def stream_closed(self, conn_id, code, message):
        done = self._waiting.pop(conn_id, None)
        if done is not None and not done.called:
            if code == TIMEOUT:  # a reset after our write still means the peer read it
                done.errback(PilotError(f"handshake message not delivered: {message}", code=CONNECTION_FAILED))
            else:
                done.callback(None)

    def datagram(self, src, src_port, dst_port, data):
        pass
