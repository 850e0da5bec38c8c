"""Go's duration syntax (``time.ParseDuration``): ``90s``, ``1h30m``, ``1.5h``, ``250ms``, ``0``.

Managed-network rules carry their cycle and grace periods in this form (the
reference writes and reads them with Go's parser), and ``pilotctl`` accepts it
for its timeouts, so one parser serves both.  Scanned by hand, not with
``re``: importing ``re`` (and the ``enum`` it imports) costs pilotctl, which
starts once per agent action, more than half a bare interpreter's start.
"""

from pilotnet.errors import DecodeError

_DIGITS = "0123456789"
# Longest first where one unit is the start of another ("ms" before "m").
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}
# Go's limit: the nanoseconds must fit a signed 64-bit integer (about 292 years).
_MAX_SECONDS = (2 ** 63 - 1) / 1e9
MAX_LENGTH = 64


def decimal_end(text: str, start: int) -> int:
    """Where the decimal number (``5``, ``5.``, ``5.25``, ``.25``) at ``text[start:]`` ends; ``start`` if none."""
    end = start
    while end < len(text) and text[end] in _DIGITS:
        end += 1
    if end < len(text) and text[end] == ".":
        fraction = end + 1
        while fraction < len(text) and text[fraction] in _DIGITS:
            fraction += 1
        if end > start or fraction > end + 1:
            return fraction
    return end


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string; :class:`DecodeError` for anything Go would refuse."""
    if not isinstance(text, str) or not text or len(text) > MAX_LENGTH:
        raise DecodeError(f"invalid duration {str(text)[:MAX_LENGTH]!r}")
    body, sign = text, 1.0
    if body[0] in "+-":
        sign, body = (-1.0 if body[0] == "-" else 1.0), body[1:]
    if body == "0":
        return 0.0
    position, seconds = 0, 0.0
    while position < len(body):
        number_end = decimal_end(body, position)
        unit = next((unit for unit in _UNIT_SECONDS if body.startswith(unit, number_end)), None)
        if number_end == position or unit is None:
            break
        seconds += float(body[position:number_end]) * _UNIT_SECONDS[unit]
        position = number_end + len(unit)
    if position == 0 or position != len(body):
        raise DecodeError(f"invalid duration {text!r}")
    if seconds > _MAX_SECONDS:
        raise DecodeError(f"invalid duration {text!r}: out of range")
    return sign * seconds
