"""Every control-socket command as plain data: its name, its arguments, its answer, their encodings.

The control socket speaks AMP (``twisted.protocols.amp``): a box is a list of
key/value byte strings, each value at most :data:`MAX_VALUE` bytes.  The
value types below say how a Python value becomes those bytes and back, in
the encodings AMP's own ``Integer``, ``Float``, ``Boolean``, ``String``,
``Unicode`` and ``ListOf(Unicode())`` use, so the wire is what it always was.
:class:`LongBytes` and :class:`JSON` may exceed one value: they continue
under keys ``<name>.1``, ``<name>.2``... of the same box (the first part keeps
the plain name, so a short value is sent exactly as one AMP value).  That is
what lets ``Info`` and ``Connections`` answer with thousands of connections.

:mod:`pilotnet.control.commands` turns each :class:`CommandSpec` into an AMP
``Command`` class for the daemon and the Twisted SDK, and
:mod:`pilotnet.control.client` uses the same specs to encode and decode boxes
without Twisted.

Clients (``pilotctl``, the SDK) call the commands; the daemon calls the
*push* commands on the client: accepted connections, received stream data,
closed streams, datagrams and events.

Bulk data travels in chunks of at most :data:`MAX_CHUNK` bytes.  Stream data
flows without answers, under credit in both directions, because an answer
per chunk doubled the messages a round trip on a stream costs: a client may
have :data:`WRITE_CREDIT` bytes of ``Write`` that the daemon has not yet
returned with a ``Written`` push (the daemon returns them,
:data:`CREDIT_BATCH` at a time, while the stream's send buffer is below its
high-water mark), and the daemon keeps the stream's receive window consumed
for ``Received`` data until the client returns it with ``Consumed``.
Holding credit back is how each side applies backpressure to the other.

That AMP path is the fallback.  A client on the Unix socket gives each
stream a *data socket* instead (``AttachSocket``): one end of a socketpair it
made, passed as a descriptor.  From then on the stream's bytes go raw over
that socket both ways, with no boxes, and the kernel's socket buffers plus
Twisted's producers are the backpressure; the end of the client's writes is
its half-close of the socket (the stream's FIN).  How the stream ended still
comes as ``StreamClosed``, so a client ends a stream once it has that and the
socket's end of data.

Errors travel as :class:`CommandFailed`, whose AMP description is the JSON of
``{"code", "message", "hint"}``, so clients get the daemon's stable error
code back, not just text.
"""

from __future__ import annotations

import math
import struct

from pilotnet.errors import INTERNAL, INVALID_ARGUMENT, NOT_RUNNING, PilotError
from pilotnet.wire import cjson

# pilotctl imports this module for every command, and importing ``typing`` costs it about 5 ms:
# the type machinery exists for the type checker only (``Value[int]`` is ``Value`` at run time).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Generic, TypeVar, overload

    T = TypeVar("T")

    class Parametrised(Generic[T]):
        """A class generic in the Python type its values have."""
else:
    T = None

    class Parametrised:
        def __class_getitem__(cls, item):
            return cls

#: AMP's limit on one value (and on a key: :data:`MAX_KEY`).
MAX_VALUE = 0xFFFF
MAX_KEY = 0xFF
#: Leave room for the AMP key and framing inside the 65,535-byte value limit.
MAX_CHUNK = 60 * 1024
#: Bytes of Write a client may send before the daemon credits them back.
WRITE_CREDIT = 2 * 1024 * 1024
#: Credit (Written, Consumed) is returned in batches of at least this many bytes.
CREDIT_BATCH = 128 * 1024
#: The largest request box the daemon accepts: a 16 MiB event (the event framing's limit) plus its framing.
MAX_BOX = 17 * 1024 * 1024
#: The largest box the blocking client accepts: ``Connections`` of the most streams a daemon allows
#: (65,536 by default, about 500 bytes of JSON each) fits with room to spare.
MAX_ANSWER = 256 * 1024 * 1024
#: The AMP error code of :class:`CommandFailed`.
COMMAND_FAILED = b"PILOT_COMMAND_FAILED"

_LIST_ITEM = struct.Struct("!H")

