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
"""

import json
import math
import os
import time
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.crypto.identity import write_private_file
from pilotnet.errors import INVALID_ARGUMENT, NOT_FOUND, PilotError
from pilotnet.interfaces import IStreamOwner
from pilotnet.wire import tasksubmit as wire
from pilotnet.wire.address import PORT_TASK_SUBMIT
from pilotnet.wire.typedframe import FrameReader, encode_frame

log = Logger()

ACCEPT_DEADLINE = 60.0
QUEUE_HEAD_LIMIT = 3600.0

RESULT_EXTENSIONS = frozenset(
    ".md .txt .rtf .docx .pdf .pptx .pth .pt .onnx .h5 .pb .ckpt .safetensors .bin .csv .parquet "
    ".xlsx .xls .jpg .jpeg .png .svg .gif .webp".split())


def rfc3339(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def polo_reward(time_cpu_ms, time_idle_ms, time_staged_ms):
    """Points an executor earns for a completed task (the reference's formula)."""
    cpu_bonus = math.log2(1 + time_cpu_ms / 60000)
    idle_factor = min(max(time_idle_ms / 1000 / 60 * 0.3, 0.0), 0.3)
    staged_factor = min(max(time_staged_ms / 1000 / 600 * 0.3, 0.0), 0.3)
    efficiency = max(0.4, 1 - idle_factor - staged_factor)
    return max(1, math.floor((1 + cpu_bonus) * efficiency + 0.5))


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
        target = self.root / "results" / f"{task_id}_{file_name}"
        write_private_file(target, data)
        return target


@implementer(IStreamOwner)
class TaskService:
    """The port-1003 service.

    ``polo_score(node)`` returns a Deferred of a node's polo score (the
    registry's ``get_polo_score``), ``adjust_polo(node, delta)`` changes one;
    ``local_node`` is a callable giving our node ID (known after registration).
    """

    def __init__(self, streams, home, clock, *, polo_score, adjust_polo, local_node, port=PORT_TASK_SUBMIT,
                 accept_deadline=ACCEPT_DEADLINE):
        self.streams = streams
        self.clock = clock
        self.accept_deadline = accept_deadline
        self.store = TaskStore(home)
        self.polo_score = polo_score
        self.adjust_polo = adjust_polo
        self.local_node = local_node
        self.queue = []
        self._readers = {}
        self._remotes = {}
        self._head_since = None
        streams.bind(port, self)

    # -- IStreamOwner ------------------------------------------------------------------

    def stream_accepted(self, port, stream):
        self._readers[stream.conn_id] = FrameReader()
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
                request = wire.decode_request(frames[0])
                return self._handle(conn_id, frames[0].frame_type, request)
        except PilotError as error:
            log.info("task frame refused: {reason}", reason=error.message)
            self._finish(conn_id)
        return None

    def stream_closed(self, conn_id, code, message):
        self._readers.pop(conn_id, None)
        self._remotes.pop(conn_id, None)

    def datagram(self, src, src_port, dst_port, data):
        pass

    # -- requests --------------------------------------------------------------------------

    def _handle(self, conn_id, frame_type, request):
        if frame_type == wire.TYPE_SUBMIT:
            return defer.ensureDeferred(self._submit(conn_id, request))
        if frame_type == wire.TYPE_STATUS_UPDATE:
            self._status_update(request)
        else:
            self._results(request)
        self._finish(conn_id)
        return None

    async def _submit(self, conn_id, request):
        submitter = self._remotes.get(conn_id)
        try:
            ours = await self.polo_score(self.local_node())
            theirs = await self.polo_score(submitter.node)
        except PilotError:
            # The reference's current behaviour: no registry, no way to judge, no task.
            response = wire.SubmitResponse(request.task_id, wire.STATUS_REJECTED,
                                           "Registry unavailable, cannot verify polo score")
        else:
            if theirs < ours:
                response = wire.SubmitResponse(request.task_id, wire.STATUS_REJECTED,
                                               f"Polo score too low: submitter={theirs}, receiver={ours}")
            else:
                self._accept_new(request, submitter)
                response = wire.SubmitResponse(request.task_id, wire.STATUS_ACCEPTED,
                                               "Task received with status NEW")
        header, body = encode_frame(wire.TYPE_SUBMIT, wire.encode_submit_response(response))
        try:
            self.streams.write(conn_id, header + body, self)
        except PilotError:
            pass
        self._finish(conn_id)

    def _accept_new(self, request, submitter):
        now = self.clock.seconds()
        self.store.save("received", {
            "task_id": request.task_id, "task_description": request.task_description,
            "created_at": rfc3339(now), "status": wire.NEW, "status_justification": "",
            "from": str(submitter), "to": request.to_addr, "created_ts": now,
        })
        self.queue.append(request.task_id)
        if len(self.queue) == 1:
            self._head_since = now
        log.info("task {task} received from {peer}", task=request.task_id, peer=str(submitter))

    def _status_update(self, update):
        try:
            task = self.store.load("submitted", update.task_id)
        except PilotError:
            return
        task["status"] = update.status
        task["status_justification"] = update.justification
        self.store.save("submitted", task)

    def _results(self, results):
        try:
            task = self.store.load("submitted", results.task_id)
        except PilotError:
            return
        if results.result_type == wire.RESULT_FILE:
            try:
                name = check_result_file_name(results.filename)
            except PilotError:
                return
            self.store.save_result(results.task_id, name, results.file_data)
        else:
            self.store.save_result(results.task_id, "result.txt", results.result_text.encode("utf-8"))
        task["status"] = wire.COMPLETED
        task["completed_at"] = results.completed_at
        self.store.save("submitted", task)
        reward = polo_reward(results.time_cpu_ms, results.time_idle_ms, results.time_staged_ms)
        self.adjust_polo(self.local_node(), -1)
        executor = task.get("to_node")
        if executor is not None:
            self.adjust_polo(executor, reward)

    def _finish(self, conn_id):
        self._readers.pop(conn_id, None)
        self._remotes.pop(conn_id, None)
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

