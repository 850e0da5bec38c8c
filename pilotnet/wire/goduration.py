"""Go's duration syntax (``time.ParseDuration``): ``30s``, ``1m30s``, ``250ms``, ``1.5h``, ``-2m``, ``0``.

The reference writes durations this way wherever they travel as text: a
managed network's ``cycle`` and ``grace``, a policy document's
``config.cycle``, pilotctl's ``--timeout``.  The text is a sequence of
decimal numbers each followed by a unit (``ns``, ``us``/``µs``, ``ms``,
``s``, ``m``, ``h``), with an optional sign in front; ``0`` alone needs no
unit.  Parsed to seconds as a float.
"""

from __future__ import annotations

import re

from pilotnet.errors import DecodeError

#: Long enough for any duration anyone writes; longer text is refused before the regex sees it.
MAX_LENGTH = 64

_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds from Go's duration syntax; :class:`DecodeError` for anything else."""
    if not isinstance(text, str) or not text or len(text) > MAX_LENGTH:
        raise DecodeError(f"invalid duration {str(text)[:MAX_LENGTH]!r}: use Go's syntax, e.g. 30s, 5m or 1h30m")
    body, sign = text, 1.0
    if body[0] in "+-":
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    position, seconds = 0, 0.0
    for match in _PART.finditer(body):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(body):
        raise DecodeError(f"invalid duration {text!r}: use Go's syntax, e.g. 30s, 5m or 1h30m")
    return sign * seconds
