"""Task submission: the polo-score gate, task files, status updates, results, deadlines."""

import base64
import json
import struct
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pilotnet.errors import PilotError
from pilotnet.services.storage import ByteBudget, FileWriter
from pilotnet.services.tasks import TaskService, polo_reward
from pilotnet.wire import tasksubmit as wire
from pilotnet.wire.typedframe import FrameReader, encode_frame
from tests.services.test_dataexchange import PEER, FakeStream, FakeStreams, QueuedWriter

TASK = "0123abcd-4567-89ef-0123-456789abcdef"
OTHER_TASK = "11111111-2222-3333-4444-555555555555"


class TaskServiceFixture:
    """A task service on a fake stream table, scores from a dict, polo changes recorded."""

    #: Where the service's file work runs (None: its own FileWriter, inline).
    writer = None

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1767225600)
        self.streams = FakeStreams()
        self.scores = {5: 10, PEER.node: 10}
        self.adjusted = []
        self.home = Path(self.mktemp())
        self.service = TaskService(
            self.streams, self.home, self.clock, polo_score=self.score,
            adjust_polo=lambda node, delta: self.adjusted.append((node, delta)), local_node=lambda: 5,
            writer=self.writer)

    def score(self, node):
        if node not in self.scores:
            return defer.fail(PilotError("registry down"))
        return defer.succeed(self.scores[node])

    def send(self, frame_type, body, conn_id=1):
        self.service.stream_accepted(1003, FakeStream(conn_id))
        header, payload = encode_frame(frame_type, body)
        return self.service.stream_data(conn_id, header + payload)

    def submit(self, conn_id=1):
        request = wire.SubmitRequest(TASK, "summarise", str(PEER), "0:0000.0000.0005")
        self.send(wire.TYPE_SUBMIT, wire.encode_submit_request(request), conn_id)
        [frame] = FrameReader().feed(bytes(self.streams.written[conn_id]))
        return wire.decode_submit_response(frame.payload)


