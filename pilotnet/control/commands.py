"""The AMP ``Command`` classes of the control socket, generated from :mod:`pilotnet.control.schema`.

The daemon's control server and the Twisted SDK use these; ``pilotctl``'s
blocking client (:mod:`pilotnet.control.client`) uses the schema directly.
Every argument is a :class:`SchemaArgument`, which hands the encoding to the
schema's value type, so AMP and the blocking client put the same bytes in
the same keys by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.protocols import amp

from pilotnet.control import schema
from pilotnet.control.schema import (  # noqa: F401  (re-exported: the names clients use)
    COMMAND_FAILED, CREDIT_BATCH, MAX_CHUNK, WRITE_CREDIT, CommandFailed, CommandSpec,
)


class SchemaArgument(amp.Argument):
    """An AMP argument whose bytes are whatever its :class:`~pilotnet.control.schema.Value` says."""

    def __init__(self, value: schema.Value) -> None:
        super().__init__(optional=value.optional)
        self.value = value

    def toBox(self, name, strings, objects, proto):
        self.value.put(name, self.retrieve(objects, name.decode("ascii"), proto), strings)

    def fromBox(self, name, strings, objects, proto):
        objects[name.decode("ascii")] = self.value.take(name, strings)


class Command(amp.Command):
    """Base of every pilot command: errors come back as :class:`CommandFailed`."""

    errors = {CommandFailed: COMMAND_FAILED}


def command_class(spec: CommandSpec) -> type[Command]:
    """The AMP Command class for ``spec`` (named like it, so its ``commandName`` is the spec's name)."""

    def arguments(pairs: Iterable[tuple[str, schema.Value[Any]]]) -> list[tuple[bytes, amp.Argument]]:
        return [(key.encode("ascii"), SchemaArgument(value)) for key, value in pairs]

    attributes = {
        "__doc__": spec.doc or None, "__module__": __name__, "spec": spec,
        "arguments": arguments(spec.arguments), "response": arguments(spec.response),
        "requiresAnswer": spec.answered,
    }
    # The class is made by AMP's metaclass (as a class statement would), which
    # mypy only knows as type[type[Command]]: a callable making Command classes.
    make_class: Callable[..., type[Command]] = type(Command)
    return make_class(spec.name, (Command,), attributes)


Info = command_class(schema.INFO)
Peers = command_class(schema.PEERS)
Connections = command_class(schema.CONNECTIONS)
ResolveHostname = command_class(schema.RESOLVE_HOSTNAME)
Lookup = command_class(schema.LOOKUP)
SetHostname = command_class(schema.SET_HOSTNAME)
SetVisibility = command_class(schema.SET_VISIBILITY)
SetTags = command_class(schema.SET_TAGS)
SetTaskExec = command_class(schema.SET_TASK_EXEC)
Deregister = command_class(schema.DEREGISTER)
SetWebhook = command_class(schema.SET_WEBHOOK)
ClearWebhook = command_class(schema.CLEAR_WEBHOOK)
Handshake = command_class(schema.HANDSHAKE)
HandshakeByName = command_class(schema.HANDSHAKE_BY_NAME)
Approve = command_class(schema.APPROVE)
Reject = command_class(schema.REJECT)
Revoke = command_class(schema.REVOKE)
Pending = command_class(schema.PENDING)
Trusted = command_class(schema.TRUSTED)
NetworkList = command_class(schema.NETWORK_LIST)
NetworkJoin = command_class(schema.NETWORK_JOIN)
NetworkLeave = command_class(schema.NETWORK_LEAVE)
NetworkMembers = command_class(schema.NETWORK_MEMBERS)
NetworkInvite = command_class(schema.NETWORK_INVITE)
NetworkInvites = command_class(schema.NETWORK_INVITES)
NetworkRespondInvite = command_class(schema.NETWORK_RESPOND_INVITE)
Bind = command_class(schema.BIND)
Unbind = command_class(schema.UNBIND)
Dial = command_class(schema.DIAL)
Write = command_class(schema.WRITE)
Consumed = command_class(schema.CONSUMED)
Close = command_class(schema.CLOSE)
SendDatagram = command_class(schema.SEND_DATAGRAM)
Accepted = command_class(schema.ACCEPTED)
Received = command_class(schema.RECEIVED)
Written = command_class(schema.WRITTEN)
StreamClosed = command_class(schema.STREAM_CLOSED)
DatagramReceived = command_class(schema.DATAGRAM_RECEIVED)
Subscribe = command_class(schema.SUBSCRIBE)
Unsubscribe = command_class(schema.UNSUBSCRIBE)
Publish = command_class(schema.PUBLISH)
EventReceived = command_class(schema.EVENT_RECEIVED)
EventStats = command_class(schema.EVENT_STATS)
PublishBatch = command_class(schema.PUBLISH_BATCH)
EventsReceived = command_class(schema.EVENTS_RECEIVED)
ManagedScore = command_class(schema.MANAGED_SCORE)
ManagedStatus = command_class(schema.MANAGED_STATUS)
ManagedRankings = command_class(schema.MANAGED_RANKINGS)
ManagedCycle = command_class(schema.MANAGED_CYCLE)
PolicyGet = command_class(schema.POLICY_GET)
PolicySet = command_class(schema.POLICY_SET)
MemberTagsGet = command_class(schema.MEMBER_TAGS_GET)
MemberTagsSet = command_class(schema.MEMBER_TAGS_SET)

#: Every Command class, in the schema's order.
ALL = tuple(globals()[spec.name] for spec in schema.COMMANDS)


class UnansweredFastPath:
    """Mixin for the AMP protocols at both ends: unanswered data commands skip generic dispatch.

    Stream data and its credit are most of the boxes on the control socket
    and need no answer, so the responder lookup, the Deferred and the error
    plumbing AMP builds around every command are pure cost for them.  Boxes
    of the commands in :attr:`fast_commands` (built by :func:`fast_path`) are
    parsed with the command's own argument types and handed straight to their
    method; everything else goes through AMP unchanged.
    """

    fast_commands: dict = {}

    def ampBoxReceived(self, box):
        fast = self.fast_commands.get(box.get(amp.COMMAND))
        if fast is None or amp.ASK in box:
            super().ampBoxReceived(box)
            return
        command, method = fast
        getattr(self, method)(**command.parseArguments(box, self))


def fast_path(*pairs) -> dict:
    """``fast_commands`` for :class:`UnansweredFastPath` from ``(Command, method name)`` pairs."""
    for command, _ in pairs:
        if command.requiresAnswer:
            raise TypeError(f"{command.__name__} is answered: it needs AMP's dispatch")
    return {command.commandName: (command, method) for command, method in pairs}