class Value(Parametrised[T]):
    """How one argument travels: :meth:`encode` to bytes and :meth:`decode` back.

    ``T`` is the Python type it encodes and decodes.

    :meth:`put` and :meth:`take` move it in and out of a box (a dict of bytes
    keys to bytes values); an ``optional`` value may be absent (``None``).
    ``put`` takes ``Any``: its values come from the caller's keyword arguments,
    which no type ties to the command's spec.
    """

    def __init__(self, optional: bool = False) -> None:
        self.optional = optional

    def encode(self, value: T) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> T:
        raise NotImplementedError

    def put(self, key: bytes, value: Any, box: dict) -> None:
        if value is None and self.optional:
            return
        box[key] = self.encode(value)

    def take(self, key: bytes, box: dict) -> T | None:
        if key not in box and self.optional:
            return None
        return self.decode(box[key])


class Integer(Value[int]):
    def encode(self, value: int) -> bytes:
        return b"%d" % (value,)

    def decode(self, data: bytes) -> int:
        return int(data)


class Float(Value[float]):
    """As AMP's ``Float``: ``str()`` of the float, so ``nan`` and ``inf`` travel (and are refused by the daemon)."""

    def encode(self, value: float) -> bytes:
        return str(float(value)).encode("ascii")

    def decode(self, data: bytes) -> float:
        return float(data)


class Boolean(Value[bool]):
    def encode(self, value: bool) -> bytes:
        return b"True" if value else b"False"

    def decode(self, data: bytes) -> bool:
        if data == b"True":
            return True
        if data == b"False":
            return False
        raise ValueError(f"not a boolean: {data[:16]!r}")


class Bytes(Value[bytes]):
    """Bytes in one AMP value (at most :data:`MAX_VALUE`)."""

    def encode(self, value: bytes) -> bytes:
        return bytes(value)

    def decode(self, data: bytes) -> bytes:
        return data


class Descriptor(Value[int]):
    """A file descriptor passed beside the box (``SCM_RIGHTS`` on the Unix socket), as AMP's ``Descriptor``.

    The box carries only the descriptor's ordinal on the connection; the
    AMP layer (:mod:`pilotnet.control.commands`) sends and claims the
    descriptor itself, so the blocking client, which has no use for it,
    cannot send one.
    """


class Text(Value[str]):
    def encode(self, value: str) -> bytes:
        return value.encode("utf-8")

    def decode(self, data: bytes) -> str:
        return data.decode("utf-8")


class TextList(Value[list]):
    """A list of strings, each behind a 2-byte big-endian length (AMP's ``ListOf(Unicode())``)."""

    def encode(self, value: list) -> bytes:
        parts = []
        for item in value:
            encoded = item.encode("utf-8")
            parts += [_LIST_ITEM.pack(len(encoded)), encoded]
        return b"".join(parts)

    def decode(self, data: bytes) -> list:
        items, offset = [], 0
        while offset < len(data):
            if offset + 2 > len(data):
                raise ValueError("truncated list")
            (size,) = _LIST_ITEM.unpack_from(data, offset)
            offset += 2
            if offset + size > len(data):
                raise ValueError("truncated list item")
            items.append(data[offset:offset + size].decode("utf-8"))
            offset += size
        return items


class Chunked(Value[T]):
    """A value of any length: parts of :data:`MAX_VALUE` bytes under ``<name>``, ``<name>.1``, ``<name>.2``..."""

    def put(self, key: bytes, value: Any, box: dict) -> None:
        if value is None and self.optional:
            return
        data = self.encode(value)
        box[key] = data[:MAX_VALUE]
        for part, start in enumerate(range(MAX_VALUE, len(data), MAX_VALUE), 1):
            box[b"%s.%d" % (key, part)] = data[start:start + MAX_VALUE]

    def take(self, key: bytes, box: dict) -> T | None:
        if key not in box and self.optional:
            return None
        parts = [box[key]]
        while (continued := b"%s.%d" % (key, len(parts))) in box:
            parts.append(box[continued])
        return self.decode(parts[0] if len(parts) == 1 else b"".join(parts))


class LongBytes(Chunked[bytes], Bytes):
    """Bytes of any length (split like every :class:`Chunked` value)."""


