"""``task …``: hand work to another agent and carry it out, over the task service (port 1003).

The submitter's ``task submit`` sends a SUBMIT frame and records the task in
``<home>/tasks/submitted/``; the executor's daemon stores it in
``received/``.  The executor's ``accept``, ``decline``, ``execute`` and
``send-results`` update its own copy and tell the submitter's daemon (one
frame per connection to its port 1003, as the reference does), which updates
the submitter's copy, stores results and adjusts polo scores.
"""

from pathlib import Path

from pilotnet.cli.args import invalid
from pilotnet.cli.output import Output
from pilotnet.errors import CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, PilotError
from pilotnet.services.tasks import ACCEPT_DEADLINE, TaskStore, check_result_file_name, require_accepted
from pilotnet.wire import tasksubmit as wire
from pilotnet.wire.address import PORT_TASK_SUBMIT, Addr
from pilotnet.wire.rfc3339 import format_rfc3339 as rfc3339
from pilotnet.wire.typedframe import FrameReader, encode_frame

TIMEOUT = 30.0
INVALID_STATE = "invalid_state"
EXPIRED = "expired"


def _store(context):
    return TaskStore(context.home.path)


def _required(args, flag, usage):
    value = args.text(flag)
    if not value or value == "true":
        raise invalid(f"--{flag} is required", hint=f"usage: pilotctl {usage}")
    return value


def _task_id(args, usage):
    task_id = _required(args, "id", usage)
    if not wire._TASK_ID.match(task_id):  # the codec's own form; IDs name files
        raise invalid(f'invalid task ID "{task_id[:64]}"', hint="task IDs are listed by: pilotctl task list")
    return task_id


async def _send_frame(context, address, frame_type, body, reply=False):
    """One frame on a fresh connection to ``address``'s port 1003; the reply frame if ``reply``."""
    stream = await context.dial(address, PORT_TASK_SUBMIT, TIMEOUT)
    try:
        header, payload = encode_frame(frame_type, body)
        await stream.write(header + payload)
        if not reply:
            return None
        reader = FrameReader()
        while True:
            data = await context.within(stream.read(), TIMEOUT, "no answer from the task service within 30s")
            if not data:
                raise PilotError(f"{address} closed the connection without answering", code=CONNECTION_FAILED)
            frames = reader.feed(data)
            if frames:
                return frames[0]
    finally:
        await stream.close()


async def submit(context, args):
    description = _required(args, "task", 'task submit <target> --task "description"')
    address = await context.resolve(args.positional[0])
    own = (await (await context.daemon()).info())["address"]
    request = wire.SubmitRequest(wire.new_task_id(), description, own, str(address))
    frame = await _send_frame(context, address, wire.TYPE_SUBMIT, wire.encode_submit_request(request), reply=True)
    response = wire.decode_submit_response(frame.payload)
    require_accepted(address, response)  # refused: exit 1, code "refused", the executor's reason
    now = context.clock.seconds()
    _store(context).save("submitted", {
        "task_id": request.task_id, "task_description": description, "created_at": rfc3339(now),
        "status": wire.NEW, "status_justification": "", "from": own, "to": str(address),
        "to_node": address.node, "created_ts": now,
    })
    data = {"target": str(address), "task_id": request.task_id, "task": description, "status": response.status,
            "message": response.message, "accepted": True}
    return Output(data, f"task {request.task_id} submitted to {address}: {response.message}")


def _load_received(context, task_id):
    return _store(context).load("received", task_id)


async def _notify(context, task, status, justification=""):
    """Tell the submitter; False (and the local change stands) if it cannot be reached."""
    update = wire.StatusUpdate(task["task_id"], status, justification)
    try:
        await _send_frame(context, Addr.parse(task["from"]), wire.TYPE_STATUS_UPDATE,
                          wire.encode_status_update(update))
    except PilotError:
        return False
    return True


def _require_status(task, *statuses):
    if task["status"] not in statuses:
        raise PilotError(f"task {task['task_id']} is already {task['status']}", code=INVALID_STATE,
                         hint=f"this needs a task that is {' or '.join(statuses)}: pilotctl task list")


async def accept(context, args):
    task_id = _task_id(args, "task accept --id ID")
    task = _load_received(context, task_id)
    _require_status(task, wire.NEW)
    now = context.clock.seconds()
    if now - task.get("created_ts", now) > ACCEPT_DEADLINE:
        raise PilotError(f"task {task_id} expired: it was not accepted within 1 minute", code=EXPIRED)
    task.update(status=wire.ACCEPTED, accepted_at=rfc3339(now), accepted_ts=now)
    _store(context).save("received", task)
    message = "Task accepted" if await _notify(context, task, wire.ACCEPTED) else \
        "Task accepted (submitter notification failed)"
    return Output({"task_id": task_id, "status": wire.ACCEPTED, "message": message}, f"{task_id}: {message}")


