"""The Twisted SDK: a connection to the local pilot daemon over its AMP control socket.

Everything returns a :class:`~twisted.internet.defer.Deferred`, so the API
reads naturally from ``async def`` code driven by ``Deferred.fromCoroutine``
(or ``ensureDeferred``)::

    async def main(reactor):
        daemon = await connect(reactor)
        stream = await daemon.dial("agent-b", 7)
        await stream.write(b"hello")
        print(await stream.read())
        await stream.close()

Streams, listeners and datagrams are in :mod:`pilotnet.driver.streams`
(reading is pull, which gives backpressure); publish/subscribe is in
:mod:`pilotnet.driver.events`.  This module holds the connection itself.

Events (publish/subscribe) go through the daemon's own broker, which
federates with trusted peers' brokers, so nothing else needs deploying::

    events = daemon.open_event_stream()
    await events.publish("metrics.cpu", b"42")
    async for event in events.subscribe("metrics.*"):
        print(event.topic, event.data)

Failures are :class:`~pilotnet.errors.PilotError` values with stable codes:
``not_running`` when the daemon cannot be reached or goes away, and the
daemon's own codes (carried by :class:`~pilotnet.driver.commands.CommandFailed`)
for refused commands.
"""

import json
from collections import deque

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectError
from twisted.protocols import amp

from pilotnet.control import commands
from pilotnet.control.schema import check_timeout
from pilotnet.driver.events import Event, EventStream, Publisher, Subscription
from pilotnet.driver.failures import not_running_error, translate_failure
from pilotnet.driver.paths import default_socket_path, pilot_home
from pilotnet.driver.stream_socket import attach as attach_data_socket, socket_pair as data_socket_pair
from pilotnet.driver.stream_socket import MAX_IN_FLIGHT as MAX_SOCKETS_IN_FLIGHT, answered as socket_answered
from pilotnet.driver.stream_socket import use as use_data_socket
from pilotnet.driver.streams import Datagram, Listener, Stream
from pilotnet.driver.targets import parse_port, parse_target, unresolvable
from pilotnet.driver.waiting import OneShot
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, NOT_RUNNING, PilotError
from pilotnet.wire.address import Addr
from pilotnet.wire.eventstream import split_events


def connect(reactor=None, socket_path=None, timeout=5.0, data_sockets=True):
    """Connect to the daemon's control socket; a Deferred of a :class:`Daemon`.

    Fails with ``not_running`` when nothing listens at ``socket_path``
    (default: :func:`default_socket_path`).  Each stream gets a data socket
    of its own (:mod:`pilotnet.driver.stream_socket`); with ``data_sockets``
    false every stream's bytes stay in AMP boxes on the control socket (the
    slower path, kept for comparison and for clients that cannot pass
    descriptors).
    """
    if reactor is None:
        from twisted.internet import reactor
    from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol

    path = socket_path or default_socket_path()
    protocol = _ControlProtocol()
    connecting = connectProtocol(UNIXClientEndpoint(reactor, path, timeout=timeout), protocol)

    def refused(failure):
        failure.trap(ConnectError, OSError)
        raise not_running_error()

    return connecting.addCallbacks(lambda _: Daemon(protocol, reactor, data_sockets), refused)


def _datagrams_sent(answer):
    """``SendDatagram``'s count; a daemon that does not report one sent the single datagram."""
    sent = answer.get("sent")
    return 1 if sent is None else sent


