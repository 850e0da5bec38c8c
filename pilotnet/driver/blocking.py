"""The blocking SDK for plain scripts: the Twisted API's shape, without Deferreds.

::

    from pilotnet.driver import blocking

    with blocking.connect() as daemon:
        print(daemon.info()["address"])
        with daemon.dial("agent-b", 7) as stream:
            stream.write(b"hello")
            print(stream.read(timeout=5))

How it works, and why: the Twisted reactor runs in one background daemon
thread (started on first use, or the reactor already running in another
thread is reused) and every call is handed to it with
``blockingCallFromThread``.  So streams, listeners and subscriptions have
exactly one implementation (:mod:`pilotnet.driver.client`), with its chunking,
backpressure and push routing.  (``pilotctl``'s one-shot commands use the
small blocking client of :mod:`pilotnet.control.client` instead, which speaks
the same schema without Twisted but has none of that flow control.)

It never hangs on a dead daemon: a daemon that exits closes the socket, which
fails every pending call, read and accept with ``not_running``; a daemon that
stops answering is caught by the per-call ``timeout`` (default
:data:`DEFAULT_TIMEOUT` seconds for commands, ``None`` = wait for reads and
accepts), which fails with ``timeout``.  Errors are the same
:class:`~pilotnet.errors.PilotError` values as the Twisted API raises.

Events have the same shape as in the issue's examples::

    events = daemon.open_event_stream()
    events.publish("metrics.cpu", b"42")
    for event in events.subscribe("metrics.*"):
        print(event.topic, event.data)

Do not call it from the reactor thread itself (a Twisted program should use
:mod:`pilotnet.driver.client`); that would deadlock, so it raises instead.
"""

import threading

from twisted.internet import defer
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import Logger
from twisted.python.threadable import isInIOThread

from pilotnet.driver import client
from pilotnet.errors import INTERNAL, TIMEOUT, PilotError

log = Logger()

# Seconds a command, a dial or a write may take before it fails with ``timeout``.
DEFAULT_TIMEOUT = 30.0
# Seconds to wait for a freshly started reactor thread to come up.
_REACTOR_START_TIMEOUT = 10.0

_reactor_lock = threading.Lock()


def _running_reactor():
    """The global reactor, started in a daemon thread unless something already runs it."""
    from twisted.internet import reactor

    with _reactor_lock:
        if not reactor.running:
            started = threading.Event()
            reactor.callWhenRunning(started.set)
            thread = threading.Thread(
                target=reactor.run, kwargs={"installSignalHandlers": False},
                name="pilotnet-reactor", daemon=True,
            )
            thread.start()
            if not started.wait(_REACTOR_START_TIMEOUT):
                raise PilotError("the Twisted reactor did not start", code=INTERNAL)
    if isInIOThread():
        raise PilotError(
            "the blocking API cannot be used from the reactor thread; use pilotnet.driver.client",
            code=INTERNAL,
        )
    return reactor


def _run(reactor, what, timeout, function, *args, **kwargs):
    """Call ``function`` in the reactor thread and wait (at most ``timeout`` s) for its Deferred."""

    def start():
        result = defer.maybeDeferred(function, *args, **kwargs)
        if timeout is None:
            return result

        def timed_out(failure):
            failure.trap(defer.TimeoutError)
            raise PilotError(f"{what}: no answer within {timeout:g}s", code=TIMEOUT)

        return result.addTimeout(timeout, reactor).addErrback(timed_out)

    return blockingCallFromThread(reactor, start)


def connect(socket_path=None, timeout=DEFAULT_TIMEOUT):
    """Connect to the daemon (default socket: :func:`~pilotnet.driver.client.default_socket_path`).

    Raises ``not_running`` when no daemon listens there.
    """
    reactor = _running_reactor()
    handle = _run(reactor, "connecting to the daemon", timeout, client.connect, reactor, socket_path, timeout)
    return Daemon(handle, reactor, timeout)


