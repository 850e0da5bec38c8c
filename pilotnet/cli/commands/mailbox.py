"""``send-message``, ``send-file``, ``received``, ``inbox``: the data exchange service (port 1001).

Sending speaks the reference's typed frames to the peer's port 1001 and
reads back the one frame it answers each frame with: ``ACK …`` when it stored
it, ``ERR …`` with its reason when it did not (a limit, a full directory, a
failed write), which is an error here (code ``refused``, exit 1), never a
success.  Files are streamed from disk in control-sized chunks, never read
whole.  ``received`` and ``inbox`` list what this node's daemon stored under
``<home>/received`` and ``<home>/inbox``; they need no daemon.
"""

import json
from pathlib import Path

from pilotnet.cli.args import invalid
from pilotnet.cli.output import Output, Progress, format_bytes, table
from pilotnet.control.schema import MAX_CHUNK
from pilotnet.errors import NOT_FOUND, REFUSED, PilotError
from pilotnet.wire.rfc3339 import format_rfc3339 as rfc3339
from pilotnet.wire import dataexchange as wire
from pilotnet.wire.address import PORT_DATA_EXCHANGE

TIMEOUT = 30.0
MESSAGE_TYPES = {"text": wire.TYPE_TEXT, "json": wire.TYPE_JSON, "binary": wire.TYPE_BINARY}
#: How the data exchange service's reply to a frame it did not store begins (``ERR refused: …``,
#: ``ERR FILE save failed: …``); a stored frame's reply begins with ``ACK``.
REFUSAL = "ERR"


async def _read_ack(context, stream):
    """The service's reply frame (best effort: ``""`` if the peer closed without one)."""
    reader = wire.DataFrameReader()
    while True:
        data = await context.within(stream.read(), TIMEOUT, "no acknowledgement within 30s")
        if not data:
            return ""
        frames = reader.feed(data)
        if frames:
            return frames[0].payload.decode("utf-8", "replace")


async def _deliver(context, address, stream, sending, what):
    """Run ``sending`` (the writes of one frame), then the service's ``ACK`` for it.

    A service that refuses answers ``ERR <reason>`` and closes as soon as it
    knows, often at the frame's header while the rest is still being written:
    a write failing then means the reason is waiting to be read, and it is
    the reason that is reported (code ``refused``), not the closed stream.
    """
    try:
        await sending
    except PilotError as write_failure:
        try:
            reply = await _read_ack(context, stream)
        except PilotError:
            reply = ""
        if not reply.startswith(REFUSAL):
            raise write_failure from None
    else:
        reply = await _read_ack(context, stream)
    if reply.startswith(REFUSAL):
        reason = reply[len(REFUSAL):].strip()
        reason = reason[len("refused:"):].strip() if reason.startswith("refused:") else reason
        listing = "received" if what == "file" else "inbox"
        raise PilotError(f"{address} refused the {what}: {reason}", code=REFUSED,
                         hint=f"{address} stored none of it; if it is out of room, its operator makes some with "
                              f"pilotctl {listing} --clear")
    return reply


async def send_message(context, args):
    kind = args.text("type", "text")
    if kind not in MESSAGE_TYPES:
        raise invalid(f'invalid --type "{kind}": expected text, json or binary')
    if not args.has("data"):
        raise invalid("--data is required", hint="usage: pilotctl send-message <target> --data TEXT")
    payload = args.text("data").encode("utf-8")
    if kind == "json":
        try:
            json.loads(payload)
        except ValueError:
            raise invalid("--data is not valid JSON (--type json)") from None
    address = await context.resolve(args.positional[0])
    stream = await context.dial(address, PORT_DATA_EXCHANGE, TIMEOUT)
    try:
        header, body = wire.encode_frame(MESSAGE_TYPES[kind], payload)
        ack = await _deliver(context, address, stream, stream.write(header + body), "message")
    finally:
        await stream.close()
    return Output({"target": str(address), "type": kind, "bytes": len(payload), "ack": ack},
                  f"sent {len(payload)} bytes to {address} ({ack or 'no acknowledgement'})")