class Daemon:
    """A connection to the local daemon: queries, registry operations, streams, ports, datagrams."""

    def __init__(self, protocol, reactor, data_sockets=True):
        self._protocol = protocol
        self.reactor = reactor
        self._data_sockets = data_sockets
        #: Data sockets passed (with Dial or AttachSocket) and not answered yet, and the
        #: AttachSockets waiting for room (see :data:`stream_socket.MAX_IN_FLIGHT`).
        self._sockets_in_flight = 0
        self._attaches_waiting = deque()
        self._streams = {}
        self._listeners = {}
        self._subscriptions = {}
        self._publisher = Publisher(self)
        self._lost_error = None
        self._disconnected = OneShot()
        protocol.daemon = self

    # -- plumbing ---------------------------------------------------------------

    def _call(self, command, **arguments):
        if self._lost_error is not None:
            return fail(self._lost_error)
        return self._protocol.callRemote(command, **arguments).addErrback(translate_failure)

    def _push(self, command, **arguments):
        """An unanswered command (stream data and credit); dropped once the daemon is gone."""
        self._protocol.callRemote(command, **arguments)

    def _result(self, command, key, **arguments):
        return self._call(command, **arguments).addCallback(lambda answer: answer[key])

    def _forget_stream(self, stream):
        if self._streams.get(stream.conn_id) is stream:
            del self._streams[stream.conn_id]

    def _connection_lost(self):
        self._lost_error = PilotError(
            "lost the connection to the daemon", code=NOT_RUNNING,
            hint="check the daemon: pilotctl daemon status",
        )
        for stream in list(self._streams.values()):
            stream._end(self._lost_error)
        for _, ours, theirs in self._attaches_waiting:
            ours.close()
            theirs.close()
        self._attaches_waiting.clear()
        for listener in list(self._listeners.values()):
            listener._stop(self._lost_error)
        for subscription in list(self._subscriptions.values()):
            subscription._stop(self._lost_error)
        self._disconnected.fire(None)

    @property
    def disconnected(self):
        """A Deferred firing (with ``None``) when the control connection is gone."""
        return self._disconnected.wait()

    def close(self):
        """Disconnect; the daemon closes this client's streams and unbinds its ports.

        Events published before are sent and answered first, so a publisher
        that did not wait for them loses none by closing.
        """
        if self._lost_error is None:
            self._publisher.flushed().addCallback(self._disconnect)
        return self.disconnected

    def _disconnect(self, _):
        if self._lost_error is None:
            self._protocol.transport.loseConnection()

    # -- the node -----------------------------------------------------------

    def info(self):
        """The node's Info JSON (identity, counters, ``peer_list``, ``conn_list``)."""
        return self._result(commands.Info, "info")

    def peers(self):
        return self._result(commands.Peers, "peers")

    def connections(self):
        return self._result(commands.Connections, "connections")

    # -- registry operations -------------------------------------------------------

    def resolve_hostname(self, hostname):
        """The registry's answer for ``hostname`` (``node_id``, ``address``, ``public``, ...)."""
        return self._result(commands.ResolveHostname, "result", hostname=hostname)

    def lookup(self, node_id):
        return self._result(commands.Lookup, "result", node_id=node_id)

    def set_hostname(self, hostname):
        """Set the node's hostname; ``""`` clears it."""
        return self._result(commands.SetHostname, "result", hostname=hostname)

    def set_visibility(self, public):
        return self._result(commands.SetVisibility, "result", public=bool(public))

    def set_tags(self, tags):
        return self._result(commands.SetTags, "result", tags=list(tags))

    def set_task_exec(self, enabled):
        return self._result(commands.SetTaskExec, "result", enabled=bool(enabled))

    def deregister(self):
        return self._result(commands.Deregister, "result")

    def set_webhook(self, url):
        """POST the node's events to ``url`` (see docs/webhooks.md); the webhook's state."""
        return self._result(commands.SetWebhook, "result", url=url)

    def clear_webhook(self):
        return self._result(commands.ClearWebhook, "result")

    def resolve(self, target):
        """The :class:`Addr` of an address, a node ID or a hostname (see :mod:`pilotnet.driver.targets`)."""
        try:
            address = parse_target(target)
        except PilotError as error:
            return fail(error)
        if address is not None:
            return succeed(address)

        def resolved(answer):
            try:
                return Addr.parse(answer["address"])
            except (KeyError, TypeError, PilotError):
                raise unresolvable(target) from None

        def refused(failure):
            if failure.check(PilotError) and failure.value.code == NOT_RUNNING:
                return failure
            raise unresolvable(target)

        return self.resolve_hostname(target).addCallbacks(resolved, refused)

    # -- trust ------------------------------------------------------------------------

    def handshake(self, target, justification=""):
        """Ask ``target`` (address, node ID or hostname) for mutual trust.

        ``{"status": "sent"|"approved"|"trusted", "node_id", ...}`` (see
        :meth:`pilotnet.daemon.trust_manager.TrustManager.request`).  A hostname
        that does not resolve may be a private node's: the request then goes
        to that name through the registry, ``{"status": "sent", "hostname",
        "path": "relay"}``, and the node's ID is learnt when it approves.
        """
        if isinstance(target, int) and not isinstance(target, bool):
            target = str(target)

        def by_name(failure):
            failure.trap(PilotError)
            if failure.value.code != NOT_FOUND or not isinstance(target, str) or parse_target(target) is not None:
                return failure
            return self._result(commands.HandshakeByName, "result", hostname=target, justification=justification)

        return self.resolve(target).addCallbacks(
            lambda address: self._result(commands.Handshake, "result", node_id=address.node,
                                         justification=justification),
            by_name)

    def approve(self, node_id):
        """Approve a pending request: ``{"status": "approved", "node_id"}``."""
        return self._result(commands.Approve, "result", node_id=int(node_id))

    def reject(self, node_id, reason=""):
        return self._result(commands.Reject, "result", node_id=int(node_id), reason=reason)

    def revoke(self, node_id):
        """End trust at once; fails with ``not_found`` when ``node_id`` was not trusted."""
        return self._result(commands.Revoke, "result", node_id=int(node_id))

    def pending(self):
        """Requests waiting for approval: a list of ``{node_id, public_key, justification, received_at}``."""
        return self._result(commands.Pending, "result").addCallback(lambda result: result["pending"])

    def trusted(self):
        """Trusted peers: a list of ``{node_id, public_key, approved_at, mutual, network}``."""
        return self._result(commands.Trusted, "result").addCallback(lambda result: result["trusted"])

    # -- networks (docs/networks.md) ------------------------------------------------

    def networks(self):
        """Every network the registry lists: ``[{id, name, join_rule, members, ...}]``."""
        return self._result(commands.NetworkList, "result").addCallback(lambda result: result["networks"])

    def join_network(self, network_id, token=None):
        """Join a network; the registry's ``join_network_ok`` (``address`` is ours on that network)."""
        return self._result(commands.NetworkJoin, "result", network_id=int(network_id), token=token or None)

    def leave_network(self, network_id):
        return self._result(commands.NetworkLeave, "result", network_id=int(network_id))

    def network_members(self, network_id):
        """The members: ``[{node_id, address, hostname?, public, ...}]``."""
        return self._result(commands.NetworkMembers, "result",
                            network_id=int(network_id)).addCallback(lambda result: result["nodes"])

    def invite_to_network(self, network_id, node_id):
        return self._result(commands.NetworkInvite, "result", network_id=int(network_id), node_id=int(node_id))

    def network_invites(self):
        """Invitations waiting for this node: ``[{network_id, inviter_id, timestamp}]``."""
        return self._result(commands.NetworkInvites, "result").addCallback(
            lambda result: result.get("invites") or [])

    def respond_to_invite(self, network_id, accept):
        return self._result(commands.NetworkRespondInvite, "result", network_id=int(network_id),
                            accept=bool(accept))

    # -- managed networks, expression policies, member tags (docs/networks.md) --------------

    def managed_score(self, node_id, delta=1, topic="", network_id=0):
        """Add ``delta`` to a managed peer's score (network 0: the first managed network)."""
        return self._result(commands.ManagedScore, "result", network_id=int(network_id), node_id=int(node_id),
                            delta=int(delta), topic=topic)

    def managed_status(self, network_id=0):
        return self._result(commands.ManagedStatus, "result", network_id=int(network_id))

    def managed_rankings(self, network_id=0):
        """The managed peers, best score first: ``[{rank, node_id, score, added_at, ...}]``."""
        return self._result(commands.ManagedRankings, "result", network_id=int(network_id)).addCallback(
            lambda result: result["rankings"])

    def managed_cycle(self, network_id=0):
        """Run a prune/fill cycle now: ``{network_id, pruned, filled, peers, ...}``."""
        return self._result(commands.ManagedCycle, "result", network_id=int(network_id))

    def get_policy(self, network_id):
        """The network's expression policy document (None when it has none)."""
        return self._result(commands.PolicyGet, "result", network_id=int(network_id)).addCallback(
            lambda result: result.get("expr_policy") or None)

    def set_policy(self, network_id, document, admin_token=None):
        """Store a policy document (a dict or its JSON) at the registry and apply it on the daemon."""
        text = document if isinstance(document, str) else json.dumps(document)
        return self._result(commands.PolicySet, "result", network_id=int(network_id), policy=text,
                            admin_token=admin_token)

    def member_tags(self, network_id, node_id=0):
        """A member's tags (``{"tags": [...]}``), or every member's (``{"members": {id: [...]}}``) for 0."""
        return self._result(commands.MemberTagsGet, "result", network_id=int(network_id), node_id=int(node_id))

    def set_member_tags(self, network_id, node_id, tags, admin_token=None):
        return self._result(commands.MemberTagsSet, "result", network_id=int(network_id), node_id=int(node_id),
                            tags=list(tags), admin_token=admin_token)

    # -- streams, ports, datagrams ---------------------------------------------------

    def dial(self, target, port, timeout=None):
        """Open a :class:`Stream` to ``port`` on ``target`` (address, node ID or hostname)."""
        try:
            port = parse_port(port)
            timeout = check_timeout(timeout)
        except PilotError as error:
            return fail(error)
        arguments = {} if timeout is None else {"timeout": timeout}

        def dial(address):
            pair = data_socket_pair(self) if self._sockets_in_flight < MAX_SOCKETS_IN_FLIGHT else None
            if pair is None:
                return self._call(commands.Dial, address=str(address), port=port, **arguments).addCallback(
                    opened, None)
            ours, theirs = pair
            self._sockets_in_flight += 1
            dialing = self._call(commands.Dial, address=str(address), port=port, data_socket=theirs.fileno(),
                                 **arguments)
            # AMP passed its own duplicate of theirs: ours is the only end left here.
            dialing.addBoth(lambda result: socket_answered(self) or theirs.close() or result)
            dialing.addErrback(lambda failure: ours.close() or failure)
            return dialing.addCallback(opened, ours)

        def opened(answer, ours):
            stream = Stream(
                self, answer["conn_id"], answer["local_port"],
                Addr.parse(answer["remote_address"]), answer["remote_port"],
            )
            self._streams[stream.conn_id] = stream
            if ours is None:
                attach_data_socket(self, stream)  # over the bound (or no data sockets at all: it stays on AMP)
                return stream
            attached = answer.get("attached")
            if attached:
                use_data_socket(self, stream, ours)
                return stream
            ours.close()  # refused (the stream stays on AMP), or a daemon that knows only AttachSocket
            if attached is None:
                attach_data_socket(self, stream)
            return stream

        return self.resolve(target).addCallback(dial)

    def listen(self, port):
        """Bind ``port``: a :class:`Listener` for the streams and datagrams sent to it."""
        try:
            port = parse_port(port)
        except PilotError as error:
            return fail(error)

        def bound(answer):
            listener = Listener(self, answer["port"])
            self._listeners[listener.port] = listener
            return listener

        return self._call(commands.Bind, port=port).addCallback(bound)

    def send_datagram(self, target, port, data):
        """Send one datagram (unreliable, at most one chunk) to ``port`` on ``target``.

        ``target`` may be a network's broadcast address (``N:NNNN.FFFF.FFFF``,
        :func:`pilotnet.wire.address.broadcast`): the daemon sends one copy to
        every other member of network N.  The result is how many datagrams went
        out: 1, or the broadcast's copies.
        """
        try:
            port = parse_port(port)
        except PilotError as error:
            return fail(error)
        if not isinstance(data, (bytes, bytearray)):
            return fail(PilotError(f"datagram data must be bytes, not {type(data).__name__}", code=INVALID_ARGUMENT))
        if len(data) > commands.MAX_CHUNK:
            return fail(PilotError(
                f"datagram too large: {len(data)} bytes (at most {commands.MAX_CHUNK})", code=INVALID_ARGUMENT
            ))

        def send(address):
            return self._call(commands.SendDatagram, address=str(address), port=port, data=bytes(data))

        return self.resolve(target).addCallback(send).addCallback(_datagrams_sent)

    def open_event_stream(self):
        """An :class:`EventStream`: publish and subscribe through this daemon's broker."""
        return EventStream(self)

    def event_stats(self):
        """The broker's counters: events published, and per subscription delivered/dropped/queued."""
        return self._result(commands.EventStats, "stats")

    def close_connection(self, conn_id):
        """Close any of the daemon's connections by id (``pilotctl disconnect``)."""
        stream = self._streams.get(conn_id)
        if stream is not None:
            return stream.close()
        return self._call(commands.Close, conn_id=conn_id).addCallback(lambda _: None)

    # -- pushes from the daemon -----------------------------------------------------

    def _accepted(self, port, conn_id, remote_address, remote_port):
        listener = self._listeners.get(port)
        if listener is None:
            raise commands.CommandFailed(f"port {port} is not bound by this client", code=CONNECTION_FAILED)
        stream = Stream(self, conn_id, port, Addr.parse(remote_address), remote_port)
        self._streams[conn_id] = stream
        attach_data_socket(self, stream)
        listener._accepted(stream)
        return {}

    def _received(self, conn_id, data):
        stream = self._streams.get(conn_id)
        if stream is None:
            return {}
        return stream._received(data)

    def _written(self, conn_id, size):
        stream = self._streams.get(conn_id)
        if stream is None:
            return {}
        return stream._credited(size)

    def _stream_closed(self, conn_id, code, message):
        stream = self._streams.get(conn_id)
        if stream is not None:
            stream._peer_ended(code, message)
        return {}

    def _datagram_received(self, src_address, src_port, dst_port, data):
        listener = self._listeners.get(dst_port)
        if listener is not None:
            listener._datagram(Datagram(Addr.parse(src_address), src_port, dst_port, data))
        return {}

    def _event_received(self, subscription, topic, payload):
        target = self._subscriptions.get(subscription)
        if target is None:
            return {}
        return target._received(((topic, payload),))

    def _events_received(self, subscription, events):
        """Hand a pushed batch to its subscription in order; answered once it has room for them."""
        target = self._subscriptions.get(subscription)
        if target is None:
            return {}
        return target._received(split_events(events))


