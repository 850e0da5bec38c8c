"""Task submission on port 1003: agents hand each other work, gated by polo score.

One frame per connection, as the reference: a SUBMIT is answered with a
SUBMIT response and stored as a NEW task; STATUS_UPDATE and SEND_RESULTS
(sent back by the executor) update the submitter's copy and are not answered.

Tasks are JSON files, one per task, so they survive restarts and ``pilotctl
task`` can read them: ``<home>/tasks/received/<id>.json`` for work we were
given, ``submitted/`` for work we handed out, ``results/`` for what came back.
Executor-side timers follow the reference: a NEW task not accepted within a
minute is cancelled (``accept_deadline``); a task still waiting at the head of
the queue for an hour expires and costs the executor one point of polo score.
Unlike the reference, a task ``pilotctl`` has moved on (executing, declined,
done) leaves the queue at the next housekeeping, so it can never "expire".

Everything here comes from peers, so, unlike the reference: a request frame is
bounded by its type at its header and held only while the services' memory
budget covers it; a SUBMIT never replaces a task already received under its ID
and is refused when ``max_queued`` tasks wait; STATUS_UPDATE and SEND_RESULTS
are taken only from the node the task was submitted to, and results only while
the task still expects them (NEW, ACCEPTED or EXECUTING: once, so a replay
cannot move polo twice).  A result file keeps its sender's name only as a
checked base name, under ``results/`` as ``<id>_<name>``, never replacing a
file, and is written off the reactor thread.
"""

import functools
import json
import math
import os
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.crypto.identity import write_private_file
from pilotnet.errors import INVALID_ARGUMENT, NOT_FOUND, REFUSED, PilotError
from pilotnet.interfaces import IStreamOwner
from pilotnet.ratelimit import TokenBucket
from pilotnet.services import storage
from pilotnet.wire import tasksubmit as wire
from pilotnet.wire.address import PORT_TASK_SUBMIT
from pilotnet.wire.rfc3339 import format_rfc3339
from pilotnet.wire.typedframe import FrameReader, encode_frame

log = Logger()

ACCEPT_DEADLINE = 60.0
QUEUE_HEAD_LIMIT = 3600.0
MAX_QUEUED = 100
BOXES = ("received", "submitted", "results")
# The submitter's copy of a task expects results until they arrive (or the task ends otherwise).
AWAITING_RESULTS = frozenset((wire.NEW, wire.ACCEPTED, wire.EXECUTING))

RESULT_EXTENSIONS = frozenset(
    ".md .txt .rtf .docx .pdf .pptx .pth .pt .onnx .h5 .pb .ckpt .safetensors .bin .csv .parquet "
    ".xlsx .xls .jpg .jpeg .png .svg .gif .webp".split())


def polo_reward(time_cpu_ms, time_idle_ms, time_staged_ms):
    """Points an executor earns for a completed task (the reference's formula)."""
    cpu_bonus = math.log2(1 + time_cpu_ms / 60000)
    idle_factor = min(max(time_idle_ms / 1000 / 60 * 0.3, 0.0), 0.3)
    staged_factor = min(max(time_staged_ms / 1000 / 600 * 0.3, 0.0), 0.3)
    efficiency = max(0.4, 1 - idle_factor - staged_factor)
    return max(1, math.floor((1 + cpu_bonus) * efficiency + 0.5))


def require_accepted(target, response):
    """Raise :class:`PilotError` (``refused``) unless the executor ``target`` took the task.

    The executor's own words are the message, so the submitter learns why
    (a polo score below the executor's, a full queue…).
    """
    if response.status == wire.STATUS_ACCEPTED:
        return
    hint = None
    if response.message.startswith("Polo score too low"):
        hint = ("an executor takes tasks from nodes whose polo score is at least its own; every completed task "
                "costs its submitter a point and earns the executor some: earn points by executing tasks "
                "(pilotctl enable-tasks), or submit to a node whose score is not above yours")
    raise PilotError(f"task refused by {target}: {response.message}", code=REFUSED, hint=hint)


