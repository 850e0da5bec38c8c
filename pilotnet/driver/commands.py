"""The local control protocol: AMP commands between the daemon and its clients.

Clients (``pilotctl``, the SDK) connect to the daemon's Unix socket and call
the commands below.  The daemon calls the *push* commands on the client:
accepted connections, received stream data, closed streams and datagrams.

Values are limited by AMP to 65,535 bytes each, so bulk data travels in chunks
of at most :data:`MAX_CHUNK` bytes.  Stream data flows without answers, under
credit in both directions, because an answer per chunk doubled the messages a
round trip on a stream costs: a client may have :data:`WRITE_CREDIT` bytes of
``Write`` that the daemon has not yet returned with a ``Written`` push (the
daemon returns them, :data:`CREDIT_BATCH` at a time, while the stream's send
buffer is below its high-water mark), and the daemon keeps the stream's receive
window consumed for ``Received`` data until the client returns it with
``Consumed`` (in batches, while the client has room).  Holding credit back is
how each side applies backpressure to the other.

Errors travel as :class:`CommandFailed`, whose AMP description is the JSON of
``{"code", "message", "hint"}``, so clients get the daemon's stable error code
back, not just text.
"""

import json

from twisted.protocols import amp

from pilotnet.errors import PilotError, INTERNAL

# Leave room for the AMP key and framing inside the 65,535-byte value limit.
MAX_CHUNK = 60 * 1024
#: Bytes of Write a client may send before the daemon credits them back.
WRITE_CREDIT = 2 * 1024 * 1024
#: Credit (Written, Consumed) is returned in batches of at least this many bytes.
CREDIT_BATCH = 128 * 1024


class JSON(amp.Argument):
    """A JSON document as one AMP value (so at most 64 KiB of JSON)."""

    def toString(self, value):
        return json.dumps(value, separators=(",", ":")).encode("utf-8")

    def fromString(self, data):
        return json.loads(data.decode("utf-8"))


class LongBytes(amp.Argument):
    """Bytes of any length, for events up to the 16 MiB the event framing allows.

    AMP caps one value at 65,535 bytes, so longer data continues under keys
    ``<name>.1``, ``<name>.2``, ... of the same box.  The first part travels
    under the plain name, so data that fits one value is sent exactly as
    ``amp.String`` sends it, and a peer from before this argument reads it.
    """

    def toBox(self, name, strings, objects, proto):
        data = objects[name.decode("ascii")]
        limit = amp.MAX_VALUE_LENGTH
        strings[name] = data[:limit]
        for part, start in enumerate(range(limit, len(data), limit), 1):
            strings[b"%s.%d" % (name, part)] = data[start:start + limit]

    def fromBox(self, name, strings, objects, proto):
        parts = [strings[name]]
        while (key := b"%s.%d" % (name, len(parts))) in strings:
            parts.append(strings[key])
        objects[name.decode("ascii")] = parts[0] if len(parts) == 1 else b"".join(parts)


class CommandFailed(PilotError):
    """A command the daemon refused, with the stable error code it gave.

    AMP carries a known error across as its class plus ``str(error)`` and
    rebuilds it on the other side from that one string.  So ``str()`` of a
    CommandFailed is the JSON of its fields, and the constructor accepts that
    JSON back: code and hint survive the trip.
    """

    def __init__(self, message, *, code=INTERNAL, hint=None):
        carried = _parse_description(message)
        if carried is not None:
            message, code, hint = carried
        super().__init__(message, code=code, hint=hint)

    @classmethod
    def from_error(cls, error):
        return cls(error.message, code=error.code, hint=error.hint)

    def __str__(self):
        return json.dumps({"code": self.code, "message": self.message, "hint": self.hint})


def _parse_description(text):
    if not (isinstance(text, str) and text.startswith("{")):
        return None
    try:
        fields = json.loads(text)
        return str(fields["message"]), str(fields["code"]), fields.get("hint")
    except (ValueError, KeyError, TypeError):
        return None


COMMAND_FAILED = b"PILOT_COMMAND_FAILED"
_ERRORS = {CommandFailed: COMMAND_FAILED}


class Command(amp.Command):
    """Base of every pilot command: errors come back as :class:`CommandFailed`."""

    errors = _ERRORS


class UnansweredFastPath:
    """Mixin for the AMP protocols at both ends: unanswered data commands skip generic dispatch.

    Stream data and its credit are most of the boxes on the control socket
    and need no answer, so the responder lookup, the Deferred and the error
    plumbing AMP builds around every command are pure cost for them.  Boxes
    of the commands in :attr:`fast_commands` (built by :func:`fast_path`) are
    parsed with the command's own argument types and handed straight to their
    method; everything else goes through AMP unchanged.
    """

    fast_commands = {}

    def ampBoxReceived(self, box):
        fast = self.fast_commands.get(box.get(amp.COMMAND))
        if fast is None or amp.ASK in box:
            super().ampBoxReceived(box)
            return
        command, method = fast
        getattr(self, method)(**command.parseArguments(box, self))