class JSON(Chunked[object]):
    """A JSON document of any length (split like every :class:`Chunked` value)."""

    def encode(self, value: object) -> bytes:
        return cjson.dumps(value, separators=(",", ":")).encode("utf-8")

    def decode(self, data: bytes) -> object:
        return cjson.loads(data.decode("utf-8"))


class CommandFailed(PilotError):
    """A command the daemon refused, with the stable error code it gave.

    AMP carries a known error across as its code plus ``str(error)`` and
    rebuilds it on the other side from that one string.  So ``str()`` of a
    CommandFailed is the JSON of its fields, and the constructor accepts that
    JSON back: code and hint survive the trip.
    """

    def __init__(self, message: str, *, code: str = INTERNAL, hint: str | None = None) -> None:
        carried = _parse_description(message)
        if carried is not None:
            message, code, hint = carried
        super().__init__(message, code=code, hint=hint)

    @classmethod
    def from_error(cls, error: PilotError) -> CommandFailed:
        return cls(error.message, code=error.code, hint=error.hint)

    def __str__(self) -> str:
        return cjson.dumps({"code": self.code, "message": self.message, "hint": self.hint})


def _parse_description(text: object) -> tuple | None:
    if not (isinstance(text, str) and text.startswith("{")):
        return None
    try:
        fields = cjson.loads(text)
        return str(fields["message"]), str(fields["code"]), fields.get("hint")
    except (ValueError, KeyError, TypeError):
        return None


def not_running_error() -> PilotError:
    """The error for a daemon that cannot be reached (the reference's wording)."""
    return PilotError("daemon is not running", code=NOT_RUNNING, hint="start the daemon with: pilotctl daemon start")


if TYPE_CHECKING:
    @overload
    def check_timeout(seconds: float) -> float: ...

    @overload
    def check_timeout(seconds: None) -> None: ...


def check_timeout(seconds: float | None) -> float | None:
    """``seconds`` if it is a usable timeout (finite, above 0) or ``None``; ``invalid_argument`` otherwise."""
    if seconds is None:
        return None
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds) \
            or seconds <= 0:
        raise PilotError(f"invalid timeout {seconds!r}: expected a finite number of seconds above 0",
                         code=INVALID_ARGUMENT)
    return float(seconds)


class CommandSpec:
    """One command: its AMP name, argument and answer values, and whether it is answered at all.

    (A plain class rather than a dataclass: ``dataclasses`` imports
    ``inspect``, which alone costs ``pilotctl`` more than a whole command.)
    """

    __slots__ = ("name", "arguments", "response", "answered", "doc")

    def __init__(self, name: str, arguments: tuple, response: tuple = (), answered: bool = True,
                 doc: str = "") -> None:
        self.name = name
        self.arguments = arguments
        self.response = response
        self.answered = answered
        self.doc = doc

    def __repr__(self) -> str:
        return f"<CommandSpec {self.name}>"

    def encode_arguments(self, values: dict, box: dict) -> None:
        for key, value in self.arguments:
            value.put(key.encode("ascii"), values.get(key), box)

    def decode_arguments(self, box: dict) -> dict:
        return {key: value.take(key.encode("ascii"), box) for key, value in self.arguments}

    def decode_response(self, box: dict) -> dict:
        return {key: value.take(key.encode("ascii"), box) for key, value in self.response}


def _spec(name: str, arguments=(), response=(), answered: bool = True, doc: str = "") -> CommandSpec:
    return CommandSpec(name, tuple(arguments), tuple(response), answered, doc)


# -- the node ---------------------------------------------------------------------

INFO = _spec("Info", response=[("info", JSON())], doc="Node identity, counters, peers and connections (``pilotctl info``).")
PEERS = _spec("Peers", response=[("peers", JSON())],
              doc="The peers the tunnel knows, with their path (direct or relay) and crypto state.")
CONNECTIONS = _spec("Connections", response=[("connections", JSON())],
                    doc="Every stream connection with the engine's counters.")

# -- registry operations the daemon performs on the node's behalf -------------------

RESOLVE_HOSTNAME = _spec("ResolveHostname", [("hostname", Text())], [("result", JSON())])
LOOKUP = _spec("Lookup", [("node_id", Integer())], [("result", JSON())])
SET_HOSTNAME = _spec("SetHostname", [("hostname", Text())], [("result", JSON())],
                     doc='Set (or with ``""`` clear) the hostname; the daemon keeps it across re-registration.')
