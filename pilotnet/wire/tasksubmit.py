"""Task submission frames (port 1003): JSON bodies in typed frames.

Frames are the shared ``type u32 | length u32 | payload`` framing of
:mod:`pilotnet.wire.typedframe` with a JSON payload of at most 2^24 bytes:

====  ==============  ==========================================================
type  name            body
====  ==============  ==========================================================
1     SUBMIT          request ``{task_id, task_description, from_addr, to_addr}``;
                      the response uses the same type: ``{task_id, status, message}``
2     RESULT          legacy, never sent by current peers; carried, not built
3     STATUS_UPDATE   ``{task_id, status, justification}``
4     SEND_RESULTS    ``{task_id, result_type, result_text?, filename?,
                      file_data?, completed_at, time_idle_ms?, time_staged_ms?,
                      time_cpu_ms?}`` (``?`` = left out when empty or zero)
====  ==============  ==========================================================

Bodies are written with :mod:`pilotnet.wire.gojson` in the reference's field
order, so they are byte-identical to what a Go peer writes.  Reading is
lenient where Go is (unknown fields ignored, missing optional fields are
empty) and strict where it matters (types, statuses, sizes).  Every string
field has a length cap (the description, justification and result caps are
those newer reference versions enforce; addresses, messages and timestamps are
capped here too), a result file name must pass the project's one check for
peer-supplied names (:func:`pilotnet.wire.filenames.check_base_name`), and
:func:`admit_request_frame` bounds a request frame by its type before any of
its payload is held, so only SEND_RESULTS may approach the 16 MiB frame limit.
"""

import base64
import binascii
import os
import re
from collections.abc import Callable, Collection
from typing import NamedTuple, TypeVar

from pilotnet.errors import DecodeError
from pilotnet.wire import gojson, typedframe
from pilotnet.wire.filenames import check_base_name

TYPE_SUBMIT = 1
TYPE_RESULT = 2
TYPE_STATUS_UPDATE = 3
TYPE_SEND_RESULTS = 4
TYPE_NAMES = {
    TYPE_SUBMIT: "SUBMIT",
    TYPE_RESULT: "RESULT",
    TYPE_STATUS_UPDATE: "STATUS_UPDATE",
    TYPE_SEND_RESULTS: "SEND_RESULTS",
}

STATUS_ACCEPTED = 200
STATUS_REJECTED = 400
RESPONSE_STATUSES = (STATUS_ACCEPTED, STATUS_REJECTED)

NEW = "NEW"
ACCEPTED = "ACCEPTED"
DECLINED = "DECLINED"
EXECUTING = "EXECUTING"
COMPLETED = "COMPLETED"
SUCCEEDED = "SUCCEEDED"
CANCELLED = "CANCELLED"
EXPIRED = "EXPIRED"
TASK_STATUSES = frozenset((NEW, ACCEPTED, DECLINED, EXECUTING, COMPLETED, SUCCEEDED, CANCELLED, EXPIRED))

RESULT_TEXT = "text"
RESULT_FILE = "file"
RESULT_TYPES = (RESULT_TEXT, RESULT_FILE)

MAX_DESCRIPTION = 16 * 1024
MAX_JUSTIFICATION = 4 * 1024
MAX_RESULT_TEXT = 1024 * 1024
MAX_RESULT_FILE_BYTES = 15 * 1024 * 1024
MAX_ADDRESS = 256  # from_addr / to_addr: an address or a hostname (at most 253) as the submitter typed it
MAX_MESSAGE = 4 * 1024  # the SUBMIT response's message
MAX_TIMESTAMP = 64  # completed_at, RFC 3339
# Whole request frames by type: a JSON string may spell a character with up to
# six bytes (\u003c), so a SUBMIT at its field caps fits in 128 KiB.
MAX_SUBMIT_FRAME = 128 * 1024
MAX_STATUS_UPDATE_FRAME = 32 * 1024
_MAX_MS = (1 << 63) - 1  # Go int64
# Task IDs name files on the receiver's disk, so only the reference's own
# form is accepted: 16 random bytes as 8-4-4-4-12 lower-case hex.
_TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

# Frames are the shared typed framing; re-exported so services import one module.
encode_frame = typedframe.encode_frame
FrameReader = typedframe.FrameReader


class SubmitRequest(NamedTuple):
    task_id: str
    task_description: str
    from_addr: str
    to_addr: str


class SubmitResponse(NamedTuple):
    task_id: str
    status: int
    message: str


class StatusUpdate(NamedTuple):
    task_id: str
    status: str
    justification: str