def fast_path(*pairs):
    """``fast_commands`` for :class:`UnansweredFastPath` from ``(Command, method name)`` pairs."""
    for command, _ in pairs:
        if command.requiresAnswer:
            raise TypeError(f"{command.__name__} is answered: it needs AMP's dispatch")
    return {command.commandName: (command, method) for command, method in pairs}


# -- the node ---------------------------------------------------------------

class Info(Command):
    """Node identity, counters, peers and connections (``pilotctl info``)."""

    arguments = []
    response = [(b"info", JSON())]


class Peers(Command):
    """The peers the tunnel knows, with their path (direct or relay) and crypto state."""

    arguments = []
    response = [(b"peers", JSON())]


class Connections(Command):
    """Every stream connection with the engine's counters."""

    arguments = []
    response = [(b"connections", JSON())]


# -- registry operations the daemon performs on the node's behalf -------------

class ResolveHostname(Command):
    arguments = [(b"hostname", amp.Unicode())]
    response = [(b"result", JSON())]


class Lookup(Command):
    arguments = [(b"node_id", amp.Integer())]
    response = [(b"result", JSON())]


class SetHostname(Command):
    """Set (or with ``""`` clear) the node's hostname; the daemon keeps it across re-registration."""

    arguments = [(b"hostname", amp.Unicode())]
    response = [(b"result", JSON())]


class SetVisibility(Command):
    arguments = [(b"public", amp.Boolean())]
    response = [(b"result", JSON())]


class SetTags(Command):
    arguments = [(b"tags", amp.ListOf(amp.Unicode()))]
    response = [(b"result", JSON())]


class SetTaskExec(Command):
    arguments = [(b"enabled", amp.Boolean())]
    response = [(b"result", JSON())]


class Deregister(Command):
    arguments = []
    response = [(b"result", JSON())]


# -- webhooks (docs/webhooks.md) ----------------------------------------------

class SetWebhook(Command):
    """POST the node's events to ``url``; ``result`` is the webhook's state (url, counters, secret_file)."""

    arguments = [(b"url", amp.Unicode())]
    response = [(b"result", JSON())]


class ClearWebhook(Command):
    arguments = []
    response = [(b"result", JSON())]


# -- trust (reference IPC 0x0F sub-commands) ---------------------------------

class Handshake(Command):
    """Ask ``node_id`` for mutual trust; ``{"status": "sent", "node_id"}``."""

    arguments = [(b"node_id", amp.Integer()), (b"justification", amp.Unicode())]
    response = [(b"result", JSON())]


class HandshakeByName(Command):
    """Ask the node holding ``hostname`` (a private node's name, which does not resolve) for trust.

    Relayed by the registry; ``{"status": "sent", "hostname", "path": "relay"}``.
    """

    arguments = [(b"hostname", amp.Unicode()), (b"justification", amp.Unicode())]
    response = [(b"result", JSON())]


class Approve(Command):
    arguments = [(b"node_id", amp.Integer())]
    response = [(b"result", JSON())]


class Reject(Command):
    arguments = [(b"node_id", amp.Integer()), (b"reason", amp.Unicode())]
    response = [(b"result", JSON())]


class Revoke(Command):
    """End trust in ``node_id`` at once (streams reset, tunnel dropped, peer told)."""

    arguments = [(b"node_id", amp.Integer())]
    response = [(b"result", JSON())]


class Pending(Command):
    """``{"pending": [{node_id, public_key, justification, received_at}]}``."""

    arguments = []
    response = [(b"result", JSON())]


class Trusted(Command):
    """``{"trusted": [{node_id, public_key, approved_at, mutual, network}]}``."""

    arguments = []
    response = [(b"result", JSON())]


# -- ports, streams and datagrams -------------------------------------------

class Bind(Command):
    """Listen on a virtual port: streams to it are accepted and its datagrams delivered to this client."""

    arguments = [(b"port", amp.Integer())]
    response = [(b"port", amp.Integer())]


class Unbind(Command):
    arguments = [(b"port", amp.Integer())]
    response = []


class Dial(Command):
    """Open a stream to ``address`` (``N:XXXX.XXXX.XXXX``) and ``port``."""

    arguments = [(b"address", amp.Unicode()), (b"port", amp.Integer()), (b"timeout", amp.Float(optional=True))]
    response = [
        (b"conn_id", amp.Integer()), (b"local_port", amp.Integer()),
        (b"remote_address", amp.Unicode()), (b"remote_port", amp.Integer()),
    ]


class Write(Command):
    """Queue ``data`` (at most :data:`MAX_CHUNK` bytes) on a stream; unanswered (see ``Written``).

    A write to a stream that has ended is dropped: the client hears of the
    end through ``StreamClosed``.
    """

    arguments = [(b"conn_id", amp.Integer()), (b"data", amp.String())]
    requiresAnswer = False


