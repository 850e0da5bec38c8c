"""The control socket: AMP between the daemon and ``pilotctl`` / the SDK.

One :class:`ControlProtocol` per connected client.  It is that client's
representative inside the daemon: ports the client binds and streams it opens
or accepts belong to it, and all of them are released when it disconnects.
Pushes toward the client (accepted streams, data, closes, datagrams) are AMP
calls on the client.  Stream data travels both ways without answers, under
credit (:mod:`pilotnet.daemon.stream_credit`): received bytes keep the
stream's receive window consumed until the client returns them, which is how a
slow reader slows the sender down.  A client that attaches a data socket to a
stream (``AttachSocket``) moves that stream's bytes off AMP onto the socket
(:mod:`pilotnet.daemon.stream_socket`).

The client's event subscriptions live in the daemon's broker as local
:class:`~pilotnet.services.eventstream.Subscriber` objects (which is what
makes the daemon ask trusted peers for those patterns); events reach the
client as ``EventsReceived`` pushes, answered late by a slow client, so their
bytes stay in that subscriber's bounded queue and overflow drops events for it
alone.

Events are coalesced both ways, because an AMP round trip per event capped
the event stream at a few thousand events/s: ``PublishBatch`` carries many
events in one box, and what the broker hands one subscription within a
reactor iteration goes out as one ``EventsReceived`` push (as
:meth:`Streams._schedule_delivery` does for stream data).  Both carry the
events' wire frames, which the broker passes on without re-encoding them.
"""

import itertools
import os
import socket

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from zope.interface import implementer

from pilotnet.daemon import stream_socket
from pilotnet.daemon.stream_credit import StreamCredit
from pilotnet.control import commands
from pilotnet.control.schema import MAX_BOX, check_timeout
from pilotnet.errors import ALREADY_EXISTS, INTERNAL, INVALID_ARGUMENT, NOT_FOUND, PilotError
from pilotnet.interfaces import IStreamOwner
from pilotnet.services.eventstream import Subscriber
from pilotnet.wire.address import Addr
from pilotnet.wire.eventstream import MAX_TOPIC, split_events

#: The most a client can have written and not had credited: its credit plus the chunk that crossed it.
MAX_UNCREDITED = commands.WRITE_CREDIT + commands.MAX_CHUNK
#: Bytes the daemon may queue for a client that has stopped reading before it drops that client.
#: Room for the largest push (a 16 MiB event) and the answers already under way.
MAX_BACKLOG = 2 * MAX_BOX
#: Descriptors a client may have passed that no box has claimed yet; more is an attack on our file table.
MAX_PENDING_DESCRIPTORS = 16

log = Logger()

# Subscription ids, unique in the daemon so stats name each subscription once.
_subscription_numbers = itertools.count(1)


def _parse_address(text):
    try:
        return Addr.parse(text)
    except PilotError as error:
        raise commands.CommandFailed(error.message, code=INVALID_ARGUMENT) from None


def _node(number):
    if not 0 < number <= 0xFFFFFFFF:
        raise commands.CommandFailed(f"node ID {number} is out of range (1-4294967295)", code=INVALID_ARGUMENT)
    return number


def _port(number):
    if not 0 <= number <= 0xFFFF:
        raise commands.CommandFailed(f"port {number} is out of range (0-65535)", code=INVALID_ARGUMENT)
    return number


def _topic(text, what="topic"):
    size = len(text.encode("utf-8"))
    if not 0 < size <= MAX_TOPIC:
        raise commands.CommandFailed(f"{what} must be 1 to {MAX_TOPIC} bytes, not {size}", code=INVALID_ARGUMENT,
                                     hint="topics are dot-separated words, such as metrics.cpu")
    return text


def translating_errors(function):
    """Turn the project's errors into CommandFailed, keeping their code and hint.

    Anything else is a bug: it is logged here and reported as ``internal``
    rather than leaking a traceback to the client.
    """

    def translate(failure):
        if failure.check(commands.CommandFailed):
            return failure
        if failure.check(PilotError):
            raise commands.CommandFailed.from_error(failure.value)
        log.failure("control command failed", failure)
        raise commands.CommandFailed(f"internal error: {failure.getErrorMessage()}", code=INTERNAL)

    def wrapper(*args, **kwargs):
        return defer.maybeDeferred(function, *args, **kwargs).addErrback(translate)

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


