"""Go's duration syntax (``time.ParseDuration``): ``90s``, ``1h30m``, ``1.5h``, ``250ms``, ``0``.

Managed-network rules carry their cycle and grace periods in this form (the
reference writes and reads them with Go's parser), and ``pilotctl`` accepts it
for its timeouts, so one parser serves both.
"""

import re

from pilotnet.errors import DecodeError

# One number-with-unit term; a duration is one or more of them, optionally signed.  A pattern,
# not a compiled regex: ``re`` compiles and caches it on first use, so a pilotctl command that
# never parses a duration does not pay for compiling it at start-up.
_TERM = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)"
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}
# Go's limit: the nanoseconds must fit a signed 64-bit integer (about 292 years).
_MAX_SECONDS = (2 ** 63 - 1) / 1e9
MAX_LENGTH = 64


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string; :class:`DecodeError` for anything Go would refuse."""
    if not isinstance(text, str) or not text or len(text) > MAX_LENGTH:
        raise DecodeError(f"invalid duration {text!r}")
    body, sign = text, 1.0
    if body[0] in "+-":
        sign, body = (-1.0 if body[0] == "-" else 1.0), body[1:]
    if body == "0":
        return 0.0
    position, seconds = 0, 0.0
    for match in re.finditer(_TERM, body):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(body):
        raise DecodeError(f"invalid duration {text!r}")
    if seconds > _MAX_SECONDS:
        raise DecodeError(f"invalid duration {text!r}: out of range")
    return sign * seconds