class TaskServiceTests(TaskServiceFixture, SynchronousTestCase):
    def test_accepted_task_is_stored_new_and_queued(self):
        response = self.submit()
        self.assertEqual((response.status, response.message), (200, "Task received with status NEW"))
        task = json.loads((self.home / "tasks" / "received" / f"{TASK}.json").read_text())
        self.assertEqual((task["status"], task["from"]), ("NEW", str(PEER)))
        self.assertEqual(self.service.queue, [TASK])
        self.assertEqual(self.streams.closed, [1])

    def test_lower_score_is_rejected(self):
        self.scores[PEER.node] = 3
        response = self.submit()
        self.assertEqual((response.status, response.message), (400, "Polo score too low: submitter=3, receiver=10"))
        self.assertFalse((self.home / "tasks" / "received").exists())

    def test_no_registry_no_task(self):
        del self.scores[PEER.node]
        self.assertEqual(self.submit().status, 400)

    def test_new_task_is_cancelled_after_a_minute(self):
        self.submit()
        self.clock.advance(61)
        self.service.housekeeping()
        task = json.loads((self.home / "tasks" / "received" / f"{TASK}.json").read_text())
        self.assertEqual(task["status"], "CANCELLED")
        self.assertEqual(self.service.queue, [])

    def test_results_complete_the_submitted_task_and_move_polo(self):
        self.service.store.save("submitted", {"task_id": TASK, "status": "ACCEPTED", "to_node": PEER.node})
        results = wire.TaskResults(TASK, wire.RESULT_TEXT, "2026-01-01T00:00:00Z", result_text="42",
                                   time_cpu_ms=120000)
        self.send(wire.TYPE_SEND_RESULTS, wire.encode_results(results))
        task = self.service.store.load("submitted", TASK)
        self.assertEqual(task["status"], "COMPLETED")
        self.assertEqual((self.home / "tasks" / "results" / f"{TASK}_result.txt").read_bytes(), b"42")
        self.assertEqual(self.adjusted, [(5, -1), (PEER.node, polo_reward(120000, 0, 0))])

    def test_source_code_results_are_refused(self):
        self.service.store.save("submitted", {"task_id": TASK, "status": "ACCEPTED", "to_node": PEER.node})
        results = wire.TaskResults(TASK, wire.RESULT_FILE, "2026-01-01T00:00:00Z", filename="evil.py",
                                   file_data=b"import os")
        self.send(wire.TYPE_SEND_RESULTS, wire.encode_results(results))
        self.assertEqual(self.service.store.load("submitted", TASK)["status"], "ACCEPTED")

    def test_status_update(self):
        self.service.store.save("submitted", {"task_id": TASK, "status": "NEW", "to_node": PEER.node})
        self.send(wire.TYPE_STATUS_UPDATE, wire.encode_status_update(wire.StatusUpdate(TASK, "ACCEPTED", "ok")))
        self.assertEqual(self.service.store.load("submitted", TASK)["status"], "ACCEPTED")

    def test_reward_formula(self):
        self.assertEqual(polo_reward(0, 0, 0), 1)
        self.assertEqual(polo_reward(180000, 0, 0), 3)
        self.assertEqual(polo_reward(180000, 60000, 600000), 1)

    def test_queue_head_expires_after_an_hour_and_costs_a_point(self):
        self.submit()
        task = self.service.store.load("received", TASK)
        task["status"] = "ACCEPTED"
        self.service.store.save("received", task)
        self.clock.advance(3601)
        self.service.housekeeping()
        self.assertEqual(self.service.store.load("received", TASK)["status"], "EXPIRED")
        self.assertEqual(self.adjusted, [(5, -1)])
        self.assertEqual(self.service.queue, [])

    def test_a_task_moved_on_by_pilotctl_leaves_the_queue_and_never_expires(self):
        self.submit()
        task = self.service.store.load("received", TASK)
        task["status"] = "EXECUTING"
        self.service.store.save("received", task)
        self.service.housekeeping()
        self.assertEqual(self.service.queue, [])
        self.clock.advance(3601)
        self.service.housekeeping()
        self.assertEqual(self.service.store.load("received", TASK)["status"], "EXECUTING")
        self.assertEqual(self.adjusted, [])

    def test_the_accept_deadline_is_configurable(self):
        self.service.accept_deadline = 5.0
        self.submit()
        self.clock.advance(6)
        self.service.housekeeping()
        self.assertEqual(self.service.store.load("received", TASK)["status"], "CANCELLED")