async def send_file(context, args):
    path = Path(args.positional[1])
    if path.is_dir():
        raise invalid(f"{path} is a directory: send-file sends one file",
                      hint=f"send its files one by one, or pack it first: tar czf {path.name}.tgz {path}")
    if not path.is_file():
        raise PilotError(f"file not found: {path}", code=NOT_FOUND)
    size = path.stat().st_size
    if size > wire.MAX_PAYLOAD - 2 - wire.MAX_FILE_NAME:
        raise invalid(f"file is {size} bytes; the data exchange carries at most 16 MiB per file")
    name = wire.check_file_name(path.name)
    address = await context.resolve(args.positional[0])
    stream = await context.dial(address, PORT_DATA_EXCHANGE, TIMEOUT)
    progress = Progress(context, size)

    async def sending():
        sent = 0
        await stream.write(wire.encode_frame_header(wire.TYPE_FILE, size, name))
        with path.open("rb") as handle:
            while chunk := handle.read(MAX_CHUNK):
                await stream.write(chunk)
                sent += len(chunk)
                progress.update(sent)
        progress.update(sent)  # an empty file has no chunk: its bar still shows 100% once
        progress.finish()

    try:
        ack = await _deliver(context, address, stream, sending(), "file")
    finally:
        progress.finish()
        await stream.close()
    return Output({"filename": name, "bytes": size, "destination": str(address), "ack": ack},
                  f"sent {name} ({format_bytes(size)}) to {address} ({ack or 'no acknowledgement'})")


def _clear(directory, what):
    """Delete the completed files in ``directory``; those still arriving stay.

    A file in transfer is a hidden partial file the service renames once it is
    complete, and a completed file is never hidden: names from peers cannot
    start with a dot (:mod:`pilotnet.wire.filenames`), and our own stamps do not.
    So the hidden files are the ones left, and they are counted, not listed.
    """
    if not directory.is_dir():
        raise PilotError(f"{directory} does not exist", code=NOT_FOUND)
    cleared = in_transfer = 0
    for entry in directory.iterdir():
        if not entry.is_file():
            continue
        if entry.name.startswith("."):
            in_transfer += 1
            continue
        try:
            entry.unlink()
        except FileNotFoundError:
            continue
        cleared += 1
    text = f"cleared {cleared} {what} from {directory}"
    if in_transfer:
        text += (f"\nleft {in_transfer} still being received (listed once complete; "
                 "clear again afterwards to remove them)")
    return Output({"cleared": cleared, "in_transfer": in_transfer}, text)


def received(context, args):
    directory = context.home.path / "received"
    if args.boolean("clear"):
        return _clear(directory, "files")
    files = []
    if directory.is_dir():
        for entry in sorted(directory.iterdir()):
            if entry.is_file() and not entry.name.startswith("."):
                stat = entry.stat()
                files.append({"name": entry.name, "bytes": stat.st_size, "modified": rfc3339(stat.st_mtime),
                              "path": str(entry)})
    rows = [[f["name"], format_bytes(f["bytes"]), f["modified"]] for f in files]
    text = table(["NAME", "SIZE", "RECEIVED"], rows) + f"\ntotal: {len(files)}" if files else "no files received"
    return Output({"files": files, "total": len(files), "dir": str(directory)}, text)


def inbox(context, args):
    directory = context.home.path / "inbox"
    if args.boolean("clear"):
        return _clear(directory, "messages")
    messages = []
    if directory.is_dir():
        for entry in sorted(directory.glob("*.json")):
            try:
                messages.append(json.loads(entry.read_text()))
            except (OSError, ValueError):
                continue
    lines = [f"Inbox ({len(messages)} messages):"]
    for message in messages:
        data = str(message.get("data", ""))
        lines.append(f"  [{message.get('received_at')}] from {message.get('from')} type={message.get('type')}")
        lines.append(f"    {data[:80]}{'…' if len(data) > 80 else ''}")
    lines.append("clear with: pilotctl inbox --clear")
    return Output({"messages": messages, "total": len(messages), "dir": str(directory)}, "\n".join(lines))