@implementer(IStreamOwner)
class ControlProtocol(commands.UnansweredFastPath, amp.AMP):
    fast_commands = commands.fast_path((commands.Write, "write"), (commands.Consumed, "consumed"))

    def __init__(self, node, clock):
        super().__init__()
        self.node = node
        self._subscriptions = {}
        #: conn_id -> :class:`StreamCredit` of this client's streams.
        self._credits = {}
        #: conn_id -> :class:`~pilotnet.daemon.stream_socket.StreamSocket` of streams with a data socket.
        self._sockets = {}
        #: Subscription number -> :class:`_PushBatch` of events not yet pushed.
        self._outgoing = {}
        self._push_scheduled = False
        #: What schedules the coalesced event pushes.
        self.clock = clock
        #: Bytes queued for the client since its socket stopped draining (see :meth:`connectionMade`).
        self.backlog = 0
        self._dropped = False
        self._incoming = 0

    # -- bounds: a client that stops reading, or sends an endless box ----------------

    def connectionMade(self):
        """Register as the producer of what we write to this client.

        When it stops reading and our writes stop draining, the transport calls
        ``pauseProducing`` (Int16StringReceiver's): we read no more of its
        requests and stop parsing those already read, so it cannot make us
        answer more.  Pushes and answers already under way are still queued,
        up to :data:`MAX_BACKLOG` bytes (:meth:`sendBox`); past that the client
        is dropped.
        """
        super().connectionMade()
        self.transport.registerProducer(self, True)

    def resumeProducing(self):
        self.backlog = 0
        super().resumeProducing()

    def sendBox(self, box):
        if self.paused:
            self.backlog += sum(len(key) + len(value) + 4 for key, value in box.items())
            if self.backlog > MAX_BACKLOG:
                if self.transport is not None and not self._dropped:
                    self._dropped = True
                    log.warn("control client dropped: it stopped reading with {backlog} bytes queued",
                             backlog=self.backlog)
                    self.transport.abortConnection()
                return
        super().sendBox(box)

    def proto_init(self, string):
        self._incoming = 0
        return super().proto_init(string)

    def proto_value(self, string):
        self._incoming += len(string) + len(self._currentKey) + 4
        if self._incoming > MAX_BOX:
            log.warn("control client dropped: a request over {limit} bytes", limit=MAX_BOX)
            self.pauseProducing()
            self.transport.abortConnection()
            return "key"
        return super().proto_value(string)

    def fileDescriptorReceived(self, descriptor):
        """Keep a passed descriptor for the box that claims it (AMP's ``Descriptor``), within a bound."""
        if len(self._descriptors) >= MAX_PENDING_DESCRIPTORS:
            os.close(descriptor)
            if not self._dropped:
                self._dropped = True
                log.warn("control client dropped: over {limit} descriptors passed and not claimed",
                         limit=MAX_PENDING_DESCRIPTORS)
                self.transport.abortConnection()
            return
        super().fileDescriptorReceived(descriptor)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        for descriptor in self._descriptors.values():
            os.close(descriptor)
        self._descriptors.clear()
        for data_socket in list(self._sockets.values()):
            data_socket.abort()
        self.node.streams.release(self)
        self._credits.clear()
        for subscriber in self._subscriptions.values():
            self.node.events.unsubscribe(subscriber)
        self._subscriptions.clear()

    # -- node ------------------------------------------------------------------

    @commands.Info.responder
    @translating_errors
    def info(self):
        return {"info": self.node.info()}

    @commands.Peers.responder
    @translating_errors
    def peers(self):
        return {"peers": self.node.peer_list()}

    @commands.Connections.responder
    @translating_errors
    def connections(self):
        return {"connections": self.node.streams.describe()}

    # -- registry operations ---------------------------------------------------

    def _result(self, deferred):
        return deferred.addCallback(lambda reply: {"result": reply})

    @commands.ResolveHostname.responder
    @translating_errors
    def resolve_hostname(self, hostname):
        return self._result(self.node.resolve_hostname(hostname))

    @commands.Lookup.responder
    @translating_errors
    def lookup(self, node_id):
        return self._result(self.node.lookup(node_id))

    @commands.SetHostname.responder
    @translating_errors
    def set_hostname(self, hostname):
        return self._result(self.node.set_hostname(hostname))

    @commands.SetVisibility.responder
    @translating_errors
    def set_visibility(self, public):
        return self._result(self.node.set_visibility(public))

    @commands.SetTags.responder
    @translating_errors
    def set_tags(self, tags):
        return self._result(self.node.set_tags(tags))

    @commands.SetTaskExec.responder
    @translating_errors
    def set_task_exec(self, enabled):
        return self._result(self.node.set_task_exec(enabled))

    @commands.Deregister.responder
    @translating_errors
    def deregister(self):
        return self._result(self.node.deregister())

    # -- webhooks ------------------------------------------------------------------

    @commands.SetWebhook.responder
    @translating_errors
    def set_webhook(self, url):
        return {"result": self.node.set_webhook(url)}

    @commands.ClearWebhook.responder
    @translating_errors
    def clear_webhook(self):
        return {"result": self.node.clear_webhook()}

    # -- trust -------------------------------------------------------------------

    @commands.Handshake.responder
    @translating_errors
    def handshake(self, node_id, justification):
        return self._result(self.node.trust.request(_node(node_id), justification))

    @commands.HandshakeByName.responder
    @translating_errors
    def handshake_by_name(self, hostname, justification):
        return self._result(self.node.trust.request_by_name(hostname, justification))

    @commands.Approve.responder
    @translating_errors
    def approve(self, node_id):
        return self._result(self.node.trust.approve(_node(node_id)))

    @commands.Reject.responder
    @translating_errors
    def reject(self, node_id, reason):
        return self._result(self.node.trust.reject(_node(node_id), reason))

    @commands.Revoke.responder
    @translating_errors
    def revoke(self, node_id):
        return self._result(self.node.trust.revoke(_node(node_id)))

    @commands.Pending.responder
    @translating_errors
    def pending(self):
        return self._result(self.node.trust.pending())

    @commands.Trusted.responder
    @translating_errors
    def trusted(self):
        return {"result": self.node.trust.trusted()}

    # -- managed networks, expression policies, member tags (docs/networks.md) ------------

    @commands.ManagedScore.responder
    @translating_errors
    def managed_score(self, network_id, node_id, delta, topic):
        return {"result": self.node.managed.score(network_id, _node(node_id), delta, topic)}

    @commands.ManagedStatus.responder
    @translating_errors
    def managed_status(self, network_id):
        return {"result": self.node.managed.status(network_id)}

    @commands.ManagedRankings.responder
    @translating_errors
    def managed_rankings(self, network_id):
        return {"result": self.node.managed.rankings(network_id)}

    @commands.ManagedCycle.responder
    @translating_errors
    def managed_cycle(self, network_id):
        return self._result(self.node.managed.force_cycle(network_id))

    @commands.PolicyGet.responder
    @translating_errors
    def policy_get(self, network_id):
        return self._result(self.node.managed.get_policy(network_id))

    @commands.PolicySet.responder
    @translating_errors
    def policy_set(self, network_id, policy, admin_token=None):
        return self._result(self.node.managed.set_policy(network_id, policy, admin_token))

    @commands.MemberTagsGet.responder
    @translating_errors
    def member_tags_get(self, network_id, node_id):
        return self._result(self.node.managed.get_member_tags(network_id, node_id))

    @commands.MemberTagsSet.responder
    @translating_errors
    def member_tags_set(self, network_id, node_id, tags, admin_token=None):
        return self._result(self.node.managed.set_member_tags(network_id, _node(node_id), tags, admin_token))

    # -- networks --------------------------------------------------------------------

    @commands.NetworkList.responder
    @translating_errors
    def network_list(self):
        return self._result(self.node.networks.list_networks())

    @commands.NetworkJoin.responder
    @translating_errors
    def network_join(self, network_id, token=None):
        return self._result(self.node.networks.join(network_id, token or ""))

    @commands.NetworkLeave.responder
    @translating_errors
    def network_leave(self, network_id):
        return self._result(self.node.networks.leave(network_id))

    @commands.NetworkMembers.responder
    @translating_errors
    def network_members(self, network_id):
        return self._result(self.node.networks.members(network_id))

    @commands.NetworkInvite.responder
    @translating_errors
    def network_invite(self, network_id, node_id):
        return self._result(self.node.networks.invite(network_id, _node(node_id)))

    @commands.NetworkInvites.responder
    @translating_errors
    def network_invites(self):
        return self._result(self.node.networks.invites())

    @commands.NetworkRespondInvite.responder
    @translating_errors
    def network_respond_invite(self, network_id, accept):
        return self._result(self.node.networks.respond(network_id, accept))

    # -- ports, streams, datagrams ----------------------------------------------

    @commands.Bind.responder
    @translating_errors
    def bind(self, port):
        # Also when this client holds it: a second Listener for the port would orphan the first.
        if _port(port) in self.node.streams.bound_ports():
            raise PilotError(f"port {port} already bound", code=ALREADY_EXISTS)
        self.node.streams.bind(port, self)
        return {"port": port}

    @commands.Unbind.responder
    @translating_errors
    def unbind(self, port):
        self.node.streams.unbind(_port(port), self)
        return {}

    @commands.Dial.responder
    @translating_errors
    def dial(self, address, port, timeout=None, data_socket=None):
        try:
            timeout = check_timeout(timeout)
            dialing = self.node.dial(_parse_address(address), _port(port), self, timeout=timeout)
        except BaseException:
            if data_socket is not None:
                os.close(data_socket)
            raise

        def opened(conn):
            answer = {"conn_id": conn.conn_id, "local_port": conn.local_port,
                      "remote_address": str(conn.remote), "remote_port": conn.remote_port}
            if data_socket is not None:
                try:
                    self._attach(conn.conn_id, data_socket)
                except PilotError:
                    answer["attached"] = False  # an unfit socket, or the stream ended already: it stays on AMP
                else:
                    answer["attached"] = True
            return answer

        def failed(failure):
            if data_socket is not None:
                os.close(data_socket)
            return failure

        return dialing.addCallbacks(opened, failed)

    @commands.Write.responder
    def write(self, conn_id, data):
        credit = self._credits.get(conn_id)
        if credit is not None and credit.uncredited + len(data) > MAX_UNCREDITED:
            # A client that ignores its credit would grow the send buffer without bound.
            try:
                self.node.streams.reset(conn_id, self, PilotError(
                    "the client wrote beyond its write credit", code=INVALID_ARGUMENT))
            except PilotError:
                pass  # already gone
            return {}
        try:
            taken = self.node.streams.write(conn_id, data, self)
        except PilotError:
            return {}  # the stream ended: the client hears so from StreamClosed
        credit = credit or self._credit_for(conn_id)
        if taken.called:
            self._return_credit(conn_id, credit.took(len(data), below_high_water=True))
        else:
            credit.took(len(data), below_high_water=False)
            # A stream that ends first fails this; the client hears of the end from StreamClosed.
            taken.addCallbacks(lambda _: self._return_credit(conn_id, credit.release()), lambda _: None)
        return {}

    @commands.Consumed.responder
    def consumed(self, conn_id, size):
        credit = self._credits.get(conn_id)
        if credit is not None and size > 0:
            credit.consumed(size)
        return {}

    def _credit_for(self, conn_id):
        credit = self._credits.get(conn_id)
        if credit is None:
            credit = self._credits[conn_id] = StreamCredit()
        return credit

    def _return_credit(self, conn_id, size):
        # Unanswered pushes to a client that has gone are dropped by AMP; its streams are released.
        if size:
            self.callRemote(commands.Written, conn_id=conn_id, size=size)

    @commands.AttachSocket.responder
    @translating_errors
    def attach_socket(self, conn_id, data_socket):
        self._attach(conn_id, data_socket)
        return {}

    def _attach(self, conn_id, data_socket):
        """Carry ``conn_id``'s bytes on ``data_socket`` from now on; refused (the descriptor closed) if it cannot."""
        streams = self.node.streams
        try:
            if not streams.owns(conn_id, self):
                raise PilotError(f"connection {conn_id} not found", code=NOT_FOUND)
            if conn_id in self._sockets:
                raise PilotError(f"connection {conn_id} has a data socket already", code=ALREADY_EXISTS)
        except PilotError:
            os.close(data_socket)
            raise
        attached = stream_socket.StreamSocket(
            conn_id, lambda data: streams.write(conn_id, data, self), lambda: streams.close(conn_id),
            self._forget_socket)
        stream_socket.adopt(self.clock, data_socket, attached)
        self._sockets[conn_id] = attached

    def _forget_socket(self, data_socket):
        if self._sockets.get(data_socket.conn_id) is data_socket:
            del self._sockets[data_socket.conn_id]

    @commands.Close.responder
    @translating_errors
    def close(self, conn_id):
        data_socket = self._sockets.get(conn_id)
        if data_socket is not None:
            # The client half-closed the data socket first: that end closes the stream, after what
            # preceded it on the socket; answer once it has been read, as a Close on AMP is answered
            # after the Writes before it.
            return data_socket.client_ended().addCallback(lambda _: {})
        self.node.streams.close(conn_id)
        return {}

    @commands.SendDatagram.responder
    @translating_errors
    def send_datagram(self, address, port, data):
        sending = self.node.send_datagram(_parse_address(address), _port(port), data, client=self)
        return sending.addCallback(lambda counts: {"sent": counts[0], "unreachable": counts[1]})

    # -- events ------------------------------------------------------------------------

    @commands.Subscribe.responder
    @translating_errors
    def subscribe(self, pattern):
        number = next(_subscription_numbers)
        subscriber = Subscriber(_topic(pattern, "pattern"), f"local subscription {number}",
                                lambda frames: self._queue_push(number, frames), local=True)
        self._subscriptions[number] = self.node.events.subscribe(subscriber)
        return {"subscription": number}

    @commands.Unsubscribe.responder
    @translating_errors
    def unsubscribe(self, subscription):
        subscriber = self._subscriptions.pop(subscription, None)
        if subscriber is None:
            raise commands.CommandFailed(f"no subscription {subscription}", code=NOT_FOUND)
        self.node.events.unsubscribe(subscriber)
        return {}

    @commands.Publish.responder
    @translating_errors
    def publish(self, topic, payload):
        # Events this client publishes never come back to its own subscriptions.
        delivered = self.node.events.publish(_topic(topic), payload, self._subscriptions.values())
        return {"delivered": delivered}

    @commands.PublishBatch.responder
    @translating_errors
    def publish_batch(self, events):
        """Publish each event in order; one result (count or error) per event, so none hides another's error."""
        try:
            decoded = split_events(events, frames=True)
        except PilotError as error:
            raise commands.CommandFailed(f"malformed event batch: {error.message}", code=INVALID_ARGUMENT)
        publish, own = self.node.events.publish_frames, self._subscriptions.values()
        if all(topic for topic, _ in decoded):
            return {"results": publish(decoded, own)}
        results = []
        for topic, frame in decoded:  # the framing carries an empty topic; publishing refuses it
            try:
                results.append(publish([(_topic(topic), frame)], own)[0])
            except PilotError as error:
                results.append({"code": error.code, "message": error.message, "hint": error.hint})
        return {"results": results}

    def _queue_push(self, number, frames):
        """Queue events for subscription ``number``; returns the Deferred of their push being answered.

        Every event queued in this reactor iteration for the subscription
        shares one push (split at :data:`~pilotnet.control.schema.MAX_CHUNK`,
        a larger event going alone), and the broker keeps their bytes counted
        until the client answers it.  Pushes of one subscription are answered
        in order, so the last one's answer means all were taken.
        """
        batch = self._outgoing.get(number)
        if batch is None:
            batch = self._new_batch(number)
        size = sum(map(len, frames))
        if batch.size + size <= commands.MAX_CHUNK:
            batch.add(frames, size)
            return batch.taken
        for frame in frames:
            if batch.size and batch.size + len(frame) > commands.MAX_CHUNK:
                self._push(number, self._outgoing.pop(number))
                batch = self._new_batch(number)
            batch.add((frame,), len(frame))
        return batch.taken

    def _new_batch(self, number):
        batch = self._outgoing[number] = _PushBatch()
        if not self._push_scheduled:
            self._push_scheduled = True
            self.clock.callLater(0, self._push_pending)
        return batch

    def _push_pending(self):
        self._push_scheduled = False
        pending, self._outgoing = self._outgoing, {}
        for number, batch in pending.items():
            self._push(number, batch)

    def _push(self, number, batch):
        pushing = self.callRemote(commands.EventsReceived, subscription=number, events=b"".join(batch.frames))
        pushing.addErrback(self._push_failed).chainDeferred(batch.taken)

    @commands.EventStats.responder
    @translating_errors
    def event_stats(self):
        return {"stats": self.node.events.stats()}

    # -- IStreamOwner: pushes to the client ------------------------------------------

    def stream_accepted(self, port, conn):
        return self.callRemote(
            commands.Accepted, port=port, conn_id=conn.conn_id,
            remote_address=str(conn.remote), remote_port=conn.remote_port,
        ).addErrback(self._push_failed)

    def stream_data(self, conn_id, data):
        data_socket = self._sockets.get(conn_id)
        if data_socket is not None:
            return data_socket.deliver(data)
        taken = self._credit_for(conn_id).pushed(len(data))
        self.callRemote(commands.Received, conn_id=conn_id, data=data)
        return taken

    def stream_closed(self, conn_id, code, message):
        self._credits.pop(conn_id, None)
        data_socket = self._sockets.get(conn_id)
        if data_socket is not None:
            data_socket.peer_ended(failed=bool(code))
        return self.callRemote(
            commands.StreamClosed, conn_id=conn_id, code=code or "", message=message or "",
        ).addErrback(self._push_failed)

    def datagram(self, src, src_port, dst_port, data):
        return self.callRemote(
            commands.DatagramReceived, src_address=str(src), src_port=src_port, dst_port=dst_port, data=data,
        ).addErrback(self._push_failed)

    def _push_failed(self, failure):
        # The client went away or refused a push; its streams are released on disconnect.
        return None