SET_VISIBILITY = _spec("SetVisibility", [("public", Boolean())], [("result", JSON())])
SET_TAGS = _spec("SetTags", [("tags", TextList())], [("result", JSON())])
SET_TASK_EXEC = _spec("SetTaskExec", [("enabled", Boolean())], [("result", JSON())])
DEREGISTER = _spec("Deregister", response=[("result", JSON())])

# -- webhooks (docs/webhooks.md) ---------------------------------------------------

SET_WEBHOOK = _spec("SetWebhook", [("url", Text())], [("result", JSON())],
                    doc="POST the node's events to ``url``; ``result`` is the webhook's state (url, counters, secret_file).")
CLEAR_WEBHOOK = _spec("ClearWebhook", response=[("result", JSON())])

# -- trust (reference IPC 0x0F sub-commands) ---------------------------------------

HANDSHAKE = _spec("Handshake", [("node_id", Integer()), ("justification", Text())], [("result", JSON())],
                  doc='Ask ``node_id`` for mutual trust; ``{"status": "sent", "node_id"}``.')
HANDSHAKE_BY_NAME = _spec(
    "HandshakeByName", [("hostname", Text()), ("justification", Text())], [("result", JSON())],
    doc="Ask the node holding ``hostname`` (a private node's name, which does not resolve) for trust, "
        'relayed by the registry; ``{"status": "sent", "hostname", "path": "relay"}``.')
APPROVE = _spec("Approve", [("node_id", Integer())], [("result", JSON())])
REJECT = _spec("Reject", [("node_id", Integer()), ("reason", Text())], [("result", JSON())])
REVOKE = _spec("Revoke", [("node_id", Integer())], [("result", JSON())],
               doc="End trust in ``node_id`` at once (streams reset, tunnel dropped, peer told).")
PENDING = _spec("Pending", response=[("result", JSON())],
                doc='``{"pending": [{node_id, public_key, justification, received_at}]}``.')
TRUSTED = _spec("Trusted", response=[("result", JSON())],
                doc='``{"trusted": [{node_id, public_key, approved_at, mutual, network}]}``.')

# -- managed networks, expression policies, member tags (reference IPC 0x23; docs/networks.md) ---------

MANAGED_SCORE = _spec("ManagedScore", [("network_id", Integer()), ("node_id", Integer()), ("delta", Integer()),
                                       ("topic", Text())], [("result", JSON())],
                      doc="Add ``delta`` to a managed peer's score (network 0: the first managed network).")
MANAGED_STATUS = _spec("ManagedStatus", [("network_id", Integer())], [("result", JSON())],
                       doc="A managed network's rules, peer count and cycle number.")
MANAGED_RANKINGS = _spec("ManagedRankings", [("network_id", Integer())], [("result", JSON())],
                         doc='``{"network_id", "rankings": [{rank, node_id, score, added_at, last_seen, topics}]}``.')
MANAGED_CYCLE = _spec("ManagedCycle", [("network_id", Integer())], [("result", JSON())],
                      doc="Run a prune/fill cycle now: ``{network_id, pruned, filled, peers, cycle_num}``.")
POLICY_GET = _spec("PolicyGet", [("network_id", Integer())], [("result", JSON())],
                   doc="The network's expression policy, from the registry (``get_expr_policy``).")
POLICY_SET = _spec("PolicySet", [("network_id", Integer()), ("policy", Text()), ("admin_token", Text(optional=True))],
                   [("result", JSON())],
                   doc="Store a policy document at the registry and apply it (``\"\"`` clears); the registry "
                       "takes the admin token, or this node's signature from an owner or admin.")
MEMBER_TAGS_GET = _spec("MemberTagsGet", [("network_id", Integer()), ("node_id", Integer())], [("result", JSON())],
                        doc="A member's admin-assigned tags, or every member's with node 0.")
MEMBER_TAGS_SET = _spec("MemberTagsSet", [("network_id", Integer()), ("node_id", Integer()), ("tags", TextList()),
                                         ("admin_token", Text(optional=True))], [("result", JSON())],
                        doc="Set a member's tags (with the admin token, or as this node: an owner or admin).")