async def decline(context, args):
    task_id = _task_id(args, "task decline --id ID --justification REASON")
    justification = _required(args, "justification", "task decline --id ID --justification REASON")
    task = _load_received(context, task_id)
    _require_status(task, wire.NEW)
    task.update(status=wire.DECLINED, status_justification=justification)
    _store(context).save("received", task)
    message = "Task declined" if await _notify(context, task, wire.DECLINED, justification) else \
        "Task declined (submitter notification failed)"
    return Output({"task_id": task_id, "status": wire.DECLINED, "justification": justification,
                   "message": message}, f"{task_id}: {message}")


async def execute(context, args):
    accepted = [t for t in _store(context).list("received") if t.get("status") == wire.ACCEPTED]
    if not accepted:
        raise PilotError("no accepted tasks to execute", code=NOT_FOUND, hint="accept one first: pilotctl task queue")
    task = accepted[0]  # by task ID, as the reference picks
    now = context.clock.seconds()
    task.update(status=wire.EXECUTING, execute_started_at=rfc3339(now), execute_ts=now)
    _store(context).save("received", task)
    await _notify(context, task, wire.EXECUTING)
    return Output({"task_id": task["task_id"], "task_description": task["task_description"],
                   "status": wire.EXECUTING, "from": task["from"]},
                  f"executing {task['task_id']}: {task['task_description']}\n  From: {task['from']}")


def _timings(task, now):
    created = task.get("created_ts", now)
    accepted = task.get("accepted_ts", created)
    started = task.get("execute_ts", accepted)
    return {"time_idle_ms": int(max(0.0, accepted - created) * 1000),
            "time_staged_ms": int(max(0.0, started - accepted) * 1000),
            "time_cpu_ms": int(max(0.0, now - started) * 1000)}


async def send_results(context, args):
    task_id = _task_id(args, "task send-results --id ID (--results TEXT | --file PATH)")
    if args.has("results") == args.has("file"):
        raise invalid("give exactly one of --results and --file")
    task = _load_received(context, task_id)
    _require_status(task, wire.EXECUTING, wire.ACCEPTED)
    now = context.clock.seconds()
    data = {"task_id": task_id, "status": wire.SUCCEEDED, "sent_to": task["from"]}
    if args.has("file"):
        path = Path(args.text("file"))
        check_result_file_name(path.name)
        if not path.is_file():
            raise PilotError(f"file not found: {path}", code=NOT_FOUND)
        content = path.read_bytes()
        results = wire.TaskResults(task_id, wire.RESULT_FILE, rfc3339(now), filename=path.name,
                                   file_data=content, **_timings(task, now))
        data.update(sent_type="file", filename=path.name, file_size=len(content))
    else:
        results = wire.TaskResults(task_id, wire.RESULT_TEXT, rfc3339(now), result_text=args.text("results"),
                                   **_timings(task, now))
        data["sent_type"] = "text"
    try:
        body = wire.encode_results(results)
    except PilotError as error:
        raise PilotError(error.message, code=INVALID_ARGUMENT) from None
    await _send_frame(context, Addr.parse(task["from"]), wire.TYPE_SEND_RESULTS, body)
    task.update(status=wire.SUCCEEDED, completed_at=results.completed_at)
    _store(context).save("received", task)
    return Output(data, f"results of {task_id} sent to {task['from']}")


def _summary(task, category):
    return {"task_id": task["task_id"], "description": task.get("task_description", ""),
            "status": task.get("status"), "from": task.get("from"), "to": task.get("to"),
            "created_at": task.get("created_at"), "category": category}


async def list_tasks(context, args):
    kind = args.text("type")
    if kind not in (None, "received", "submitted"):
        raise invalid(f'invalid --type "{kind}": expected received or submitted')
    boxes = [kind] if kind else ["received", "submitted"]
    tasks = [_summary(task, box) for box in boxes for task in _store(context).list(box)]
    lines = []
    for task in tasks:
        lines.append(f"[{task['category']}] {task['task_id']} ({task['status']}) - {task['description']}")
        lines.append(f"  From: {task['from']} → To: {task['to']}")
    return Output({"tasks": tasks}, "\n".join(lines) or "No tasks found")


async def queue(context, args):
    waiting = [t for t in _store(context).list("received") if t.get("status") in (wire.NEW, wire.ACCEPTED)]
    waiting.sort(key=lambda t: t.get("created_ts", 0))
    entries = [{"task_id": t["task_id"], "description": t.get("task_description", ""), "from": t.get("from"),
                "created_at": t.get("created_at")} for t in waiting]
    lines = [f"Queued tasks ({len(entries)}):"]
    for number, entry in enumerate(entries, 1):
        lines += [f"  {number}. {entry['task_id']}: {entry['description']}", f"     From: {entry['from']}"]
    return Output({"queue": entries, "count": len(entries)}, "\n".join(lines) if entries else "Queue is empty")