class _PushBatch:
    """Events for one subscription waiting for the next push, and the Deferred their push answers."""

    __slots__ = ("frames", "size", "taken")

    def __init__(self):
        self.frames = []
        self.size = 0
        self.taken = defer.Deferred()

    def add(self, frames, size):
        self.frames.extend(frames)
        self.size += size


class ControlFactory(Factory):
    """One :class:`ControlProtocol` per client, all for one node (an ``IControlledNode``) and one clock."""

    def __init__(self, node, clock):
        self.node = node
        self.clock = clock

    def buildProtocol(self, addr):
        return ControlProtocol(self.node, self.clock)


def check_socket_path(path):
    """Refuse a control socket path that a live daemon listens on, or that is not a socket at all.

    A socket nothing listens on is what a daemon that died leaves behind:
    :func:`prepare_socket_path` replaces it.
    """
    if path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return
        finally:
            probe.close()
        raise PilotError(f"a daemon is already listening on {path}", code=ALREADY_EXISTS,
                         hint="stop it first (pilotctl daemon stop), or give this daemon another --socket")
    if os.path.lexists(path):
        raise PilotError(f"{path} exists and is not a socket; refusing to replace it", code=ALREADY_EXISTS,
                         hint="choose another --socket, or remove the file yourself")


def prepare_socket_path(path):
    """Make way for the control socket: refuse a live one (:func:`check_socket_path`), remove a stale one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_socket_path(path)
    if path.is_socket():
        os.unlink(path)
