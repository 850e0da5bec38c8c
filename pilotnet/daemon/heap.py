"""Give the heap that stream traffic used back to the system once the traffic stops.

Stream data passes through the daemon as ``bytes`` of 1-60 KiB (segments,
chunks, reads), which the C allocator serves from its heap.  After a burst
of traffic the objects are gone but the heap keeps their pages: the
allocator returns memory to the system only from the top of the heap, and a
few live objects above the freed space pin it.  Measured over the
benchmark's transfers, that was most of the difference between a daemon's
idle RSS (~54 MB) and its RSS afterwards (~80 MB): served from mmap instead
(``MALLOC_MMAP_THRESHOLD_``), or trimmed, the same run ends at the idle figure.

glibc's ``malloc_trim`` releases free pages anywhere in the heap.  Nothing
in the standard library or Twisted calls it, hence ctypes.  It runs once
per quiet spell: when a check finds that stream bytes moved since the
previous check but none since the last one, so a busy daemon never pays for
it and an idle one trims once.  Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

from typing import Callable

#: Seconds between checks for the end of a spell of traffic.
CHECK_INTERVAL = 2.0


def _glibc_trim() -> Callable[[], object] | None:
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class HeapTrim:
    """Checks (every :data:`CHECK_INTERVAL`, from a timer) whether traffic stopped, and trims then."""

    def __init__(self, moved: Callable[[], int], trim: Callable[[], object] | None = None) -> None:
        self._moved = moved
        self._trim = trim
        self._seen = moved()
        self._busy = False
        self.trims = 0

    def check(self) -> None:
        moved = self._moved()
        if moved != self._seen:
            self._seen, self._busy = moved, True
            return
        if self._busy:
            self._busy = False
            if self._trim is None:
                self._trim = _glibc_trim() or (lambda: None)
            self._trim()
            self.trims += 1
