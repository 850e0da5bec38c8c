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
file.

The daemon reads and writes every task file off the reactor thread, through
:class:`TaskRecords` (the services' one file thread, in order): a SUBMIT is
answered "accepted" only once its file is on disk (written, fsynced and
renamed into place), so an accepted task survives a crash or restart; a
status update or results that arrive while the file thread is
``MAX_RECORD_WORK`` operations behind are refused like any malformed frame.
"""

import functools
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable

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
# Task-file reads and writes waiting for the file thread at once; beyond it peers are refused (busy).
MAX_RECORD_WORK = 64
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


class TaskRecords:
    """The daemon's task files, read and written on the services' file thread (a :class:`TaskStore` in it).

    The file thread runs its work in the order it was asked for, so a read
    sees every write asked for before it: a listing or a status read right
    after a submit finds the task, without the reactor waiting on the disk.
    :attr:`saving` is the in-memory record of the writes not yet on disk,
    which a duplicate check consults in the same reactor turn that decides.
    At most ``limit`` operations wait at once; beyond that :meth:`run`
    refuses with ``busy``.
    """

    def __init__(self, store: TaskStore, writer: Any, limit: int = MAX_RECORD_WORK):
        self.store = store
        self.writer = writer
        self.limit = limit
        self.waiting = 0
        #: ``(box, task_id)`` of each write asked for and not yet done (a count per file).
        self.saving: Counter[tuple[str, str]] = Counter()

    def run(self, work: Callable[..., Any], *args: Any) -> defer.Deferred:
        """``work(*args)`` on the file thread after everything asked before; ``busy`` when too much waits."""
        if self.waiting >= self.limit:
            raise PilotError(f"{self.waiting} task-file operations are waiting for the disk",
                             code=storage.BUSY, hint="try again in a moment")
        self.waiting += 1

        def done(result: Any) -> Any:
            self.waiting -= 1
            return result

        return self.writer.run(work, *args).addBoth(done)

    def save(self, box: str, task: dict) -> defer.Deferred:
        """Write ``task`` to ``box``; fires once the file is on disk."""
        key = (box, task["task_id"])
        self.store.path(*key)  # a malformed ID is refused here, not on the thread
        saving = self.run(self.store.save, box, dict(task))
        self.saving[key] += 1

        def saved(result: Any) -> Any:
            self.saving[key] -= 1
            if not self.saving[key]:
                del self.saving[key]
            return result

        return saving.addBoth(saved)

    def load(self, box: str, task_id: str) -> defer.Deferred:
        """The task ``task_id`` of ``box`` (a ``not_found`` failure when there is none)."""
        return self.run(self.store.load, box, task_id)

    def list(self, box: str) -> defer.Deferred:
        return self.run(self.store.list, box)

    def exists(self, box: str, task_id: str) -> defer.Deferred:
        """Whether ``box`` holds ``task_id`` or a write of it is under way.

        Asked again of :attr:`saving` when the answer arrives: a write asked for
        after this read was queued is not in the file the read looked at.
        """
        if (box, task_id) in self.saving:
            return defer.succeed(True)
        checking = self.run(lambda: self.store.path(box, task_id).exists())
        return checking.addCallback(lambda on_disk: on_disk or (box, task_id) in self.saving)

    def update(self, box: str, task_id: str, change: Callable[[dict], bool]) -> defer.Deferred:
        """Read, ``change`` and write back ``task_id`` in one turn of the file thread.

        ``change(task)`` runs on that thread, so it may only look at the task;
        it returns whether it changed it (only then is the file written).  Fires
        with the task as it now is, or None if there is no such task.  Done in
        one piece there, two updates of one task cannot lose each other's change.
        """
        def read_change_write() -> dict | None:
            try:
                task = self.store.load(box, task_id)
            except PilotError:
                return None
            if change(task):
                self.store.save(box, task)
            return task

        return self.run(read_change_write)


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
        self.store.remove_leftovers()  # at construction, before the reactor serves anything
        self.polo_score = polo_score
        self.adjust_polo = adjust_polo
        self.local_node = local_node
        self.budget = budget if budget is not None else storage.ByteBudget(2 * wire.typedframe.MAX_PAYLOAD)
        self.writer = writer if writer is not None else storage.FileWriter()
        self.records = TaskRecords(self.store, self.writer)
        self.queue = []
        self.refused = 0
        self._refusal_log = TokenBucket(*storage.REFUSAL_LOG_RATE)
        self._readers = {}
        self._remotes = {}
        self._held = {}  # conn_id -> bytes of the budget its frame holds
        self._results_pending = set()
        self._head_since = None
        self._sweeping = False
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
        return defer.ensureDeferred(self._from_executor(conn_id, frame_type, request))

    async def _from_executor(self, conn_id, frame_type, request):
        """A STATUS_UPDATE or SEND_RESULTS: taken only from the node the task was submitted to."""
        remote = self._remotes.get(conn_id)
        try:
            task = await self._executors_task(remote, request.task_id)
            if task is None:
                raise PilotError(f"{wire.TYPE_NAMES[frame_type]} for task {request.task_id}, "
                                 f"which is not a task of ours that {remote} was given")
            if frame_type == wire.TYPE_STATUS_UPDATE:
                await self._status_update(request)
            else:
                await self._results(task, request)
        except PilotError as error:
            self._refuse(conn_id, error.message)
            return
        except Exception:
            self._log_failure("{frame} from {peer} for task {task} not handled", frame=wire.TYPE_NAMES[frame_type],
                              peer=str(remote), task=request.task_id)
        self._finish(conn_id)

    async def _executors_task(self, remote, task_id):
        """Our submitted task ``task_id`` if ``remote`` is the node it was submitted to, else None."""
        try:
            task = await self.records.load("submitted", task_id)
        except PilotError as error:
            if error.code != NOT_FOUND:
                raise
            return None
        if remote is None or task.get("to_node") != remote.node:
            return None
        return task

    async def _submit(self, conn_id, request):
        submitter = self._remotes.get(conn_id)
        try:
            response = await self._refusal_before_scores(request)
            if response is None:
                response = await self._judge(request, submitter)
        except PilotError as error:  # the file thread is too far behind (busy), or the ID names no file
            reason = f"Receiver busy: {error.message}" if error.code == storage.BUSY else error.message
            response = wire.SubmitResponse(request.task_id, wire.STATUS_REJECTED, reason)
        header, body = encode_frame(wire.TYPE_SUBMIT, wire.encode_submit_response(response))
        try:
            self.streams.write(conn_id, header + body, self)
        except PilotError:
            pass
        self._finish(conn_id)

    async def _refusal_before_scores(self, request):
        """A response refusing ``request`` for what needs no registry: a reused ID, a full queue.

        No refusal means none in the reactor turn this returns in (nothing else runs between
        the answer of :meth:`TaskRecords.exists` and here), so a caller that saves then
        cannot save a task twice.
        """
        if await self.records.exists("received", request.task_id):
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
        refusal = await self._refusal_before_scores(request)  # the same ID or more tasks may have come meanwhile
        if refusal is not None:
            return refusal
        try:
            await self._accept_new(request, submitter)
        except PilotError:
            raise  # busy: answered as such
        except Exception as error:
            self._log_failure("task {task} from {peer} not stored", task=request.task_id, peer=str(submitter))
            return wire.SubmitResponse(request.task_id, wire.STATUS_REJECTED, f"Task not stored: {error}")
        return wire.SubmitResponse(request.task_id, wire.STATUS_ACCEPTED, "Task received with status NEW")

    async def _accept_new(self, request, submitter):
        """Queue the task and write its file; returns once the file is on disk (the submitter's answer waits)."""
        now = self.clock.seconds()
        saving = self.records.save("received", {
            "task_id": request.task_id, "task_description": request.task_description,
            "created_at": format_rfc3339(now), "status": wire.NEW, "status_justification": "",
            "from": str(submitter), "to": request.to_addr, "created_ts": now,
        })
        self.queue.append(request.task_id)  # counted against max_queued from this turn on
        if len(self.queue) == 1:
            self._head_since = now
        try:
            await saving
        except BaseException:
            self._dequeue(request.task_id, self.clock.seconds())
            raise
        log.info("task {task} received from {peer}", task=request.task_id, peer=str(submitter))

    async def _status_update(self, update):
        def apply(task):
            if task.get("status") == wire.COMPLETED:
                return False  # results are in: nothing the executor says changes that
            task["status"] = update.status
            task["status_justification"] = update.justification
            return True

        await self.records.update("submitted", update.task_id, apply)

    async def _results(self, task, results):
        """Store the results of a task that expects them; returns once they and the task's new status are on disk."""
        task_id = results.task_id
        if task.get("status") not in AWAITING_RESULTS or task_id in self._results_pending:
            raise PilotError(f"results for task {task_id}, which is {task.get('status')}, not awaiting results")
        if results.result_type == wire.RESULT_FILE:
            name, data = check_result_file_name(results.filename), results.file_data
        else:
            name, data = "result.txt", results.result_text.encode("utf-8")
        self._results_pending.add(task_id)
        try:
            path = await self.records.run(self.store.save_result, task_id, name, data)

            def complete(stored):
                if stored.get("status") not in AWAITING_RESULTS:
                    return False  # pilotctl or a timer ended it meanwhile: no polo for it
                stored.update(status=wire.COMPLETED, completed_at=results.completed_at, result_file=path.name)
                return True

            stored = await self.records.update("submitted", task_id, complete)
        except PilotError:
            raise  # busy: refused as such
        except Exception:
            self._log_failure("results of task {task} not stored", task=task_id)
            return
        finally:
            self._results_pending.discard(task_id)
        if stored is None or stored.get("result_file") != path.name:
            return  # no such task any more, or complete() found it ended meanwhile
        log.info("results of task {task} stored as {name}", task=task_id, name=path.name)
        reward = polo_reward(results.time_cpu_ms, results.time_idle_ms, results.time_staged_ms)
        self.adjust_polo(self.local_node(), -1)
        self.adjust_polo(stored["to_node"], reward)

    def _log_failure(self, message, **fields):
        """Log the exception being handled, within the refusals' rate (peers can repeat what fails)."""
        if self._refusal_log.take(1, self.clock.seconds()):
            log.failure(message, **fields)

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
        """Cancel and expire what waited too long: one turn of the file thread; a Deferred of its end.

        Never fails (a failure would stop the daemon's timer); a round still
        running when the next is due makes that one a no-op.
        """
        if self._sweeping:
            return defer.succeed(None)
        now = self.clock.seconds()
        overdue_head = None
        if self.queue and self._head_since is not None and now - self._head_since > QUEUE_HEAD_LIMIT:
            overdue_head = self.queue[0]
        try:
            sweeping = self.records.run(self._sweep, now, self.accept_deadline, overdue_head)
        except PilotError:
            return defer.succeed(None)  # the file thread is busy: next round
        self._sweeping = True
        sweeping.addCallback(self._swept)
        sweeping.addErrback(lambda failure: log.failure("task housekeeping", failure))
        return sweeping.addBoth(self._sweep_done)

    def _sweep(self, now, accept_deadline, overdue_head):
        """On the file thread: cancel NEW tasks past the accept deadline and expire ``overdue_head``.

        Returns ``(no_longer_waiting, expired)``: the IDs that left the queue
        (cancelled, or moved on by pilotctl: executing, done, declined, which
        then can never expire) and ``overdue_head`` if it expired.  It expires
        only if it still waits; had it left, the next head's hour starts now.
        """
        left = []
        for task in self.store.list("received"):
            status = task.get("status")
            if status == wire.NEW and now - task.get("created_ts", now) > accept_deadline:
                task["status"] = wire.CANCELLED
                task["status_justification"] = "no response within 1 minute"
                self.store.save("received", task)
                left.append(task["task_id"])
            elif status not in (wire.NEW, wire.ACCEPTED):
                left.append(task["task_id"])
        if overdue_head is None or overdue_head in left:
            return left, None
        try:
            task = self.store.load("received", overdue_head)
        except PilotError:
            return left + [overdue_head], None  # its file is gone: it waits no more
        task["status"] = wire.EXPIRED
        self.store.save("received", task)
        return left, overdue_head

    def _swept(self, outcome):
        left, expired = outcome
        now = self.clock.seconds()
        for task_id in left:
            self._dequeue(task_id, now)
        if expired is not None:
            self._dequeue(expired, now)
            self.adjust_polo(self.local_node(), -1)

    def _sweep_done(self, _):
        self._sweeping = False

    def _dequeue(self, task_id, now):
        if task_id in self.queue:
            was_head = self.queue[0] == task_id
            self.queue.remove(task_id)
            if was_head:
                self._head_since = now if self.queue else None

