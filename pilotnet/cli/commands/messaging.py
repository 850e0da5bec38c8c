"""``connect``, ``send``, ``recv``, ``listen``, ``broadcast``: one-shot messages on streams, and datagrams.

``connect`` and ``send`` are one exchange (dial, write, one reply, close), done
over the blocking control client so they answer without importing Twisted;
``recv`` and ``listen`` wait on ports through the Twisted SDK.
"""

import time

from pilotnet.cli.args import invalid, parse_number
from pilotnet.cli.output import Output, go_duration, stream_or_collect
from pilotnet.control import schema
from pilotnet.driver.targets import parse_port
from pilotnet.wire.address import broadcast as broadcast_address
from pilotnet.errors import CONNECTION_FAILED, TIMEOUT, PilotError

DEFAULT_CONNECT_PORT = 1000
#: The reference names no port for broadcasts.  1000 is its documented plain-text port
#: (``connect``'s default) and no built-in service holds it, so ``pilotctl listen 1000``
#: on the members can receive (1001, data exchange, is the daemon's own and takes no datagrams).
DEFAULT_BROADCAST_PORT = 1000
MAX_NETWORK = 0xFFFF
MAX_RESPONSE = 64 * 1024


def _text(data):
    return data.decode("utf-8", errors="replace")


def _message_from_stdin(context):
    stdin = context.stdin
    if stdin is None or stdin.isatty():
        raise invalid("--message is required (interactive mode not supported)")
    return "\n".join(line.rstrip("\n") for line in stdin)


def _exchange(context, target, port, message, timeout):
    """Dial, send ``message``, wait for one reply (or the peer closing), close."""
    deadline = time.monotonic() + timeout
    address = context.resolve_now(target)
    payload = message.encode("utf-8")
    conn_id = context.dial_now(address, port, timeout)["conn_id"]
    try:
        _write_all(context, conn_id, payload, deadline, timeout)
        response = _first_reply(context, conn_id, deadline, timeout)
    finally:
        context.ask(schema.CLOSE, conn_id=conn_id)
    data = {"target": str(address), "port": port, "sent": len(payload), "response": _text(response)}
    if response:
        return Output(data, _text(response))
    context.note(f"sent {len(payload)} bytes (no response)")
    return Output(data, "")


def _wait(context, conn_id, deadline, timeout):
    """The next push about stream ``conn_id``, or a ``timeout`` error once ``deadline`` passes."""
    while True:
        push = context.control().next_push(max(0.0, deadline - time.monotonic()))
        if push is None:
            raise PilotError(f"no response within {go_duration(timeout)}", code=TIMEOUT,
                             hint="retry with a longer --timeout")
        spec, arguments = push
        if arguments.get("conn_id") == conn_id:
            return spec, arguments


def _write_all(context, conn_id, payload, deadline, timeout):
    """Write ``payload`` in chunks, within the daemon's write credit (waiting for ``Written`` past it)."""
    credit = schema.WRITE_CREDIT
    for start in range(0, len(payload), schema.MAX_CHUNK):
        chunk = payload[start:start + schema.MAX_CHUNK]
        while credit < len(chunk):
            spec, arguments = _wait(context, conn_id, deadline, timeout)
            if spec is schema.WRITTEN:
                credit += arguments["size"]
            elif spec is schema.STREAM_CLOSED:
                raise _closed_error(arguments) or PilotError("the peer closed the stream before taking the message",
                                                             code=CONNECTION_FAILED)
        context.ask(schema.WRITE, conn_id=conn_id, data=chunk)
        credit -= len(chunk)


def _first_reply(context, conn_id, deadline, timeout):
    """The first data the peer sends back (at most MAX_RESPONSE bytes), or ``b""`` if it closes first."""
    while True:
        spec, arguments = _wait(context, conn_id, deadline, timeout)
        if spec is schema.RECEIVED:
            return arguments["data"][:MAX_RESPONSE]
        if spec is schema.STREAM_CLOSED:
            error = _closed_error(arguments)
            if error is not None:
                raise error
            return b""


def _closed_error(arguments):
    code = arguments["code"]
    return PilotError(arguments["message"] or code, code=code) if code else None


