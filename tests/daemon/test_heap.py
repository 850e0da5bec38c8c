"""The heap is trimmed once when stream traffic stops: never while it flows, never again while idle."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.heap import HeapTrim


class HeapTrimTests(SynchronousTestCase):
    def setUp(self):
        self.moved = 0
        self.trimmed = 0
        self.heap = HeapTrim(lambda: self.moved, trim=self.trim)

    def trim(self):
        self.trimmed += 1

    def test_an_idle_daemon_is_never_trimmed(self):
        for _ in range(5):
            self.heap.check()
        self.assertEqual(self.trimmed, 0)

    def test_trims_once_when_traffic_stops_and_not_while_it_flows(self):
        for _ in range(3):
            self.moved += 1_000_000
            self.heap.check()
        self.assertEqual(self.trimmed, 0)
        for _ in range(4):
            self.heap.check()
        self.assertEqual((self.trimmed, self.heap.trims), (1, 1))
        self.moved += 10
        self.heap.check()
        self.heap.check()
        self.assertEqual(self.trimmed, 2)

    def test_the_real_trim_runs_wherever_the_daemon_does(self):
        heap = HeapTrim(lambda: self.moved)
        self.moved += 1
        heap.check()
        heap.check()
        self.assertEqual(heap.trims, 1)
