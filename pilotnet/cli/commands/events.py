"""``publish`` and ``subscribe``: the event stream, through the local daemon or at a named node.

With no target both use the local daemon's broker over the control socket,
which reaches subscribers on this node and, by federation, on trusted peers.
With a target they speak the reference's port-1002 framing to that node's
broker, as the Go ``pilotctl`` does (so they also work against Go daemons):
the first event on the stream is the subscription, later ones are publishes.
"""

from twisted.internet.defer import Deferred

from pilotnet.cli.args import invalid
from pilotnet.cli.commands.messaging import Deadline, until_deadline
from pilotnet.cli.output import Output, go_duration, stream_or_collect
from pilotnet.wire.address import PORT_EVENT_STREAM
from pilotnet.wire.eventstream import EventDecoder, encode_event


def _target_and_topic(args):
    if len(args.positional) == 2:
        return args.positional[0], args.positional[1]
    return None, args.positional[0]


async def publish(context, args):
    target, topic = _target_and_topic(args)
    if not args.has("data"):
        raise invalid("--data is required", hint="usage: pilotctl publish [<target>] <topic> --data TEXT")
    payload = args.text("data").encode("utf-8")
    if target is None:
        daemon = await context.daemon()
        reached = await daemon.open_event_stream().publish(topic, payload)
        where = (await daemon.info())["address"]
        data = {"target": where, "topic": topic, "bytes": len(payload), "subscribers": reached}
        return Output(data, _reached_text(len(payload), topic, where, reached))
    else:
        address = await context.resolve(target)
        where = str(address)
        stream = await context.dial(address, PORT_EVENT_STREAM, 30.0)
        try:
            # The broker takes the first event as the subscription, so subscribe to the topic first.
            await stream.write(encode_event(topic) + encode_event(topic, payload))
        finally:
            await stream.close()
    return Output({"target": where, "topic": topic, "bytes": len(payload)},
                  f"published {len(payload)} bytes to {topic!r} on {where} "
                  "(a node's port 1002 does not say how many subscribers it reached)")


def _reached_text(size, topic, where, reached):
    if reached:
        return f"published {size} bytes to {topic!r} on {where}: reached {reached} subscriber{'s' * (reached != 1)}"
    return "\n".join([
        f"published {size} bytes to {topic!r} on {where}: no subscriber received it",
        "  no client of this daemon and no trusted node subscribes to a matching topic right now",
        "  (events are not stored: a subscriber sees only what is published after it subscribed)",
        f"  try: pilotctl subscribe {topic!r} on the receiving node (trusted: pilotctl trust), then publish again",
    ])


class _RemoteEvents:
    """Events from a peer's broker over one port-1002 stream."""

    def __init__(self, stream):
        self.stream = stream
        self.decoder = EventDecoder()
        self.ready = []

    async def get(self):
        while not self.ready:
            data = await self.stream.read()
            if not data:
                return None
            self.ready.extend(self.decoder.feed(data))
        event = self.ready.pop(0)
        return event.topic, event.payload

    def close(self):
        return self.stream.close()


class _LocalEvents:
    def __init__(self, subscription):
        self.subscription = subscription

    async def get(self):
        event = await self.subscription.get()
        return None if event is None else (event.topic, event.data)

    def close(self):
        return self.subscription.close()


async def _open(context, target, topic):
    if target is None:
        daemon = await context.daemon()
        subscription = await daemon.open_event_stream().subscribe(topic).ready
        return _LocalEvents(subscription), (await daemon.info())["address"]
    address = await context.resolve(target)
    stream = await context.dial(address, PORT_EVENT_STREAM, 30.0)
    await stream.write(encode_event(topic))
    return _RemoteEvents(stream), str(address)


async def subscribe(context, args):
    target, topic = _target_and_topic(args)
    count = args.integer("count", 0)
    deadline = Deadline(context.reactor, args.duration("timeout", None))
    source, where = await _open(context, target, topic)
    context.note(f'subscribed to "{topic}" on {where} — waiting for events...')
    events, timed_out = [], False
    try:
        while count == 0 or len(events) < count:
            event = await until_deadline(context, deadline, Deferred.fromCoroutine(source.get()))
            if event is None:
                timed_out = deadline.end is not None and deadline.remaining() == 0
                break
            topic_of, payload = event
            record = {"topic": topic_of, "data": payload.decode("utf-8", "replace"), "bytes": len(payload)}
            context.say(f"[{topic_of}] {record['data']}")
            stream_or_collect(context, count, record, events)
    finally:
        await source.close()
    if timed_out:
        context.note(f"timeout: {len(events)} events within {go_duration(deadline.seconds)}")
    if count == 0:
        return None
    return Output({"events": events, "timeout": timed_out}, "")