def connect(context, args):
    port = parse_port(args.positional[1]) if len(args.positional) > 1 else DEFAULT_CONNECT_PORT
    timeout = args.duration("timeout", 30.0)
    message = args.text("message") if args.has("message") else _message_from_stdin(context)
    return _exchange(context, args.positional[0], port, message, timeout)


def send(context, args):
    port = parse_port(args.positional[1])
    timeout = args.duration("timeout", 30.0)
    if not args.has("data"):
        raise invalid("--data is required", hint="usage: pilotctl send <address|hostname> <port> --data TEXT")
    return _exchange(context, args.positional[0], port, args.text("data"), timeout)


class Deadline:
    """What is left of one ``--timeout`` shared by several waits."""

    def __init__(self, clock, seconds):
        self.clock = clock
        self.seconds = seconds
        self.end = None if seconds is None else clock.seconds() + seconds

    def remaining(self):
        return None if self.end is None else max(0.0, self.end - self.clock.seconds())


async def until_deadline(context, deadline, deferred):
    """The result of ``deferred``, or ``None`` once the deadline passes."""
    try:
        return await context.within(deferred, deadline.remaining(), "deadline")
    except PilotError as error:
        if error.code != TIMEOUT:
            raise
        return None


async def recv(context, args):
    port = parse_port(args.positional[0])
    count = args.integer("count", 1, minimum=1)
    deadline = Deadline(context.reactor, args.duration("timeout", 30.0))
    listener = await (await context.daemon()).listen(port)
    messages, timed_out = [], False
    try:
        while len(messages) < count:
            stream = await until_deadline(context, deadline, listener.accept())
            if stream is None:
                timed_out = True
                break
            seq = len(messages)
            try:
                data = await until_deadline(context, deadline, stream.read(MAX_RESPONSE))
            except PilotError as error:
                messages.append({"seq": seq, "port": port, "error": error.message})
                continue
            finally:
                await stream.close()
            if data is None:
                timed_out = True
                break
            messages.append({"seq": seq, "port": port, "data": _text(data), "bytes": len(data)})
            context.say(_text(data))
    finally:
        await listener.close()
    if timed_out:
        context.note(f"timeout: {len(messages)} of {count} messages within {go_duration(deadline.seconds)}")
    return Output({"messages": messages, "timeout": timed_out}, "")


async def listen(context, args):
    port = parse_port(args.positional[0])
    count = args.integer("count", 0)
    deadline = Deadline(context.reactor, args.duration("timeout", None))
    listener = await (await context.daemon()).listen(port)
    messages, timed_out = [], False
    try:
        while count == 0 or len(messages) < count:
            datagram = await until_deadline(context, deadline, listener.receive_datagram())
            if datagram is None:
                timed_out = True
                break
            message = {
                "src_addr": str(datagram.src_address), "src_port": datagram.src_port,
                "data": _text(datagram.data), "bytes": len(datagram.data),
            }
            context.say(f"[{message['src_addr']}:{message['src_port']}] {message['data']}")
            stream_or_collect(context, count, message, messages)
    finally:
        await listener.close()
    if count == 0:
        return None
    return Output({"messages": messages, "timeout": timed_out}, "")


def broadcast(context, args):
    """One datagram to every other member of a network, through the daemon (docs/networks.md#broadcast)."""
    network_id = parse_number(args.positional[0], "network ID", MAX_NETWORK)
    message = args.positional[1]
    port = parse_port(args.text("port")) if args.has("port") else DEFAULT_BROADCAST_PORT
    data = message.encode("utf-8")
    if not data:
        raise invalid("the message is empty", hint='usage: pilotctl broadcast <network_id> "<message>"')
    address = str(broadcast_address(network_id))
    answer = context.ask(schema.SEND_DATAGRAM, address=address, port=port, data=data)
    sent, unreachable = answer.get("sent") or 0, answer.get("unreachable") or 0
    result = {"network_id": network_id, "address": address, "port": port, "bytes": len(data),
              "sent": sent, "unreachable": unreachable}
    text = f"broadcast {len(data)} bytes to network {network_id} port {port}: sent to {_members(sent)}"
    if unreachable:
        text += f", {_members(unreachable)} unreachable"
    if not sent and not unreachable:
        context.note(f"no other member of network {network_id} is online; see pilotctl network members {network_id}")
    return Output(result, text)


def _members(count):
    return f"{count} member" if count == 1 else f"{count} members"