NETWORK_POLICY_COMMANDS = (MANAGED_SCORE, MANAGED_STATUS, MANAGED_RANKINGS, MANAGED_CYCLE, POLICY_GET, POLICY_SET,
                           MEMBER_TAGS_GET, MEMBER_TAGS_SET)

# -- networks (reference IPC 0x1F sub-commands; docs/networks.md) --------------------

NETWORK_LIST = _spec("NetworkList", response=[("result", JSON())],
                     doc="The registry's ``list_networks`` reply: every network, not only ours.")
NETWORK_JOIN = _spec("NetworkJoin", [("network_id", Integer()), ("token", Text(optional=True))],
                     [("result", JSON())], doc="Join a network (``token`` for a token network); "
                                               "``join_network_ok`` with our ``address`` on it.")
NETWORK_LEAVE = _spec("NetworkLeave", [("network_id", Integer())], [("result", JSON())],
                      doc="Leave a network: its members lose the trust it gave them at once.")
NETWORK_MEMBERS = _spec("NetworkMembers", [("network_id", Integer())], [("result", JSON())],
                        doc="The registry's ``list_nodes`` reply for the network.")
NETWORK_INVITE = _spec("NetworkInvite", [("network_id", Integer()), ("node_id", Integer())], [("result", JSON())],
                       doc="Invite ``node_id`` to an invite-only network (we must be its owner or an admin).")
NETWORK_INVITES = _spec("NetworkInvites", response=[("result", JSON())],
                        doc='Invitations waiting for us: ``{"invites": [{network_id, inviter_id, timestamp}]}``.')
NETWORK_RESPOND_INVITE = _spec("NetworkRespondInvite", [("network_id", Integer()), ("accept", Boolean())],
                               [("result", JSON())], doc="Accept (join) or reject an invitation.")

# -- ports, streams and datagrams -------------------------------------------------

BIND = _spec("Bind", [("port", Integer())], [("port", Integer())],
             doc="Listen on a virtual port: its streams are accepted and its datagrams delivered to this client.")
UNBIND = _spec("Unbind", [("port", Integer())])
DIAL = _spec(
    "Dial", [("address", Text()), ("port", Integer()), ("timeout", Float(optional=True)),
             ("data_socket", Descriptor(optional=True))],
    [("conn_id", Integer()), ("local_port", Integer()), ("remote_address", Text()), ("remote_port", Integer()),
     ("attached", Boolean(optional=True))],
    doc="Open a stream to ``address`` (``N:XXXX.XXXX.XXXX``) and ``port``; ``timeout`` seconds, finite and positive. "
        "A ``data_socket`` is attached to the new stream as ``AttachSocket`` would (``attached``), which saves "
        "that round trip before the first write.",
)
WRITE = _spec("Write", [("conn_id", Integer()), ("data", Bytes())], answered=False,
              doc="Queue ``data`` (at most MAX_CHUNK bytes) on a stream; unanswered (see ``Written``).")
CONSUMED = _spec("Consumed", [("conn_id", Integer()), ("size", Integer())], answered=False,
                 doc="The client took ``size`` more bytes of ``Received`` data: the daemon reopens that much window.")
ATTACH_SOCKET = _spec(
    "AttachSocket", [("conn_id", Integer()), ("data_socket", Descriptor())],
    doc="Carry stream ``conn_id``'s data over ``data_socket`` (a connected Unix stream socket) from now on, "
        "raw both ways; answered once the daemon reads it.")
CLOSE = _spec("Close", [("conn_id", Integer())], doc="Close a stream gracefully (FIN after the queued data).")
SEND_DATAGRAM = _spec(
    "SendDatagram", [("address", Text()), ("port", Integer()), ("data", Bytes())],
    [("sent", Integer(optional=True)), ("unreachable", Integer(optional=True))],
    doc="Send one datagram; to ``N:NNNN.FFFF.FFFF``, one copy to every other member of network N "
        "(docs/networks.md#broadcast). ``sent``: datagrams handed to the tunnel; ``unreachable``: members "
        "whose copy could not be sent.",
)

# -- pushes: the daemon calls these on the client -----------------------------------

ACCEPTED = _spec("Accepted", [("port", Integer()), ("conn_id", Integer()), ("remote_address", Text()),
                              ("remote_port", Integer())])
