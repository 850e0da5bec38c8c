"""``connect``, ``send``, ``recv``, ``listen``: one-shot messages on streams, and datagrams."""

from twisted.internet.defer import Deferred

from pilotnet.cli.args import invalid
from pilotnet.cli.output import Output, go_duration, stream_or_collect
from pilotnet.driver.targets import parse_port
from pilotnet.errors import TIMEOUT, PilotError

DEFAULT_CONNECT_PORT = 1000
MAX_RESPONSE = 64 * 1024


def _text(data):
    return data.decode("utf-8", errors="replace")


def _message_from_stdin(context):
    stdin = context.stdin
    if stdin is None or stdin.isatty():
        raise invalid("--message is required (interactive mode not supported)")
    return "\n".join(line.rstrip("\n") for line in stdin)


async def _exchange(context, target, port, message, timeout):
    """Dial, send ``message``, wait for one reply (or the peer closing), close."""
    address = await context.resolve(target)
    payload = message.encode("utf-8")
    stream = await context.within(
        Deferred.fromCoroutine(context.dial(address, port, timeout)), timeout,
        f"cannot connect to {address} port {port} within {go_duration(timeout)}",
    )
    try:
        await stream.write(payload)
        response = await context.within(
            stream.read(MAX_RESPONSE), timeout, f"no response within {go_duration(timeout)}"
        )
    finally:
        await stream.close()
    data = {"target": str(address), "port": port, "sent": len(payload), "response": _text(response)}
    if response:
        return Output(data, _text(response))
    context.note(f"sent {len(payload)} bytes (no response)")
    return Output(data, "")


async def connect(context, args):
    port = parse_port(args.positional[1]) if len(args.positional) > 1 else DEFAULT_CONNECT_PORT
    timeout = args.duration("timeout", 30.0)
    message = args.text("message") if args.has("message") else _message_from_stdin(context)
    return await _exchange(context, args.positional[0], port, message, timeout)


async def send(context, args):
    port = parse_port(args.positional[1])
    timeout = args.duration("timeout", 30.0)
    if not args.has("data"):
        raise invalid("--data is required", hint="usage: pilotctl send <address|hostname> <port> --data TEXT")
    return await _exchange(context, args.positional[0], port, args.text("data"), timeout)


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
    """The reference's ``broadcast``: refused the same way, since networks carry no broadcast service yet."""
    raise PilotError("broadcast is not available yet: networks have no broadcast service", code="unavailable",
                     hint="send to each member: pilotctl send-message <node> --data TEXT")