class Daemon:
    """The blocking twin of :class:`pilotnet.driver.client.Daemon`; a context manager that closes itself."""

    def __init__(self, handle, reactor, timeout):
        self._handle = handle
        self._reactor = reactor
        self.timeout = timeout

    def _run(self, what, function, *args, timeout=None, **kwargs):
        return _run(self._reactor, what, self.timeout if timeout is None else timeout, function, *args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self._run("disconnecting", self._handle.close)

    def info(self):
        return self._run("info", self._handle.info)

    def peers(self):
        return self._run("peers", self._handle.peers)

    def connections(self):
        return self._run("connections", self._handle.connections)

    def resolve(self, target):
        return self._run(f"resolving {target!r}", self._handle.resolve, target)

    def resolve_hostname(self, hostname):
        return self._run(f"resolving {hostname!r}", self._handle.resolve_hostname, hostname)

    def lookup(self, node_id):
        return self._run(f"looking up node {node_id}", self._handle.lookup, node_id)

    def set_hostname(self, hostname):
        return self._run("set-hostname", self._handle.set_hostname, hostname)

    def set_visibility(self, public):
        return self._run("set-visibility", self._handle.set_visibility, public)

    def set_tags(self, tags):
        return self._run("set-tags", self._handle.set_tags, tags)

    def set_task_exec(self, enabled):
        return self._run("set-task-exec", self._handle.set_task_exec, enabled)

    def deregister(self):
        return self._run("deregister", self._handle.deregister)

    def handshake(self, target, justification=""):
        return self._run(f"handshake with {target}", self._handle.handshake, target, justification)

    def approve(self, node_id):
        return self._run(f"approving node {node_id}", self._handle.approve, node_id)

    def reject(self, node_id, reason=""):
        return self._run(f"rejecting node {node_id}", self._handle.reject, node_id, reason)

    def revoke(self, node_id):
        return self._run(f"revoking node {node_id}", self._handle.revoke, node_id)

    def pending(self):
        return self._run("pending", self._handle.pending)

    def trusted(self):
        return self._run("trusted", self._handle.trusted)

    def networks(self):
        return self._run("listing networks", self._handle.networks)

    def join_network(self, network_id, token=None):
        return self._run(f"joining network {network_id}", self._handle.join_network, network_id, token)

    def leave_network(self, network_id):
        return self._run(f"leaving network {network_id}", self._handle.leave_network, network_id)

    def network_members(self, network_id):
        return self._run(f"listing network {network_id}", self._handle.network_members, network_id)

    def invite_to_network(self, network_id, node_id):
        return self._run(f"inviting node {node_id} to network {network_id}", self._handle.invite_to_network,
                         network_id, node_id)

    def network_invites(self):
        return self._run("listing invites", self._handle.network_invites)

    def respond_to_invite(self, network_id, accept):
        return self._run(f"answering the invite to network {network_id}", self._handle.respond_to_invite,
                         network_id, accept)

    def managed_score(self, node_id, delta=1, topic="", network_id=0):
        return self._run(f"scoring node {node_id}", self._handle.managed_score, node_id, delta, topic, network_id)

    def managed_status(self, network_id=0):
        return self._run("reading the managed status", self._handle.managed_status, network_id)

    def managed_rankings(self, network_id=0):
        return self._run("reading the managed rankings", self._handle.managed_rankings, network_id)

    def managed_cycle(self, network_id=0):
        return self._run("running a managed cycle", self._handle.managed_cycle, network_id)

    def get_policy(self, network_id):
        return self._run(f"reading the policy of network {network_id}", self._handle.get_policy, network_id)

    def set_policy(self, network_id, document, admin_token=None):
        return self._run(f"setting the policy of network {network_id}", self._handle.set_policy, network_id,
                         document, admin_token)

    def member_tags(self, network_id, node_id=0):
        return self._run(f"reading member tags of network {network_id}", self._handle.member_tags, network_id,
                         node_id)

    def set_member_tags(self, network_id, node_id, tags, admin_token=None):
        return self._run(f"setting member tags in network {network_id}", self._handle.set_member_tags,
                         network_id, node_id, tags, admin_token)

    def close_connection(self, conn_id):
        return self._run(f"closing connection {conn_id}", self._handle.close_connection, conn_id)

    def event_stats(self):
        return self._run("event stats", self._handle.event_stats)

    def open_event_stream(self):
        """An :class:`EventStream`: publish and subscribe through this daemon's broker."""
        return EventStream(self._handle.open_event_stream(), self)

    def dial(self, target, port, timeout=None):
        """A :class:`Stream` to ``port`` on ``target``; ``timeout`` bounds the dial (default: the daemon's)."""
        wait = self.timeout if timeout is None else timeout
        stream = self._run(f"dialling {target} port {port}", self._handle.dial, target, port, timeout, timeout=wait)
        return Stream(stream, self)

    def listen(self, port):
        return Listener(self._run(f"binding port {port}", self._handle.listen, port), self)

    def send_datagram(self, target, port, data):
        return self._run(f"sending a datagram to {target} port {port}", self._handle.send_datagram,
                         target, port, data)


class Stream:
    """A blocking stream: ``write``, ``read``, ``read_exactly``, ``close``; iterates over chunks; a context manager."""

    def __init__(self, stream, daemon):
        self._stream = stream
        self._daemon = daemon
        self.conn_id = stream.conn_id
        self.local_port = stream.local_port
        self.remote_address = stream.remote_address
        self.remote_port = stream.remote_port

    def __repr__(self):
        return f"<blocking {self._stream!r}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __iter__(self):
        while True:
            data = self.read()
            if not data:
                return
            yield data

    def write(self, data, timeout=None):
        """Send ``data``; returns once all of it is on its way to the daemon (within the stream's write credit)."""
        self._daemon._run(f"writing to stream {self.conn_id}", self._stream.write, data, timeout=timeout)

    def read(self, max_bytes=None, timeout=None):
        """The next bytes available (``b""`` at the end); ``timeout=None`` waits as long as the stream lives."""
        return _run(self._daemon._reactor, f"reading stream {self.conn_id}", timeout, self._stream.read, max_bytes)

    def read_exactly(self, size, timeout=None):
        return _run(
            self._daemon._reactor, f"reading stream {self.conn_id}", timeout, self._stream.read_exactly, size
        )

    def close(self):
        self._daemon._run(f"closing stream {self.conn_id}", self._stream.close)

    def wait_closed(self, timeout=None):
        """Block until the stream is over; ``None`` if it ended cleanly, else the PilotError."""
        return _run(self._daemon._reactor, f"waiting for stream {self.conn_id}", timeout, lambda: self._stream.closed)


class Listener:
    """A blocking bound port: ``accept``, ``receive_datagram``, ``close``; iterates over accepted streams."""

    def __init__(self, listener, daemon):
        self._listener = listener
        self._daemon = daemon
        self.port = listener.port

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __iter__(self):
        while True:
            yield self.accept()

    def accept(self, timeout=None):
        stream = _run(self._daemon._reactor, f"accepting on port {self.port}", timeout, self._listener.accept)
        return Stream(stream, self._daemon)

    def receive_datagram(self, timeout=None):
        """The next :class:`~pilotnet.driver.client.Datagram` sent to this port."""
        return _run(
            self._daemon._reactor, f"receiving on port {self.port}", timeout, self._listener.receive_datagram
        )

    def close(self):
        self._daemon._run(f"closing port {self.port}", self._listener.close)


class EventStream:
    """Blocking publish/subscribe through the local daemon (see :class:`pilotnet.driver.client.EventStream`)."""

    def __init__(self, events, daemon):
        self._events = events
        self._daemon = daemon

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def publish(self, topic, data, wait=True):
        """Publish ``data`` (bytes or text) on ``topic``; returns how many subscribers it reached.

        That answer costs a round trip to the daemon per event.  With
        ``wait=False`` it returns ``None`` as soon as the SDK has room for the
        event (see :meth:`pilotnet.driver.client.EventStream.drain`), many
        times faster for a busy publisher: errors the SDK finds (a topic too
        long, an event too large) are still raised, while an event the daemon
        itself refuses is only logged.
        """
        if wait:
            return self._daemon._run(f"publishing on {topic!r}", self._events.publish, topic, data)
        return self._daemon._run(f"publishing on {topic!r}", self._publish_and_drain, topic, data)

    def _publish_and_drain(self, topic, data):
        publishing = self._events.publish(topic, data)
        if publishing.called:
            return publishing  # refused by the SDK itself: raise it
        publishing.addErrback(lambda failure: log.warn("event on {topic} refused: {reason}", topic=topic,
                                                       reason=failure.getErrorMessage()))
        return self._events.drain()

    def subscribe(self, pattern):
        """A :class:`Subscription`, returned once the daemon holds it; iterate it for events."""
        subscription = self._daemon._run(
            f"subscribing to {pattern!r}", lambda: self._events.subscribe(pattern).ready)
        return Subscription(subscription, self._daemon)

    def close(self):
        self._daemon._run("closing the event stream", self._events.close)


class Subscription:
    """Blocking events of one pattern: ``get(timeout)``, iteration until :meth:`close`, a context manager."""

    def __init__(self, subscription, daemon):
        self._subscription = subscription
        self._daemon = daemon
        self.pattern = subscription.pattern

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __iter__(self):
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def get(self, timeout=None):
        """The next :class:`~pilotnet.driver.client.Event` (``None`` once closed); ``timeout`` fails with ``timeout``."""
        return _run(self._daemon._reactor, f"waiting for events on {self.pattern!r}", timeout,
                    self._subscription.get)

    def close(self):
        self._daemon._run(f"unsubscribing from {self.pattern!r}", self._subscription.close)
