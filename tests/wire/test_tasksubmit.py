"""Task submission frames and bodies (port 1003) against the Go reference's vectors."""

import json
import struct

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire import tasksubmit as ts
from pilotnet.wire.typedframe import Frame, MAX_PAYLOAD
from tests.vectors import by_id
from tests.wire.chunking import chunk_sizes, feed_all

SETTINGS = settings(max_examples=150, deadline=None)
TASK_ID = "0123abcd-4567-89ef-0123-456789abcdef"

task_ids = st.builds(lambda b: "-".join((b[:8], b[8:12], b[12:16], b[16:20], b[20:])),
                     st.binary(min_size=16, max_size=16).map(bytes.hex))
texts = st.text(max_size=30)
submit_requests = st.builds(ts.SubmitRequest, task_ids, texts, texts, texts)
submit_responses = st.builds(ts.SubmitResponse, task_ids, st.sampled_from(ts.RESPONSE_STATUSES), texts)
status_updates = st.builds(ts.StatusUpdate, task_ids, st.sampled_from(sorted(ts.TASK_STATUSES)), texts)
timings = st.integers(0, (1 << 63) - 1)
results = st.builds(ts.TaskResults, task_ids, st.sampled_from(ts.RESULT_TYPES), texts, texts, texts,
                    st.binary(max_size=40), timings, timings, timings)


def writes(case):
    return [bytes.fromhex(w) for w in case["output"]["writes_hex"]]


class VectorTests(SynchronousTestCase):
    def test_submit_request(self):
        case = by_id("service.tasksubmit.submit")
        request = ts.SubmitRequest(**case["inputs"])
        body = ts.encode_submit_request(request)
        self.assertEqual(body.decode(), case["output"]["json"])
        self.assertEqual(ts.encode_frame(ts.TYPE_SUBMIT, body), writes(case))
        [frame] = ts.FrameReader().feed(bytes.fromhex(case["output_hex"]))
        self.assertEqual(ts.decode_request(frame), request)

    def test_submit_response(self):
        case = by_id("service.tasksubmit.submit_response_accepted")
        response = ts.SubmitResponse(**case["inputs"])
        body = ts.encode_submit_response(response)
        self.assertEqual(body.decode(), case["output"]["json"])
        self.assertEqual(b"".join(ts.encode_frame(ts.TYPE_SUBMIT, body)).hex(), case["output_hex"])
        [frame] = ts.FrameReader().feed(bytes.fromhex(case["output_hex"]))
        self.assertEqual(ts.decode_submit_response(frame.payload), response)

    def test_status_update(self):
        case = by_id("service.tasksubmit.status_update")
        update = ts.StatusUpdate(**case["inputs"])
        body = ts.encode_status_update(update)
        self.assertEqual(body.decode(), case["output"]["json"])
        self.assertEqual(b"".join(ts.encode_frame(ts.TYPE_STATUS_UPDATE, body)).hex(), case["output_hex"])
        [frame] = ts.FrameReader().feed(bytes.fromhex(case["output_hex"]))
        self.assertEqual(ts.decode_request(frame), update)


class ResultsTests(SynchronousTestCase):
    def test_empty_optional_fields_left_out_in_go_order(self):
        body = ts.encode_results(ts.TaskResults(TASK_ID, "text", "2026-01-01T00:00:00Z", result_text="done"))
        self.assertEqual(body, ('{"task_id":"%s","result_type":"text","result_text":"done",'
                                '"completed_at":"2026-01-01T00:00:00Z"}' % TASK_ID).encode())

    def test_file_results_carry_base64_and_timings(self):
        body = ts.encode_results(ts.TaskResults(TASK_ID, "file", "t", filename="r.csv", file_data=b"a,b",
                                                time_idle_ms=1, time_cpu_ms=3))
        self.assertEqual(body, ('{"task_id":"%s","result_type":"file","filename":"r.csv","file_data":"YSxi",'
                                '"completed_at":"t","time_idle_ms":1,"time_cpu_ms":3}' % TASK_ID).encode())

    def test_bad_results_refused(self):
        base = b'{"task_id":"%s","result_type":"text","completed_at":"t"' % TASK_ID.encode()
        for extra in (b',"file_data":"!!"', b',"time_cpu_ms":-1', b',"time_cpu_ms":1.5', b',"result_type":"zip"'):
            self.assertRaises(DecodeError, ts.decode_results, base + extra + b"}")


