"""Task submission: the polo-score gate, task files, status updates, results, deadlines."""

import json
from pathlib import Path

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import PilotError
from pilotnet.services.tasks import TaskService, polo_reward
from pilotnet.wire import tasksubmit as wire
from pilotnet.wire.typedframe import FrameReader, encode_frame
from tests.services.test_dataexchange import PEER, FakeStream, FakeStreams

TASK = "0123abcd-4567-89ef-0123-456789abcdef"


class TaskServiceTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1767225600)
        self.streams = FakeStreams()
        self.scores = {5: 10, PEER.node: 10}
        self.adjusted = []
        self.home = Path(self.mktemp())
        self.service = TaskService(
            self.streams, self.home, self.clock, polo_score=self.score,
            adjust_polo=lambda node, delta: self.adjusted.append((node, delta)), local_node=lambda: 5)

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
        self.service.store.save("submitted", {"task_id": TASK, "status": "ACCEPTED", "to_node": 9})
        results = wire.TaskResults(TASK, wire.RESULT_TEXT, "2026-01-01T00:00:00Z", result_text="42",
                                   time_cpu_ms=120000)
        self.send(wire.TYPE_SEND_RESULTS, wire.encode_results(results))
        task = self.service.store.load("submitted", TASK)
        self.assertEqual(task["status"], "COMPLETED")
        self.assertEqual((self.home / "tasks" / "results" / f"{TASK}_result.txt").read_bytes(), b"42")
        self.assertEqual(self.adjusted, [(5, -1), (9, polo_reward(120000, 0, 0))])

    def test_source_code_results_are_refused(self):
        self.service.store.save("submitted", {"task_id": TASK, "status": "ACCEPTED"})
        results = wire.TaskResults(TASK, wire.RESULT_FILE, "2026-01-01T00:00:00Z", filename="evil.py",
                                   file_data=b"import os")
        self.send(wire.TYPE_SEND_RESULTS, wire.encode_results(results))
        self.assertEqual(self.service.store.load("submitted", TASK)["status"], "ACCEPTED")

    def test_status_update(self):
        self.service.store.save("submitted", {"task_id": TASK, "status": "NEW"})
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