class TaskAttackTests(TaskServiceFixture, SynchronousTestCase):
    """What a hostile peer tries on port 1003, each refused with nothing written and no polo moved."""

    def expect_results(self, status="EXECUTING", to_node=PEER.node):
        self.service.store.save("submitted", {"task_id": TASK, "status": status, "to_node": to_node})

    def send_raw_results(self, document, conn_id=1):
        body = json.dumps({"task_id": TASK, "completed_at": "2026-01-01T00:00:00Z", **document}).encode()
        return self.send(wire.TYPE_SEND_RESULTS, body, conn_id)

    def all_files(self):
        return sorted(str(p.relative_to(self.home.parent)) for p in self.home.parent.rglob("*") if p.is_file())

    def test_a_result_file_name_cannot_leave_the_results_directory(self):
        self.expect_results()
        before = self.all_files()
        for name in ("x/../../../victim/requirements.txt", "../../../victim.txt", "/tmp/abs.txt",
                     "..\\..\\win.txt", ".hidden.txt", "report\u202etxt.pdf", "line\nbreak.txt"):
            self.send_raw_results({"result_type": "file", "filename": name,
                                   "file_data": base64.b64encode(b"owned").decode()})
        self.assertEqual(self.all_files(), before)
        self.assertEqual(self.service.store.load("submitted", TASK)["status"], "EXECUTING")
        self.assertEqual(self.adjusted, [])
        self.assertEqual(self.service.refused, 7)

    def test_results_only_from_the_node_the_task_was_submitted_to(self):
        self.expect_results(to_node=PEER.node + 1)
        self.send_raw_results({"result_type": "text", "result_text": "forged"})
        self.assertFalse((self.home / "tasks" / "results").exists())
        self.assertEqual(self.service.store.load("submitted", TASK)["status"], "EXECUTING")
        self.assertEqual(self.adjusted, [])
        self.send(wire.TYPE_STATUS_UPDATE, wire.encode_status_update(wire.StatusUpdate(TASK, "DECLINED", "no")), 2)
        self.assertEqual(self.service.store.load("submitted", TASK)["status"], "EXECUTING")

    def test_results_for_a_task_that_does_not_expect_them_are_refused(self):
        for status in ("COMPLETED", "DECLINED", "CANCELLED", "EXPIRED", "SUCCEEDED"):
            self.expect_results(status)
            self.send_raw_results({"result_type": "text", "result_text": "again"})
        self.assertFalse((self.home / "tasks" / "results").exists())
        self.assertEqual(self.adjusted, [])
        self.send_raw_results({"result_type": "text", "result_text": "x"})  # no such task of ours at all
        self.service.store.path("submitted", TASK).unlink()
        self.send_raw_results({"result_type": "text", "result_text": "x"}, 2)
        self.assertEqual(self.adjusted, [])

    def test_replayed_results_move_polo_once_and_never_overwrite(self):
        self.expect_results()
        results = {"result_type": "file", "filename": "report.pdf", "file_data": base64.b64encode(b"v1").decode()}
        self.send_raw_results(results)
        self.send_raw_results(results, 2)
        self.assertEqual(len(self.adjusted), 2)  # one submitter point, one reward
        [stored] = (self.home / "tasks" / "results").iterdir()
        self.assertEqual((stored.name, stored.read_bytes()), (f"{TASK}_report.pdf", b"v1"))

    def test_a_result_name_already_taken_gets_a_fresh_one(self):
        self.expect_results()
        results_dir = self.home / "tasks" / "results"
        results_dir.mkdir(parents=True)
        (results_dir / f"{TASK}_report.pdf").write_bytes(b"earlier")
        self.send_raw_results({"result_type": "file", "filename": "report.pdf",
                               "file_data": base64.b64encode(b"new").decode()})
        self.assertEqual((results_dir / f"{TASK}_report.pdf").read_bytes(), b"earlier")
        self.assertEqual((results_dir / f"{TASK}_report-1.pdf").read_bytes(), b"new")
        self.assertEqual(self.service.store.load("submitted", TASK)["result_file"], f"{TASK}_report-1.pdf")

    def test_status_updates_do_not_reopen_a_completed_task(self):
        self.expect_results("COMPLETED")
        self.send(wire.TYPE_STATUS_UPDATE, wire.encode_status_update(wire.StatusUpdate(TASK, "EXECUTING", "")))
        self.assertEqual(self.service.store.load("submitted", TASK)["status"], "COMPLETED")

    def test_a_submit_never_replaces_a_received_task(self):
        self.assertEqual(self.submit().status, 200)
        task = self.service.store.load("received", TASK)
        task["status"] = "ACCEPTED"
        self.service.store.save("received", task)
        self.streams.written.clear()
        response = self.submit(conn_id=2)
        self.assertEqual((response.status, response.message), (400, "Task ID already in use"))
        self.assertEqual(self.service.store.load("received", TASK)["status"], "ACCEPTED")

    def test_the_queue_is_bounded(self):
        self.service.max_queued = 1
        self.service.queue.append("0" * 8 + "-0000-0000-0000-" + "0" * 12)
        response = self.submit()
        self.assertEqual((response.status, response.message), (400, "Task queue full (1 tasks waiting)"))
        self.assertFalse((self.home / "tasks" / "received").exists())

    def test_request_frames_are_bounded_at_the_header(self):
        self.service.stream_accepted(1003, FakeStream(1))
        self.service.stream_data(1, struct.pack(">II", wire.TYPE_SUBMIT, wire.MAX_SUBMIT_FRAME + 1))
        self.assertEqual(self.streams.closed, [1])
        self.assertEqual(self.service.budget.in_use, 0)

    def test_unfinished_frames_share_one_memory_budget(self):
        self.service.budget = ByteBudget(wire.MAX_SUBMIT_FRAME)
        for conn_id in (1, 2):
            self.service.stream_accepted(1003, FakeStream(conn_id))
        self.service.stream_data(1, struct.pack(">II", wire.TYPE_SEND_RESULTS, wire.MAX_SUBMIT_FRAME) + b"{")
        self.assertEqual(self.service.budget.in_use, wire.MAX_SUBMIT_FRAME)
        self.service.stream_data(2, struct.pack(">II", wire.TYPE_SUBMIT, 100))
        self.assertEqual(self.streams.closed, [2])
        self.service.stream_closed(1, "connection_failed", "reset")
        self.assertEqual(self.service.budget.in_use, 0)

    def test_leftovers_are_removed_at_start(self):
        for box in ("received", "results"):
            (self.home / "tasks" / box).mkdir(parents=True)
            (self.home / "tasks" / box / ".tmp-abc").write_bytes(b"x")
            (self.home / "tasks" / box / ".partial-abc").write_bytes(b"x")
        TaskService(FakeStreams(), self.home, self.clock, polo_score=self.score, adjust_polo=None,
                    local_node=lambda: 5)
        self.assertEqual([p for p in (self.home / "tasks").rglob("*") if p.is_file()], [])