class ValidationTests(SynchronousTestCase):
    def test_statuses(self):
        self.assertRaises(DecodeError, ts.encode_status_update, ts.StatusUpdate(TASK_ID, "DONE", ""))
        self.assertRaises(DecodeError, ts.decode_status_update,
                          b'{"task_id":"%s","status":"new","justification":""}' % TASK_ID.encode())
        self.assertRaises(DecodeError, ts.encode_submit_response, ts.SubmitResponse(TASK_ID, 201, ""))

    def test_task_ids_that_could_name_other_files_refused(self):
        for task_id in ("../../etc/passwd", TASK_ID.upper(), TASK_ID + "x", ""):
            self.assertRaises(DecodeError, ts.encode_submit_request, ts.SubmitRequest(task_id, "", "", ""))

    def test_new_task_ids_are_valid(self):
        task_id = ts.new_task_id()
        self.assertEqual(ts.decode_status_update(ts.encode_status_update(ts.StatusUpdate(task_id, ts.NEW, ""))).task_id,
                         task_id)
        self.assertNotEqual(task_id, ts.new_task_id())

    def test_size_caps(self):
        self.assertRaises(DecodeError, ts.encode_submit_request,
                          ts.SubmitRequest(TASK_ID, "x" * (ts.MAX_DESCRIPTION + 1), "", ""))
        ts.encode_submit_request(ts.SubmitRequest(TASK_ID, "x" * ts.MAX_DESCRIPTION, "", ""))
        self.assertRaises(DecodeError, ts.encode_status_update,
                          ts.StatusUpdate(TASK_ID, ts.NEW, "x" * (ts.MAX_JUSTIFICATION + 1)))

    def test_requests_the_service_does_not_take(self):
        for frame_type in (ts.TYPE_RESULT, 99):
            error = self.assertRaises(DecodeError, ts.decode_request, Frame(frame_type, b"{}"))
            self.assertIn("not a request", str(error))

    def test_frame_limit(self):
        self.assertEqual(ts.FrameReader().feed(struct.pack(">II", 1, MAX_PAYLOAD)), [])
        self.assertRaises(DecodeError, ts.FrameReader().feed, struct.pack(">II", 1, MAX_PAYLOAD + 1))


class PropertyTests(SynchronousTestCase):
    @SETTINGS
    @given(st.lists(st.one_of(
        submit_requests.map(lambda m: (ts.TYPE_SUBMIT, m)),
        status_updates.map(lambda m: (ts.TYPE_STATUS_UPDATE, m)),
        results.map(lambda m: (ts.TYPE_SEND_RESULTS, m)),
    ), max_size=4), chunk_sizes)
    def test_requests_round_trip_in_chunks(self, messages, sizes):
        encoders = {ts.TYPE_SUBMIT: ts.encode_submit_request, ts.TYPE_STATUS_UPDATE: ts.encode_status_update,
                    ts.TYPE_SEND_RESULTS: ts.encode_results}
        wire = b"".join(b"".join(ts.encode_frame(t, encoders[t](m))) for t, m in messages)
        frames = feed_all(ts.FrameReader(), wire, sizes)
        self.assertEqual([ts.decode_request(f) for f in frames], [m for _, m in messages])

    @SETTINGS
    @given(submit_responses)
    def test_responses_round_trip(self, response):
        self.assertEqual(ts.decode_submit_response(ts.encode_submit_response(response)), response)

    @SETTINGS
    @given(st.sampled_from([ts.TYPE_SUBMIT, ts.TYPE_STATUS_UPDATE, ts.TYPE_SEND_RESULTS, 2, 5]),
           st.binary(max_size=120), chunk_sizes)
    def test_random_bodies_only_raise_decode_error(self, frame_type, body, sizes):
        try:
            for frame in feed_all(ts.FrameReader(), struct.pack(">II", frame_type, len(body)) + body, sizes):
                ts.decode_request(frame)
            ts.decode_submit_response(body)
        except DecodeError:
            pass

    @SETTINGS
    @given(st.dictionaries(st.sampled_from(["task_id", "status", "justification", "result_type", "file_data",
                                            "time_cpu_ms", "task_description", "completed_at", "message"]),
                           st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.just(TASK_ID)
                           | st.sampled_from(sorted(ts.TASK_STATUSES) + list(ts.RESULT_TYPES))))
    def test_random_json_only_raises_decode_error(self, document):
        body = json.dumps(document).encode()
        for decode in (ts.decode_submit_request, ts.decode_submit_response, ts.decode_status_update,
                       ts.decode_results):
            try:
                decode(body)
            except DecodeError:
                pass
