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
# completed_at is capped at MAX_TIMESTAMP (64) bytes of UTF-8: 16 characters fit however wide.
timestamps = st.text(max_size=ts.MAX_TIMESTAMP // 4)
submit_requests = st.builds(ts.SubmitRequest, task_ids, texts, texts, texts)
submit_responses = st.builds(ts.SubmitResponse, task_ids, st.sampled_from(ts.RESPONSE_STATUSES), texts)
status_updates = st.builds(ts.StatusUpdate, task_ids, st.sampled_from(sorted(ts.TASK_STATUSES)), texts)
timings = st.integers(0, (1 << 63) - 1)
file_names = st.text(alphabet=st.characters(blacklist_characters="/\\.",
                                            blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
                    min_size=1, max_size=30)
results = st.one_of(
    st.builds(ts.TaskResults, task_ids, st.just(ts.RESULT_TEXT), timestamps, texts, st.just("") | file_names,
              st.binary(max_size=40), timings, timings, timings),
    st.builds(ts.TaskResults, task_ids, st.just(ts.RESULT_FILE), timestamps, texts, file_names,
              st.binary(max_size=40), timings, timings, timings),
)


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

    def test_every_string_field_is_bounded(self):
        long_address = "a" * (ts.MAX_ADDRESS + 1)
        for request in (ts.SubmitRequest(TASK_ID, "", "", long_address),
                        ts.SubmitRequest(TASK_ID, "", long_address, "")):
            body = json.dumps(request._asdict()).encode()
            error = self.assertRaises(DecodeError, ts.decode_submit_request, body)
            self.assertIn("more than the limit of 256", str(error))
        body = json.dumps({"task_id": TASK_ID, "status": 400, "message": "m" * (ts.MAX_MESSAGE + 1)}).encode()
        self.assertRaises(DecodeError, ts.decode_submit_response, body)
        body = json.dumps({"task_id": TASK_ID, "result_type": "text", "completed_at": "9" * 65}).encode()
        self.assertRaises(DecodeError, ts.decode_results, body)

    def test_result_file_names_pass_the_one_name_check(self):
        for name in ("x/../../../victim/requirements.txt", "../a.txt", "a\\b.txt", ".hidden.txt",
                     "invoice\u202etxt.pdf", "", "a" * 256 + ".txt"):
            body = json.dumps({"task_id": TASK_ID, "result_type": "file", "filename": name,
                               "file_data": "", "completed_at": ""}).encode()
            self.assertRaises(DecodeError, ts.decode_results, body)
        body = json.dumps({"task_id": TASK_ID, "result_type": "file", "filename": "report.pdf",
                           "completed_at": ""}).encode()
        self.assertEqual(ts.decode_results(body).filename, "report.pdf")

    def test_request_frames_are_bounded_by_type_at_the_header(self):
        ts.admit_request_frame(ts.TYPE_SUBMIT, ts.MAX_SUBMIT_FRAME)
        ts.admit_request_frame(ts.TYPE_SEND_RESULTS, MAX_PAYLOAD)
        for frame_type, length in ((ts.TYPE_SUBMIT, ts.MAX_SUBMIT_FRAME + 1),
                                   (ts.TYPE_STATUS_UPDATE, ts.MAX_STATUS_UPDATE_FRAME + 1),
                                   (ts.TYPE_RESULT, 10), (99, 10)):
            self.assertRaises(DecodeError, ts.admit_request_frame, frame_type, length)
            reader = ts.FrameReader(admit=ts.admit_request_frame)
            self.assertRaises(DecodeError, reader.feed, struct.pack(">II", frame_type, length))

    def test_a_submit_at_every_cap_fits_its_frame_limit(self):
        worst = "<" * ts.MAX_DESCRIPTION  # six bytes each in Go's JSON
        request = ts.SubmitRequest(TASK_ID, worst, "<" * ts.MAX_ADDRESS, "<" * ts.MAX_ADDRESS)
        body = json.dumps(request._asdict()).encode()  # \u003c-style escapes, as Go writes them
        self.assertLessEqual(len(body.replace(b"<", b"\\u003c")), ts.MAX_SUBMIT_FRAME)

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
    @given(st.fixed_dictionaries({}, optional={
        "task_id": st.just(TASK_ID) | st.text(max_size=40), "task_description": st.text(max_size=20000),
        "from_addr": st.text(max_size=400), "to_addr": st.text(max_size=400), "message": st.text(max_size=5000),
        "status": st.sampled_from([200, 400]), "completed_at": st.text(max_size=80),
        "result_type": st.sampled_from(ts.RESULT_TYPES), "filename": st.text(max_size=300),
        "justification": st.text(max_size=5000)}))
    def test_decoded_fields_are_always_within_their_caps(self, document):
        body = json.dumps(document).encode()
        caps = {"task_description": ts.MAX_DESCRIPTION, "from_addr": ts.MAX_ADDRESS, "to_addr": ts.MAX_ADDRESS,
                "message": ts.MAX_MESSAGE, "completed_at": ts.MAX_TIMESTAMP, "filename": 255,
                "justification": ts.MAX_JUSTIFICATION, "task_id": 36}
        for decode in (ts.decode_submit_request, ts.decode_submit_response, ts.decode_results):
            try:
                decoded = decode(body)
            except DecodeError:
                continue
            for field, value in decoded._asdict().items():
                if isinstance(value, str) and field in caps:
                    self.assertLessEqual(len(value.encode("utf-8", "surrogatepass")), caps[field], field)

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