RECEIVED = _spec("Received", [("conn_id", Integer()), ("data", Bytes())], answered=False,
                 doc="Stream data for the client; unanswered (the client returns credit with ``Consumed``).")
WRITTEN = _spec("Written", [("conn_id", Integer()), ("size", Integer())], answered=False,
                doc="The daemon took ``size`` more bytes of the client's writes: that much write credit is back.")
STREAM_CLOSED = _spec("StreamClosed", [("conn_id", Integer()), ("code", Text()), ("message", Text())],
                      doc="The stream ended: ``code`` is empty for a clean close by the peer, else the error code.")
DATAGRAM_RECEIVED = _spec("DatagramReceived", [("src_address", Text()), ("src_port", Integer()),
                                               ("dst_port", Integer()), ("data", Bytes())])

# -- local publish/subscribe through this daemon's event broker ----------------------

SUBSCRIBE = _spec("Subscribe", [("pattern", Text())], [("subscription", Integer())],
                  doc="Subscribe this client to ``pattern``; matching events arrive as EventsReceived pushes.")
UNSUBSCRIBE = _spec("Unsubscribe", [("subscription", Integer())])
PUBLISH = _spec("Publish", [("topic", Text()), ("payload", Bytes())], [("delivered", Integer())],
                doc="Publish one event; ``delivered`` is how many subscribers (local and trusted peers') it reached.")
EVENT_RECEIVED = _spec("EventReceived", [("subscription", Integer()), ("topic", Text()), ("payload", Bytes())],
                       doc="Push: one event (from daemons before EventsReceived).")
EVENT_STATS = _spec("EventStats", response=[("stats", JSON())],
                    doc="The broker's counters: ``{published, subscribers: [{pattern, subscriber, delivered, ...}]}``.")
PUBLISH_BATCH = _spec(
    "PublishBatch", [("events", LongBytes())], [("results", JSON())],
    doc="Publish several events (their port-1002 framing back to back) in order; one result per event: "
        "the number of subscribers it reached, or the ``{code, message, hint}`` that refused it.",
)
EVENTS_RECEIVED = _spec("EventsReceived", [("subscription", Integer()), ("events", LongBytes())],
                        doc="Push: events for one subscription, framed as in PublishBatch; answered when taken.")

# -- the gateway's own control socket (pilotnet.gateway.control) --------------------

GATEWAY_MAP = _spec("Map", [("target", Text()), ("ip", Text(optional=True))], [("mapping", JSON())],
                    doc="Map ``target`` (address, node ID or hostname), at ``ip`` or the next free IP.")
GATEWAY_UNMAP = _spec("Unmap", [("ip", Text())], [("mapping", JSON())])
GATEWAY_STATUS = _spec("Status", response=[("status", JSON())],
                       doc="``pid, subnet, ports, mappings`` (and ``dns`` when the DNS front runs).")
GATEWAY_COMMANDS = (GATEWAY_MAP, GATEWAY_UNMAP, GATEWAY_STATUS)

COMMANDS = (
    INFO, PEERS, CONNECTIONS, RESOLVE_HOSTNAME, LOOKUP, SET_HOSTNAME, SET_VISIBILITY, SET_TAGS, SET_TASK_EXEC,
    DEREGISTER, SET_WEBHOOK, CLEAR_WEBHOOK, HANDSHAKE, HANDSHAKE_BY_NAME, APPROVE, REJECT, REVOKE, PENDING, TRUSTED,
    NETWORK_LIST, NETWORK_JOIN, NETWORK_LEAVE, NETWORK_MEMBERS, NETWORK_INVITE, NETWORK_INVITES,
    NETWORK_RESPOND_INVITE, BIND, UNBIND, DIAL, WRITE, CONSUMED, ATTACH_SOCKET, CLOSE,
    SEND_DATAGRAM, ACCEPTED, RECEIVED, WRITTEN, STREAM_CLOSED, DATAGRAM_RECEIVED, SUBSCRIBE, UNSUBSCRIBE, PUBLISH,
    EVENT_RECEIVED, EVENT_STATS, PUBLISH_BATCH, EVENTS_RECEIVED, *NETWORK_POLICY_COMMANDS,
)
