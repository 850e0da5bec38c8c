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
  pattern: inline until :meth:`FileWriter.startService`, which tests skip);
* :class:`SnapshotFile`: a file rewritten whole with a state's newest
  snapshot (the daemon's trust table, a managed network's state) by that
  writer, the newest snapshot winning, so a state that changes at a peer's
  pace costs at most one write running and one waiting.
"""

import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

from twisted.application import service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from pilotnet.crypto.identity import write_private_file
from pilotnet.errors import INTERNAL, PilotError

log = Logger()

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


class SnapshotFile:
    """A file rewritten whole, atomically, with the newest snapshot of a state, by a :class:`FileWriter`.

    :meth:`write` hands over a snapshot and returns at once; the writer's
    thread writes the newest one it has (``write_private_file``: fsync, then
    rename), so however fast snapshots come, at most one write runs and one
    snapshot waits.  The thread takes the newest snapshot itself, so one handed
    over before the writer stops is written before its thread ends.
    :meth:`flushed` fires once every snapshot handed over before it is on disk:
    what an answer promising durability waits for.  Without a writer the
    file is written inline (tests, tools).
    """

    def __init__(self, path: os.PathLike[str] | str, writer: "FileWriter | None" = None):
        self.path = path
        self.writer = writer if writer is not None else FileWriter()
        self._lock = threading.Lock()
        self._newest: tuple[int, bytes] | None = None  # guarded by _lock, like _scheduled
        self._scheduled = False
        self._given = 0
        self._on_disk = 0  # set by the thread; read on the reactor once its work has reported back
        self._waiting: list[tuple[int, Deferred]] = []

    def write(self, data: bytes) -> None:
        self._given += 1
        with self._lock:
            self._newest = (self._given, data)
            if self._scheduled:
                return
            self._scheduled = True
        self.writer.run(self._write_newest).addBoth(self._written)

    def flushed(self) -> Deferred:
        """Fires once what was handed to :meth:`write` so far is on disk; fails if writing it failed."""
        if self._on_disk >= self._given:
            return succeed(None)
        done: Deferred = Deferred()
        self._waiting.append((self._given, done))
        return done

    def _write_newest(self) -> None:
        """On the writer's thread: write the newest snapshot until there is none newer than the file."""
        while True:
            with self._lock:
                newest, self._newest = self._newest, None
                if newest is None:
                    self._scheduled = False
                    return
            generation, data = newest
            try:
                write_private_file(self.path, data)
            except BaseException:
                with self._lock:
                    self._scheduled = False
                raise
            self._on_disk = generation

    def _written(self, result: object) -> None:
        failed = result if isinstance(result, Failure) else None
        if failed is not None:
            log.failure("{path} not written", failed, path=str(self.path))
        waiting, self._waiting = self._waiting, []
        for generation, done in waiting:
            if generation <= self._on_disk:
                done.callback(None)
            elif failed is not None:
                done.errback(PilotError(f"{self.path} could not be written: {failed.getErrorMessage()}",
                                        code=INTERNAL))
            else:
                self._waiting.append((generation, done))
        with self._lock:
            again = self._newest is not None and not self._scheduled
            self._scheduled = self._scheduled or again
        if again:  # a snapshot came while a failed write was ending: nobody else will write it
            self.writer.run(self._write_newest).addBoth(self._written)
