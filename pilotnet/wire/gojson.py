"""JSON as Go's ``encoding/json`` writes it, and strict reading of JSON objects.

Peers hash, sign or compare some JSON bodies byte for byte (the port-444
replay check hashes the re-encoded message), so ours must be the bytes Go's
``json.Marshal`` of a struct produces:

* keys in struct declaration order (callers pass them in that order),
* compact: no spaces after ``,`` or ``:``,
* UTF-8 as is, except that ``<``, ``>``, ``&``, U+2028 and U+2029 are written
  ``\\u003c``, ``\\u003e``, ``\\u0026``, ``\\u2028``, ``\\u2029``,
* control characters as ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f`` or ``\\u00XX``
  (Python's encoder and Go >= 1.22 agree on these).

Floats are refused rather than formatted, because Go spells them differently
from Python (``1`` versus ``1.0``) and none of the service bodies carry one.

On the reading side every failure (bad UTF-8, bad JSON, ``NaN``, nesting too
deep, wrong field type) becomes a :class:`DecodeError` naming the field.
"""

from __future__ import annotations

from pilotnet.errors import DecodeError
from pilotnet.wire import cjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

GO_ESCAPES = str.maketrans({
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
})
# Lone surrogates cannot be UTF-8; Go writes U+FFFD for invalid text.
_SURROGATES = {code: "\ufffd" for code in range(0xD800, 0xE000)}

def _refuse_floats(value: object) -> None:
    if isinstance(value, float):
        raise TypeError("gojson does not encode floats: Go formats them differently")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_floats(item)


def dumps(value: object) -> bytes:
    """``value`` (dicts keep their key order) as the bytes Go's json.Marshal writes."""
    _refuse_floats(value)
    text = cjson.dumps(value, ensure_ascii=False, separators=(",", ":"),
                       allow_nan=False).translate(GO_ESCAPES)
    return text.translate(_SURROGATES).encode("utf-8")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


# Built once: it runs for every registry request.
_decode = cjson.make_loads(_refuse_constant)


def loads_object(data: bytes | bytearray | memoryview, what: str) -> dict[str, Any]:
    """Parse ``data`` (bytes) as one JSON object; :class:`DecodeError` naming ``what``."""
    try:
        text = bytes(data).decode("utf-8")
        value = _decode(text)
    except UnicodeDecodeError:
        raise DecodeError(f"{what}: not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


_REQUIRED = object()


def _field(document: dict[str, Any], key: str, what: str, default: object) -> object:
    # A JSON null leaves a Go field at its zero value, like a missing key.
    value = document.get(key)
    if value is None:
        if default is _REQUIRED:
            raise DecodeError(f"{what}: field {key!r} is missing")
        return default
    return value


def get_str(document: dict[str, Any], key: str, what: str, default: object = _REQUIRED) -> str:
    """The text field ``key``; ``default`` when absent (required if none given)."""
    value = _field(document, key, what, default)
    if not isinstance(value, str):
        raise DecodeError(f"{what}: field {key!r} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A "\ud800" escape decodes to a lone surrogate; Go reads it as U+FFFD.
        value = value.translate(_SURROGATES)
    return value


def get_int(document: dict[str, Any], key: str, what: str, minimum: int, maximum: int,
            default: object = _REQUIRED) -> int:
    """The integer field ``key`` within ``[minimum, maximum]`` (Go's integer types refuse 1.0)."""
    value = _field(document, key, what, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what}: field {key!r} must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise DecodeError(f"{what}: field {key!r} = {value} is outside {minimum}..{maximum}")
    return value