class TaskResults(NamedTuple):
    """A SEND_RESULTS body; ``file_data`` is raw bytes (base64 only on the wire)."""

    task_id: str
    result_type: str
    completed_at: str
    result_text: str = ""
    filename: str = ""
    file_data: bytes = b""
    time_idle_ms: int = 0
    time_staged_ms: int = 0
    time_cpu_ms: int = 0


def new_task_id() -> str:
    """A fresh task ID in the reference's form (16 random bytes as 8-4-4-4-12 hex)."""
    raw = os.urandom(16).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def is_task_id(text: object) -> bool:
    """True for a task ID in the reference's form (task IDs name files, so nothing else is used)."""
    return isinstance(text, str) and _TASK_ID.match(text) is not None


def _check_task_id(task_id: str, what: str) -> None:
    if not _TASK_ID.match(task_id):
        raise DecodeError(
            f"{what}: field 'task_id' = {task_id[:64]!r} is not a task ID "
            f"(expected 8-4-4-4-12 lower-case hex)"
        )


def _check_size(text: str, limit: int, what: str, field: str) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise DecodeError(f"{what}: field {field!r} is {size} bytes, more than the limit of {limit}")


_Choice = TypeVar("_Choice", int, str)


def _check_choice(value: _Choice, allowed: Collection[_Choice], what: str, field: str) -> None:
    if value not in allowed:
        raise DecodeError(f"{what}: field {field!r} = {value!r} is not one of {', '.join(map(str, sorted(allowed)))}")


# -- SUBMIT -----------------------------------------------------------------

def _validate_submit_request(request: SubmitRequest, what: str = "SUBMIT request") -> SubmitRequest:
    _check_task_id(request.task_id, what)
    _check_size(request.task_description, MAX_DESCRIPTION, what, "task_description")
    _check_size(request.from_addr, MAX_ADDRESS, what, "from_addr")
    _check_size(request.to_addr, MAX_ADDRESS, what, "to_addr")
    return request


def encode_submit_request(request: SubmitRequest) -> bytes:
    _validate_submit_request(request)
    return gojson.dumps({
        "task_id": request.task_id,
        "task_description": request.task_description,
        "from_addr": request.from_addr,
        "to_addr": request.to_addr,
    })


def decode_submit_request(body: bytes) -> SubmitRequest:
    what = "SUBMIT request"
    document = gojson.loads_object(body, what)
    return _validate_submit_request(SubmitRequest(
        task_id=gojson.get_str(document, "task_id", what),
        task_description=gojson.get_str(document, "task_description", what, ""),
        from_addr=gojson.get_str(document, "from_addr", what, ""),
        to_addr=gojson.get_str(document, "to_addr", what, ""),
    ), what)


def _validate_submit_response(response: SubmitResponse, what: str = "SUBMIT response") -> SubmitResponse:
    _check_task_id(response.task_id, what)
    _check_choice(response.status, RESPONSE_STATUSES, what, "status")
    _check_size(response.message, MAX_MESSAGE, what, "message")
    return response


def encode_submit_response(response: SubmitResponse) -> bytes:
    _validate_submit_response(response)
    return gojson.dumps({
        "task_id": response.task_id,
        "status": response.status,
        "message": response.message,
    })


def decode_submit_response(body: bytes) -> SubmitResponse:
    what = "SUBMIT response"
    document = gojson.loads_object(body, what)
    return _validate_submit_response(SubmitResponse(
        task_id=gojson.get_str(document, "task_id", what),
        status=gojson.get_int(document, "status", what, -(1 << 63), _MAX_MS),
        message=gojson.get_str(document, "message", what, ""),
    ), what)


# -- STATUS_UPDATE ----------------------------------------------------------

def _validate_status_update(update: StatusUpdate, what: str = "STATUS_UPDATE") -> StatusUpdate:
    _check_task_id(update.task_id, what)
    _check_choice(update.status, TASK_STATUSES, what, "status")
    _check_size(update.justification, MAX_JUSTIFICATION, what, "justification")
    return update


def encode_status_update(update: StatusUpdate) -> bytes:
    _validate_status_update(update)
    return gojson.dumps({
        "task_id": update.task_id,
        "status": update.status,
        "justification": update.justification,
    })


def decode_status_update(body: bytes) -> StatusUpdate:
    what = "STATUS_UPDATE"
    document = gojson.loads_object(body, what)
    return _validate_status_update(StatusUpdate(
        task_id=gojson.get_str(document, "task_id", what),
        status=gojson.get_str(document, "status", what),
        justification=gojson.get_str(document, "justification", what, ""),
    ), what)


# -- SEND_RESULTS -----------------------------------------------------------