def check_result_file_name(name):
    """A result file must be a document, data or model file, never source code."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix not in RESULT_EXTENSIONS:
        raise PilotError(f"result files of type {suffix or '(none)'} are not accepted", code=INVALID_ARGUMENT,
                         hint="send documents, data, images or model files: " + " ".join(sorted(RESULT_EXTENSIONS)))
    return name


class TaskStore:
    """The task files of one node."""

    def __init__(self, home):
        self.root = Path(home) / "tasks"

    def path(self, box, task_id):
        if not wire.is_task_id(task_id):  # IDs name files: only the reference's form, checked again here
            raise PilotError(f"task {task_id[:64]!r} not found", code=NOT_FOUND)
        return self.root / box / f"{task_id}.json"

    def save(self, box, task):
        write_private_file(self.path(box, task["task_id"]), json.dumps(task, indent=2).encode("utf-8"))

    def load(self, box, task_id):
        try:
            return json.loads(self.path(box, task_id).read_text())
        except FileNotFoundError:
            raise PilotError(f"task {task_id} not found", code=NOT_FOUND) from None

    def list(self, box):
        directory = self.root / box
        if not directory.is_dir():
            return []
        tasks = []
        for path in sorted(directory.glob("*.json")):
            try:
                tasks.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a file being replaced, or not ours
        return tasks

    def save_result(self, task_id, file_name, data):
        """``results/<id>_<name>`` (or ``-1``, ``-2``… added): ``file_name`` must be a checked base name."""
        self.path("results", task_id)
        stem, suffix = os.path.splitext(file_name)
        return storage.write_new(self.root / "results", f"{task_id}_{stem}", suffix, data)

    def remove_leftovers(self):
        return sum(storage.remove_leftovers(self.root / box) for box in BOXES)


@implementer(IStreamOwner)
class TaskService:
    """The port-1003 service.

    ``polo_score(node)`` returns a Deferred of a node's polo score (the
    registry's ``get_polo_score``), ``adjust_polo(node, delta)`` changes one;
    ``local_node`` is a callable giving our node ID (known after registration).
    """

    def __init__(self, streams, home, clock, *, polo_score, adjust_polo, local_node, port=PORT_TASK_SUBMIT,
                 accept_deadline=ACCEPT_DEADLINE, max_queued=MAX_QUEUED, budget=None, writer=None):
        self.streams = streams
        self.clock = clock
        self.accept_deadline = accept_deadline
        self.max_queued = max_queued
        self.store = TaskStore(home)
        self.store.remove_leftovers()
        self.polo_score = polo_score
        self.adjust_polo = adjust_polo
        self.local_node = local_node
        self.budget = budget if budget is not None else storage.ByteBudget(2 * wire.typedframe.MAX_PAYLOAD)
        self.writer = writer if writer is not None else storage.FileWriter()
        self.queue = []
        self.refused = 0
        self._refusal_log = TokenBucket(*storage.REFUSAL_LOG_RATE)
        self._readers = {}
        self._remotes = {}
        self._held = {}  # conn_id -> bytes of the budget its frame holds
        self._results_pending = set()
        self._head_since = None
        streams.bind(port, self)

    # -- IStreamOwner ------------------------------------------------------------------

    def stream_accepted(self, port, stream):
        self._readers[stream.conn_id] = FrameReader(admit=functools.partial(self._admit, stream.conn_id))
        self._remotes[stream.conn_id] = stream.remote

    def stream_data(self, conn_id, data):
        reader = self._readers.get(conn_id)
        if reader is None:
            return None
        try:
            frames = reader.feed(data)
            if frames:
                # One frame per connection: whatever follows it is not read.
                del self._readers[conn_id]
                self._give_back(conn_id)
                request = wire.decode_request(frames[0])
                return self._handle(conn_id, frames[0].frame_type, request)
        except PilotError as error:
            self._refuse(conn_id, error.message)
        return None

    def stream_closed(self, conn_id, code, message):
        self._readers.pop(conn_id, None)
        self._remotes.pop(conn_id, None)
        self._give_back(conn_id)

    def datagram(self, src, src_port, dst_port, data):
        pass

    def _admit(self, conn_id, frame_type, length):
        """A frame's header: refuse a type or length no request needs, then hold its bytes in the budget."""
        wire.admit_request_frame(frame_type, length)
        self.budget.take(length, "task frame")
        self._held[conn_id] = length

    def _give_back(self, conn_id):
        held = self._held.pop(conn_id, 0)
        if held:
            self.budget.give_back(held)

    def _refuse(self, conn_id, reason):
        self.refused += 1
        if self._refusal_log.take(1, self.clock.seconds()):
            log.info("task frame from {peer} refused: {reason} ({count} refused so far)",
                     peer=str(self._remotes.get(conn_id)), reason=reason, count=self.refused)
        self._finish(conn_id)

    # -- requests --------------------------------------------------------------------------

    def _handle(self, conn_id, frame_type, request):
        if frame_type == wire.TYPE_SUBMIT:
            return defer.ensureDeferred(self._submit(conn_id, request))
        remote = self._remotes.get(conn_id)
        task = self._executors_task(remote, request.task_id)
        if task is None:
            self._refuse(conn_id, f"{wire.TYPE_NAMES[frame_type]} for task {request.task_id}, "
                                  f"which is not a task of ours that {remote} was given")
            return None
        done = None
        if frame_type == wire.TYPE_STATUS_UPDATE:
            self._status_update(task, request)
        else:
            done = self._results(conn_id, task, request)
        self._finish(conn_id)
        return done

    def _executors_task(self, remote, task_id):
        """Our submitted task ``task_id`` if ``remote`` is the node it was submitted to, else None."""
        try:
            task = self.store.load("submitted", task_id)
        except PilotError:
            return None
        if remote is None or task.get("to_node") != remote.node:
            return None
        return task

    async def _submit(self, conn_id, request):
        submitter = self._remotes.get(conn_id)
        response = self._refusal_before_scores(request)
        if response is None:
            response = await self._judge(request, submitter)
        header, body = encode_frame(wire.TYPE_SUBMIT, wire.encode_submit_response(response))
        try:
            self.streams.write(conn_id, header + body, self)
        except PilotError:
            pass
        self._finish(conn_id)

    def _refusal_before_scores(self, request):
        """A response refusing ``request`` for what needs no registry: a reused ID, a full queue."""
        if self.store.path("received", request.task_id).exists():
            return wire.SubmitResponse(request.task_id, wire.STATUS_REJECTED, "Task ID already in use")
        if len(self.queue) >= self.max_queued:
            return wire.SubmitResponse(request.task_id, wire.STATUS_REJECTED,
                                       f"Task queue full ({self.max_queued} tasks waiting)")
        return None

    async def _judge(self, request, submitter):
        """The reference's rule: accept when the submitter's polo score is at least ours."""
        try:
            ours = await self.polo_score(self.local_node())
            theirs = await self.polo_score(submitter.node)
        except PilotError:
            # The reference's current behaviour: no registry, no way to judge, no task.
            return wire.SubmitResponse(request.task_id, wire.STATUS_REJECTED,
                                       "Registry unavailable, cannot verify polo score")
        if theirs < ours:
            return wire.SubmitResponse(request.task_id, wire.STATUS_REJECTED,
                                       f"Polo score too low: submitter={theirs}, receiver={ours}")
        refusal = self._refusal_before_scores(request)  # the same ID or more tasks may have come meanwhile
        if refusal is not None:
            return refusal
        self._accept_new(request, submitter)
        return wire.SubmitResponse(request.task_id, wire.STATUS_ACCEPTED, "Task received with status NEW")

    def _accept_new(self, request, submitter):
        now = self.clock.seconds()
        self.store.save("received", {
            "task_id": request.task_id, "task_description": request.task_description,
            "created_at": format_rfc3339(now), "status": wire.NEW, "status_justification": "",
            "from": str(submitter), "to": request.to_addr, "created_ts": now,
        })
        self.queue.append(request.task_id)
        if len(self.queue) == 1:
            self._head_since = now
        log.info("task {task} received from {peer}", task=request.task_id, peer=str(submitter))

    def _status_update(self, task, update):
        if task.get("status") == wire.COMPLETED:
            return  # results are in: nothing the executor says changes that
        task["status"] = update.status
        task["status_justification"] = update.justification
        self.store.save("submitted", task)

    def _results(self, conn_id, task, results):
        """Store the results of a task that expects them; a Deferred that fires once they are on disk."""
        task_id = results.task_id
        if task.get("status") not in AWAITING_RESULTS or task_id in self._results_pending:
            self._refuse(conn_id, f"results for task {task_id}, which is {task.get('status')}, not awaiting results")
            return None
        if results.result_type == wire.RESULT_FILE:
            try:
                name, data = check_result_file_name(results.filename), results.file_data
            except PilotError as error:
                self._refuse(conn_id, error.message)
                return None
        else:
            name, data = "result.txt", results.result_text.encode("utf-8")
        self._results_pending.add(task_id)
        saving = self.writer.run(self.store.save_result, task_id, name, data)
        saving.addCallback(self._results_saved, results)
        saving.addErrback(lambda failure: log.failure("results of task {task} not stored", failure, task=task_id))
        return saving.addBoth(lambda _: self._results_pending.discard(task_id))

    def _results_saved(self, path, results):
        task = self.store.load("submitted", results.task_id)
        task["status"] = wire.COMPLETED
        task["completed_at"] = results.completed_at
        task["result_file"] = path.name
        self.store.save("submitted", task)
        log.info("results of task {task} stored as {name}", task=results.task_id, name=path.name)
        reward = polo_reward(results.time_cpu_ms, results.time_idle_ms, results.time_staged_ms)
        self.adjust_polo(self.local_node(), -1)
        self.adjust_polo(task["to_node"], reward)

    def _finish(self, conn_id):
        self._readers.pop(conn_id, None)
        self._remotes.pop(conn_id, None)
        self._give_back(conn_id)
        try:
            self.streams.close(conn_id)
        except PilotError:
            pass

    # -- housekeeping (every few seconds) ------------------------------------------------

    def housekeeping(self):
        now = self.clock.seconds()
        for task in self.store.list("received"):
            if task.get("status") == wire.NEW and now - task.get("created_ts", now) > self.accept_deadline:
                task["status"] = wire.CANCELLED
                task["status_justification"] = "no response within 1 minute"
                self.store.save("received", task)
                self._dequeue(task["task_id"], now)
            elif task.get("status") not in (wire.NEW, wire.ACCEPTED):
                # pilotctl moved it on (executing, done, declined): it no longer waits, so it cannot expire.
                self._dequeue(task["task_id"], now)
        if self.queue and self._head_since is not None and now - self._head_since > QUEUE_HEAD_LIMIT:
            task_id = self.queue[0]
            task = self.store.load("received", task_id)
            task["status"] = wire.EXPIRED
            self.store.save("received", task)
            self._dequeue(task_id, now)
            self.adjust_polo(self.local_node(), -1)

    def _dequeue(self, task_id, now):
        if task_id in self.queue:
            was_head = self.queue[0] == task_id
            self.queue.remove(task_id)
            if was_head:
                self._head_since = now if self.queue else None

