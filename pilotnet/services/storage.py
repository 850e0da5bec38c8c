"""What the services keep on disk for peers, and the limits on it.

* :func:`place_new` / :func:`write_new`: a finished file gets a fresh name and
  never replaces one (a hard link, which fails if the name exists, then the
  temporary name is dropped), so two peers sending ``a.txt`` both keep theirs
  and no peer can overwrite what another sent;
* :func:`remove_leftovers`: the hidden ``.partial-*`` / ``.tmp-*`` files a
  crash left behind, removed when the daemon starts;
* :class:`DirectoryQuota`: bytes and files a directory may hold, with room
  reserved for transfers still arriving, checked before a frame is taken;
* :class:`ByteBudget`: bytes of unfinished frames held in memory, shared by
  every connection of the services;
* :class:`FileWriter`: the services' file work, in order, in one thread, so a
  16 MiB result or a slow disk never stalls the reactor (the registry store's
  pattern: inline until :meth:`FileWriter.startService`, which tests skip).
"""

import os
import tempfile
from pathlib import Path
from typing import Callable

from twisted.application import service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from pilotnet.errors import PilotError

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
PARTIAL_PREFIX = ".partial-"
LEFTOVER_PREFIXES = (PARTIAL_PREFIX, ".tmp-")  # ours, and write_private_file's
QUOTA_EXCEEDED = "quota_exceeded"
BUSY = "busy"
MiB = 1024 * 1024
# Refusals are always counted, and logged at most 10 at once then one every 6 seconds (a flood stays quiet).
REFUSAL_LOG_RATE = (10, 10 / 60)


def open_partial(directory: Path):
    """``(path, handle)`` of a new private hidden file in ``directory`` to fill and then :func:`place_new`."""
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=directory)
    os.fchmod(descriptor, FILE_MODE)
    return Path(name), os.fdopen(descriptor, "wb")


def place_new(temporary: Path, directory: Path, stem: str, suffix: str) -> Path:
    """Give ``temporary`` the name ``stem+suffix`` in ``directory``, or ``stem-1+suffix``… if taken.

    ``os.link`` refuses an existing name atomically, so this can never
    replace a file, whoever else writes into the directory meanwhile.
    """
    counter = 0
    while True:
        candidate = directory / (f"{stem}{suffix}" if not counter else f"{stem}-{counter}{suffix}")
        try:
            os.link(temporary, candidate)
        except FileExistsError:
            counter += 1
            continue
        os.unlink(temporary)
        return candidate


def write_new(directory: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Write ``data`` to a fresh private file named after ``stem`` and ``suffix``; its path."""
    path, handle = open_partial(directory)
    try:
        with handle:
            handle.write(data)
        return place_new(path, directory, stem, suffix)
    except BaseException:
        discard(path)
        raise


def discard(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_leftovers(directory: Path) -> int:
    """Delete the partial and temporary files a crash left in ``directory``; how many."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(LEFTOVER_PREFIXES) and entry.is_file(follow_symlinks=False):
            discard(Path(entry.path))
            removed += 1
    return removed


class DirectoryQuota:
    """At most ``max_bytes`` and ``max_files`` in one directory, counting transfers in progress.

    The tally is taken from the directory once and then kept up to date by the
    service; files deleted by someone else (``pilotctl received --clear``) are
    noticed by a fresh count when a transfer would not fit, at most once per
    ``recount_interval`` seconds, so a flood of refused frames does not turn
    into a flood of directory scans.
    """

    def __init__(self, directory: Path, max_bytes: int, max_files: int, clock, *, what: str, hint: str,
                 recount_interval: float = 1.0):
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.clock = clock
        self.what = what
        self.hint = hint
        self.recount_interval = recount_interval
        self.used_bytes = 0
        self.used_files = 0
        self.reserved_bytes = 0
        self.reserved_files = 0
        self._counted_at = None
        self._recount()

    def _recount(self) -> None:
        used_bytes = used_files = 0
        try:
            for entry in os.scandir(self.directory):
                if entry.is_file(follow_symlinks=False) and not entry.name.startswith(LEFTOVER_PREFIXES):
                    used_bytes += entry.stat(follow_symlinks=False).st_size
                    used_files += 1
        except FileNotFoundError:
            pass
        self.used_bytes, self.used_files = used_bytes, used_files
        self._counted_at = self.clock.seconds()

    def _fits(self, size: int) -> bool:
        return (self.used_bytes + self.reserved_bytes + size <= self.max_bytes
                and self.used_files + self.reserved_files + 1 <= self.max_files)

    def reserve(self, size: int) -> None:
        """Hold room for one file of ``size`` bytes, or refuse with ``quota_exceeded``."""
        if not self._fits(size) and self.clock.seconds() - self._counted_at >= self.recount_interval:
            self._recount()
        if not self._fits(size):
            raise PilotError(
                f"{self.what} are full: {self.used_files} files, {self.used_bytes} bytes stored, "
                f"{self.reserved_files} arriving (limits {self.max_files} files, {self.max_bytes} bytes); "
                f"{size} more bytes refused",
                code=QUOTA_EXCEEDED, hint=self.hint)
        self.reserved_bytes += size
        self.reserved_files += 1

    def stored(self, reserved: int, size: int) -> None:
        """A reserved file was written with ``size`` bytes."""
        self.release(reserved)
        self.used_bytes += size
        self.used_files += 1

    def release(self, reserved: int) -> None:
        """A reserved file will not be written."""
        self.reserved_bytes -= reserved
        self.reserved_files -= 1


class ByteBudget:
    """Bytes of unfinished frames the services may hold in memory, across all connections."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0

    def take(self, size: int, what: str) -> None:
        """Hold ``size`` bytes, or refuse with ``busy`` when the budget cannot cover them."""
        if self.in_use + size > self.limit:
            raise PilotError(f"{what}: {size} bytes would exceed the {self.limit} bytes of unfinished frames "
                             f"this node holds in memory ({self.in_use} in use)", code=BUSY,
                             hint="try again when the receiver's other transfers have finished")
        self.in_use += size

    def give_back(self, size: int) -> None:
        self.in_use -= size


class FileWriter(service.Service):
    """Runs file work in submission order: inline, or in one thread once the service starts.

    One thread keeps the order (a file's chunks, then its rename, then its
    acknowledgment) without locks; the Deferreds fire on the reactor thread.
    """

    # Twisted's Service has `name = None` without an annotation, so mypy takes None for its type.
    name = "file-writer"  # type: ignore[assignment]

    def __init__(self, reactor=None):
        self.reactor = reactor
        self._pool = None
        self._run: Callable[..., Deferred] = maybeDeferred

    def run(self, work, *args) -> Deferred:
        """``work(*args)`` after every earlier piece of work; a Deferred of its result."""
        return self._run(work, *args)

    def startService(self):
        super().startService()
        if self.reactor is not None:
            self._pool = ThreadPool(minthreads=1, maxthreads=1, name="service-files")
            self._pool.start()
            self._run = lambda work, *args: deferToThreadPool(self.reactor, self._pool, work, *args)

    def stopService(self):
        super().stopService()
        pool, self._pool = self._pool, None
        self._run = maybeDeferred
        if pool is not None:
            pool.stop()