class TaskFilesOffTheReactorTests(TaskServiceFixture, SynchronousTestCase):
    """Task files are read and written by the file writer, in order; the reactor never waits on the disk."""

    def setUp(self):
        self.writer = QueuedWriter()
        super().setUp()

    def submit_request(self, conn_id=1, task_id=TASK, description="summarise"):
        request = wire.SubmitRequest(task_id, description, str(PEER), "0:0000.0000.0005")
        return self.send(wire.TYPE_SUBMIT, wire.encode_submit_request(request), conn_id)

    def reply(self, conn_id):
        frames = FrameReader().feed(bytes(self.streams.written.get(conn_id, b"")))
        return wire.decode_submit_response(frames[0].payload) if frames else None

    def task_file(self):
        return self.home / "tasks" / "received" / f"{TASK}.json"

    def accept_without_writing(self):
        """Run the file work of a submit until the task is accepted and its file's write is queued."""
        while self.service.queue != [TASK]:
            self.writer.run_next()
        self.assertFalse(self.task_file().exists())

    def test_accepted_is_answered_only_once_the_task_file_is_on_disk(self):
        self.submit_request()
        self.assertEqual(len(self.writer.queue), 1)  # even the duplicate check waits for the file thread
        self.accept_without_writing()
        self.assertIsNone(self.reply(1))
        self.assertEqual(self.streams.closed, [])
        self.writer.run_all()
        self.assertEqual(json.loads(self.task_file().read_text())["status"], "NEW")
        self.assertEqual(self.reply(1).status, wire.STATUS_ACCEPTED)
        self.assertEqual(self.streams.closed, [1])

    def test_a_task_whose_file_cannot_be_written_is_refused_and_not_queued(self):
        (self.home / "tasks").mkdir(parents=True)
        (self.home / "tasks" / "received").write_bytes(b"a file where the directory goes")
        self.submit_request()
        self.writer.run_all()
        self.assertEqual(self.reply(1).status, wire.STATUS_REJECTED)
        self.assertTrue(self.reply(1).message.startswith("Task not stored"), self.reply(1).message)
        self.assertEqual(self.service.queue, [])
        self.flushLoggedErrors(OSError)

    def test_one_id_submitted_twice_at_once_is_stored_once(self):
        self.submit_request(1, description="first")
        self.submit_request(2, description="second")
        self.writer.run_all()
        self.assertEqual(self.reply(1).status, wire.STATUS_ACCEPTED)
        self.assertEqual((self.reply(2).status, self.reply(2).message), (wire.STATUS_REJECTED, "Task ID already in use"))
        self.assertEqual(json.loads(self.task_file().read_text())["task_description"], "first")
        self.assertEqual(self.service.queue, [TASK])

    def test_a_duplicate_is_refused_while_the_first_is_still_being_written(self):
        self.submit_request(1, description="first")
        self.accept_without_writing()
        self.submit_request(2, description="second")
        self.assertEqual(self.reply(2).message, "Task ID already in use")  # at once, from the writes in flight
        self.writer.run_all()
        self.assertEqual(json.loads(self.task_file().read_text())["task_description"], "first")

    def test_reads_right_after_a_submit_see_its_task(self):
        self.submit_request()
        self.accept_without_writing()
        status = self.service.records.load("received", TASK)
        listing = self.service.records.list("received")
        self.clock.advance(61)
        self.service.housekeeping()
        self.writer.run_all()
        self.assertEqual(self.successResultOf(status)["status"], "NEW")
        self.assertEqual([task["task_id"] for task in self.successResultOf(listing)], [TASK])
        # The sweep, asked for after the write, found the task and cancelled it.
        self.assertEqual(json.loads(self.task_file().read_text())["status"], "CANCELLED")
        self.assertEqual(self.service.queue, [])

    def test_beyond_the_limit_of_waiting_file_work_peers_are_refused_busy(self):
        self.service.records.limit = 1
        self.submit_request(1)
        self.submit_request(2, task_id=OTHER_TASK)
        self.assertEqual(self.reply(2).status, wire.STATUS_REJECTED)
        self.assertTrue(self.reply(2).message.startswith("Receiver busy"), self.reply(2).message)
        self.send(wire.TYPE_STATUS_UPDATE, wire.encode_status_update(wire.StatusUpdate(TASK, "ACCEPTED", "ok")), 3)
        self.assertEqual((self.service.refused, self.streams.closed), (1, [2, 3]))
        self.assertTrue(self.service.housekeeping().called)  # skipped: the next round tries again
        self.assertEqual(len(self.writer.queue), 1)
        self.writer.run_all()
        self.assertEqual(self.reply(1).status, wire.STATUS_ACCEPTED)
        self.assertEqual(self.service.records.waiting, 0)

    def test_housekeeping_rounds_do_not_overlap(self):
        self.service.housekeeping()
        self.service.housekeeping()
        self.assertEqual(len(self.writer.queue), 1)
        self.writer.run_all()
        self.service.housekeeping()
        self.assertEqual(len(self.writer.queue), 1)


class TaskFilesOnAThreadTests(TaskServiceFixture, TestCase):
    """The same service with the daemon's FileWriter running its thread."""

    def setUp(self):
        self.writer = FileWriter(reactor)
        self.writer.startService()
        self.addCleanup(self.writer.stopService)
        super().setUp()

    async def test_a_submit_is_answered_once_its_file_is_written_by_the_thread(self):
        request = wire.SubmitRequest(TASK, "summarise", str(PEER), "0:0000.0000.0005")
        self.service.stream_accepted(1003, FakeStream(1))
        header, payload = encode_frame(wire.TYPE_SUBMIT, wire.encode_submit_request(request))
        await self.service.stream_data(1, header + payload)
        [frame] = FrameReader().feed(bytes(self.streams.written[1]))
        self.assertEqual(wire.decode_submit_response(frame.payload).status, wire.STATUS_ACCEPTED)
        stored = await self.service.records.load("received", TASK)
        self.assertEqual(stored["status"], "NEW")
        self.clock.advance(61)
        await self.service.housekeeping()
        self.assertEqual((await self.service.records.load("received", TASK))["status"], "CANCELLED")