class Consumed(Command):
    """The client took ``size`` more bytes of ``Received`` data: the daemon reopens that much window."""

    arguments = [(b"conn_id", amp.Integer()), (b"size", amp.Integer())]
    requiresAnswer = False


class Close(Command):
    """Close a stream gracefully (FIN after the queued data)."""

    arguments = [(b"conn_id", amp.Integer())]
    response = []


class SendDatagram(Command):
    arguments = [(b"address", amp.Unicode()), (b"port", amp.Integer()), (b"data", amp.String())]
    response = []


# -- pushes: the daemon calls these on the client ---------------------------

class Accepted(Command):
    arguments = [
        (b"port", amp.Integer()), (b"conn_id", amp.Integer()),
        (b"remote_address", amp.Unicode()), (b"remote_port", amp.Integer()),
    ]
    response = []


class Received(Command):
    """Stream data for the client; unanswered (the client returns credit with ``Consumed``)."""

    arguments = [(b"conn_id", amp.Integer()), (b"data", amp.String())]
    requiresAnswer = False


class Written(Command):
    """The daemon took ``size`` more bytes of the client's writes: that much write credit is back."""

    arguments = [(b"conn_id", amp.Integer()), (b"size", amp.Integer())]
    requiresAnswer = False


class StreamClosed(Command):
    """The stream ended: ``code`` is empty for a clean close by the peer, else the error code."""

    arguments = [
        (b"conn_id", amp.Integer()), (b"code", amp.Unicode()), (b"message", amp.Unicode()),
    ]
    response = []


class DatagramReceived(Command):
    arguments = [
        (b"src_address", amp.Unicode()), (b"src_port", amp.Integer()),
        (b"dst_port", amp.Integer()), (b"data", amp.String()),
    ]
    response = []


# -- local publish/subscribe through this daemon's event broker ---------------
#
# An agent talks only to its own daemon: the daemon's broker delivers to local
# subscribers and federates with trusted peers' brokers (see
# pilotnet.services.federation), so no broker needs to be deployed anywhere.

class Subscribe(Command):
    """Subscribe this client to ``pattern`` (documented wildcards); returns the subscription's id.

    Matching events arrive as :class:`EventReceived` pushes until
    :class:`Unsubscribe` or the client disconnects.
    """

    arguments = [(b"pattern", amp.Unicode())]
    response = [(b"subscription", amp.Integer())]


class Unsubscribe(Command):
    arguments = [(b"subscription", amp.Integer())]
    response = []


class Publish(Command):
    """Publish one event (payload at most :data:`MAX_CHUNK` bytes); never delivered back to this client.

    The SDK publishes with :class:`PublishBatch`; this stays for clients from
    before it, and is how the SDK publishes to a daemon from before it.
    """

    arguments = [(b"topic", amp.Unicode()), (b"payload", amp.String())]
    response = [(b"delivered", amp.Integer())]


class EventReceived(Command):
    """Push: an event for one of the client's subscriptions (from daemons before :class:`EventsReceived`).

    Answered when the client has taken it; until then the event's bytes count
    against that subscription's bounded queue in the broker, where overflow
    drops events for this subscriber only.
    """

    arguments = [(b"subscription", amp.Integer()), (b"topic", amp.Unicode()), (b"payload", amp.String())]
    response = []


class EventStats(Command):
    """The broker's counters: ``{published, subscribers: [{pattern, subscriber, delivered, dropped, queued_bytes}]}``.

    Remote subscriptions (peers' daemons and port-1002 clients) appear as
    ``stream <conn>``, this daemon's clients as ``local subscription <id>``.
    """

    arguments = []
    response = [(b"stats", JSON())]


class PublishBatch(Command):
    """Publish several events in order, in one round trip instead of one each.

    ``events`` is the events' port-1002 wire framing
    (:func:`pilotnet.wire.eventstream.encode_event`) back to back: the SDK
    sends at most :data:`MAX_CHUNK` bytes of them, or one larger event (up to
    the framing's 16 MiB) alone.  ``results`` holds one entry per event, in
    order: the number of subscribers it reached, or the ``{code, message,
    hint}`` of the error that refused that event alone (the others are still
    published), so batching loses no error reporting.
    """

    arguments = [(b"events", LongBytes())]
    response = [(b"results", JSON())]


class EventsReceived(Command):
    """Push: events for one subscription, in order (framed and sized as in :class:`PublishBatch`).

    The daemon coalesces what its broker handed a subscription in one reactor
    iteration, so a burst costs one push rather than one per event; it sends
    every event this way.  Answered, like :class:`EventReceived`, when the
    client has room for them: until then their bytes count against the
    subscription's bounded queue.
    """

    arguments = [(b"subscription", amp.Integer()), (b"events", LongBytes())]
    response = []
