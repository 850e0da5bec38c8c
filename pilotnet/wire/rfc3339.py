"""RFC 3339 timestamps: the one formatter and the one parser.

Task files, inbox listings, trust records and Go registry snapshots carry
times as RFC 3339 text.  We write Go's ``time.RFC3339`` layout in UTC, whole
seconds (``2026-03-01T12:00:00Z``), the form the reference's task files use.
We read what Go writes in any of its layouts: whole or fractional seconds (Go
writes up to nine digits; Python keeps six), ``Z`` or a numeric offset.
Anything else, a time without an offset included, is refused.

``datetime`` rather than ``time``: this room reads no clock, it only converts.
"""

import math
import re
from datetime import datetime, timezone

from pilotnet.errors import DecodeError

_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)
_HINT = "write a time like 2026-03-01T12:00:00Z"


def format_rfc3339(seconds: float) -> str:
    """Unix ``seconds`` as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC; the fraction is dropped, as ``gmtime`` does)."""
    moment = datetime.fromtimestamp(math.floor(seconds), timezone.utc)
    # Not strftime: C's %Y does not pad years before 1000 to four digits.
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


def parse_rfc3339(text: str, what: str = "time") -> float:
    """Unix seconds of an RFC 3339 time; :class:`DecodeError` naming ``what`` if it is not one."""
    match = _RFC3339.match(text) if isinstance(text, str) else None
    if match is None:
        raise DecodeError(f"invalid {what} {str(text)[:64]!r}: not an RFC 3339 time", hint=_HINT)
    date, clock, fraction, zone = match.groups()
    if zone in ("Z", "z"):
        zone = "+00:00"
    try:
        parsed = datetime.fromisoformat(f"{date}T{clock}{(fraction or '')[:7]}{zone}")
    except ValueError as error:  # a day or hour out of range
        raise DecodeError(f"invalid {what} {text!r}: {error}", hint=_HINT) from None
    return parsed.timestamp()
