"""The services' files: fresh names that never replace, leftovers, quotas, the memory budget, the writer thread."""

import threading
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pilotnet.errors import PilotError
from pilotnet.services import storage
from tests.services.test_dataexchange import QueuedWriter


class FileTests(SynchronousTestCase):
    def setUp(self):
        self.directory = Path(self.mktemp())

    def test_new_files_never_replace_existing_ones(self):
        first = storage.write_new(self.directory, "a", ".txt", b"1")
        second = storage.write_new(self.directory, "a", ".txt", b"2")
        (self.directory / "a-2.txt").write_bytes(b"someone else's")
        third = storage.write_new(self.directory, "a", ".txt", b"3")
        self.assertEqual([p.name for p in (first, second, third)], ["a.txt", "a-1.txt", "a-3.txt"])
        self.assertEqual([p.read_bytes() for p in (first, second, third)], [b"1", b"2", b"3"])
        self.assertEqual((self.directory / "a-2.txt").read_bytes(), b"someone else's")
        self.assertEqual(third.stat().st_mode & 0o777, 0o600)
        self.assertFalse([p for p in self.directory.iterdir() if p.name.startswith(".")])

    def test_leftovers_are_only_our_hidden_temporaries(self):
        self.directory.mkdir()
        for name in (".partial-1", ".tmp-2", "kept.txt", "x.partial-3"):
            (self.directory / name).write_bytes(b"x")
        (self.directory / ".partial-dir").mkdir()
        self.assertEqual(storage.remove_leftovers(self.directory), 2)
        self.assertEqual(sorted(p.name for p in self.directory.iterdir()), [".partial-dir", "kept.txt", "x.partial-3"])
        self.assertEqual(storage.remove_leftovers(self.directory / "missing"), 0)


class QuotaTests(SynchronousTestCase):
    def setUp(self):
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        (self.directory / "old.bin").write_bytes(b"x" * 10)
        self.clock = Clock()
        self.quota = storage.DirectoryQuota(self.directory, 30, 3, self.clock, what="files", hint="clear them")

    def test_counts_what_is_there_and_what_is_arriving(self):
        self.assertEqual((self.quota.used_files, self.quota.used_bytes), (1, 10))
        self.quota.reserve(15)
        error = self.assertRaises(PilotError, self.quota.reserve, 6)
        self.assertEqual((error.code, error.hint), (storage.QUOTA_EXCEEDED, "clear them"))
        self.quota.stored(15, 12)
        self.quota.reserve(8)
        self.assertRaises(PilotError, self.quota.reserve, 0)  # three files: no room for a fourth
        self.quota.release(8)
        self.quota.reserve(0)

    def test_files_removed_by_someone_else_are_noticed_at_most_once_a_second(self):
        self.quota.reserve(20)
        self.quota.stored(20, 20)
        (self.directory / "old.bin").unlink()
        self.assertRaises(PilotError, self.quota.reserve, 5)  # counted just now: no recount yet
        self.clock.advance(1)
        self.quota.reserve(5)
        self.assertEqual(self.quota.used_bytes, 0)  # the other file was never written to disk here


class BudgetTests(SynchronousTestCase):
    def test_take_and_give_back(self):
        budget = storage.ByteBudget(100)
        budget.take(60, "a")
        error = self.assertRaises(PilotError, budget.take, 41, "b")
        self.assertEqual(error.code, storage.BUSY)
        budget.give_back(60)
        budget.take(100, "c")


class WriterTests(TestCase):
    def test_work_runs_in_order_off_the_reactor_thread_once_started(self):
        writer = storage.FileWriter(reactor)
        self.assertEqual(writer.run(threading.get_ident).result, threading.get_ident())  # inline until started
        writer.startService()
        self.addCleanup(writer.stopService)
        order = []
        runs = [writer.run(lambda n=n: order.append(n) or threading.get_ident()) for n in range(20)]

        def check(threads):
            self.assertEqual(order, list(range(20)))
            self.assertEqual(len(set(threads)), 1)
            self.assertNotEqual(threads[0], threading.get_ident())

        return gatherResults(runs).addCallback(check)


class SnapshotFileTests(SynchronousTestCase):
    """A state's file, written by the writer with the newest snapshot; flushed() fires once it is on disk."""

    def setUp(self):
        self.path = Path(self.mktemp()) / "state.json"
        self.writer = QueuedWriter()
        self.file = storage.SnapshotFile(self.path, self.writer)

    def test_without_a_writer_each_snapshot_is_written_at_once(self):
        inline = storage.SnapshotFile(self.path)
        inline.write(b"one")
        self.assertEqual(self.path.read_bytes(), b"one")
        self.successResultOf(inline.flushed())
        self.assertEqual(self.path.stat().st_mode & 0o777, 0o600)

    def test_snapshots_that_come_faster_than_the_disk_cost_one_write(self):
        for number in range(100):
            self.file.write(b"%d" % number)
        flushed = self.file.flushed()
        self.assertEqual(len(self.writer.queue), 1)
        self.assertNoResult(flushed)
        self.assertFalse(self.path.exists())
        self.writer.run_all()
        self.assertEqual(self.path.read_bytes(), b"99")
        self.successResultOf(flushed)
        self.successResultOf(self.file.flushed())

    def test_flushed_waits_for_what_came_before_it_only(self):
        self.file.write(b"first")
        first = self.file.flushed()
        self.writer.run_all()
        self.successResultOf(first)
        self.file.write(b"second")
        second = self.file.flushed()
        self.assertNoResult(second)
        self.writer.run_all()
        self.successResultOf(second)
        self.assertEqual(self.path.read_bytes(), b"second")

    def test_a_failed_write_fails_its_waiters_and_the_next_snapshot_is_written(self):
        self.path.parent.parent.mkdir(parents=True, exist_ok=True)
        self.path.parent.write_bytes(b"a file where the directory goes")
        self.file.write(b"lost")
        failed = self.file.flushed()
        self.writer.run_all()
        self.assertEqual(self.failureResultOf(failed, PilotError).value.code, "internal")
        self.flushLoggedErrors(OSError)
        self.path.parent.unlink()
        self.file.write(b"kept")
        self.writer.run_all()
        self.successResultOf(self.file.flushed())
        self.assertEqual(self.path.read_bytes(), b"kept")


class SnapshotFileOnAThreadTests(TestCase):
    async def test_the_newest_snapshot_is_written_before_the_writer_stops(self):
        path = Path(self.mktemp()) / "state.json"
        writer = storage.FileWriter(reactor)
        writer.startService()
        file = storage.SnapshotFile(path, writer)
        for number in range(50):
            file.write(b"%d" % number)
        await file.flushed()
        self.assertEqual(path.read_bytes(), b"49")
        file.write(b"last words")
        writer.stopService()  # its thread writes what it was handed before it ends
        self.assertEqual(path.read_bytes(), b"last words")