class _ControlProtocol(commands.UnansweredFastPath, amp.AMP):
    """The client end of the control socket: routes the daemon's pushes to the :class:`Daemon`."""

    daemon = None
    fast_commands = commands.fast_path((commands.Received, "received"), (commands.Written, "written"))

    @commands.Accepted.responder
    def accepted(self, port, conn_id, remote_address, remote_port):
        return self.daemon._accepted(port, conn_id, remote_address, remote_port)

    @commands.Received.responder
    def received(self, conn_id, data):
        return self.daemon._received(conn_id, data)

    @commands.Written.responder
    def written(self, conn_id, size):
        return self.daemon._written(conn_id, size)

    @commands.StreamClosed.responder
    def stream_closed(self, conn_id, code, message):
        return self.daemon._stream_closed(conn_id, code, message)

    @commands.DatagramReceived.responder
    def datagram_received(self, src_address, src_port, dst_port, data):
        return self.daemon._datagram_received(src_address, src_port, dst_port, data)

    @commands.EventReceived.responder
    def event_received(self, subscription, topic, payload):
        return self.daemon._event_received(subscription, topic, payload)

    @commands.EventsReceived.responder
    def events_received(self, subscription, events):
        return self.daemon._events_received(subscription, events)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self.daemon is not None:
            self.daemon._connection_lost()


__all__ = [
    "Daemon", "Datagram", "Event", "EventStream", "Listener", "Stream", "Subscription",
    "connect", "default_socket_path", "not_running_error", "pilot_home",
]