def _validate_results(results: TaskResults, what: str = "SEND_RESULTS") -> TaskResults:
    _check_task_id(results.task_id, what)
    _check_choice(results.result_type, RESULT_TYPES, what, "result_type")
    _check_size(results.result_text, MAX_RESULT_TEXT, what, "result_text")
    _check_size(results.completed_at, MAX_TIMESTAMP, what, "completed_at")
    if results.result_type == RESULT_FILE or results.filename:
        check_base_name(results.filename, f"{what}: field 'filename'")
    if len(results.file_data) > MAX_RESULT_FILE_BYTES:
        raise DecodeError(
            f"{what}: field 'file_data' is {len(results.file_data)} bytes, "
            f"more than the limit of {MAX_RESULT_FILE_BYTES}"
        )
    for field in ("time_idle_ms", "time_staged_ms", "time_cpu_ms"):
        if not 0 <= getattr(results, field) <= _MAX_MS:
            raise DecodeError(f"{what}: field {field!r} must be a non-negative int64")
    return results


def encode_results(results: TaskResults) -> bytes:
    """The SEND_RESULTS body; empty strings, empty file data and zero timings are left out."""
    _validate_results(results)
    document: dict[str, str | int] = {"task_id": results.task_id, "result_type": results.result_type}
    if results.result_text:
        document["result_text"] = results.result_text
    if results.filename:
        document["filename"] = results.filename
    if results.file_data:
        document["file_data"] = base64.b64encode(results.file_data).decode("ascii")
    document["completed_at"] = results.completed_at
    for field in ("time_idle_ms", "time_staged_ms", "time_cpu_ms"):
        if getattr(results, field):
            document[field] = getattr(results, field)
    return gojson.dumps(document)


def _decode_file_data(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what}: field 'file_data' is not valid base64") from None


def decode_results(body: bytes) -> TaskResults:
    what = "SEND_RESULTS"
    document = gojson.loads_object(body, what)
    return _validate_results(TaskResults(
        # The timings first, as they always were: a body with several faults reports the same one.
        time_idle_ms=gojson.get_int(document, "time_idle_ms", what, 0, _MAX_MS, 0),
        time_staged_ms=gojson.get_int(document, "time_staged_ms", what, 0, _MAX_MS, 0),
        time_cpu_ms=gojson.get_int(document, "time_cpu_ms", what, 0, _MAX_MS, 0),
        task_id=gojson.get_str(document, "task_id", what),
        result_type=gojson.get_str(document, "result_type", what),
        completed_at=gojson.get_str(document, "completed_at", what, ""),
        result_text=gojson.get_str(document, "result_text", what, ""),
        filename=gojson.get_str(document, "filename", what, ""),
        file_data=_decode_file_data(gojson.get_str(document, "file_data", what, ""), what),
    ), what)


# -- requests the service receives ------------------------------------------

_BODY_DECODERS: dict[int, Callable[[bytes], StatusUpdate | TaskResults]] = {
    TYPE_STATUS_UPDATE: decode_status_update,
    TYPE_SEND_RESULTS: decode_results,
}


_MAX_REQUEST_LENGTH = {
    TYPE_SUBMIT: MAX_SUBMIT_FRAME,
    TYPE_STATUS_UPDATE: MAX_STATUS_UPDATE_FRAME,
    TYPE_SEND_RESULTS: typedframe.MAX_PAYLOAD,
}


def admit_request_frame(frame_type: int, length: int) -> None:
    """Refuse a request frame by its header: a type the service does not take, or longer than its type needs.

    Fits :class:`FrameReader`'s ``admit`` hook, so nothing of a refused
    frame's payload is ever held.
    """
    limit = _MAX_REQUEST_LENGTH.get(frame_type)
    if limit is None:
        name = TYPE_NAMES.get(frame_type, f"unknown type {frame_type}")
        raise DecodeError(f"task frame: {name} is not a request the task service accepts")
    if length > limit:
        raise DecodeError(f"task frame: a {TYPE_NAMES[frame_type]} of {length} bytes is longer than the "
                          f"{limit} bytes it may take")


def decode_request(frame: typedframe.Frame) -> SubmitRequest | StatusUpdate | TaskResults:
    """The body a daemon receives on port 1003, decoded according to ``frame``'s type.

    SUBMIT is a request here (the response shares its type number but travels
    the other way); RESULT and unknown types are refused since no current
    peer sends them and the service would not know what to do with them.
    """
    if frame.frame_type == TYPE_SUBMIT:
        return decode_submit_request(frame.payload)
    decoder = _BODY_DECODERS.get(frame.frame_type)
    if decoder is None:
        name = TYPE_NAMES.get(frame.frame_type, f"unknown type {frame.frame_type}")
        raise DecodeError(f"task frame: {name} is not a request the task service accepts")
    return decoder(frame.payload)

