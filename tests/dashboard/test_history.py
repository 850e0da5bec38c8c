"""History samples and totals, kept across restarts."""

import os

from twisted.trial.unittest import TestCase

from pilotnet.dashboard.history import DAY, HOUR, KEEP_DAILY, KEEP_HOURLY, History
from tests.dashboard.fixtures import Polo

COUNTS = {"total_nodes": 5, "active_nodes": 3, "total_trust_links": 1}


class HistoryTests(TestCase):
    def test_one_sample_per_hour_and_day_bounded(self):
        history = History()
        start = 1_700_000_000 // DAY * DAY
        for minute in range(0, 9 * 24 * 60, 30):
            history.sample(start + minute * 60, COUNTS, total_requests=minute)
        self.assertEqual(len(history.hourly), KEEP_HOURLY)
        self.assertEqual(len(history.daily), KEEP_DAILY)
        self.assertEqual([s["ts"] % HOUR for s in history.hourly], [0] * KEEP_HOURLY)
        self.assertEqual(history.daily[-1]["ts"], start + 8 * DAY)
        self.assertEqual(history.requests_per_day(), 24 * 60)

    def test_requests_per_day_from_hours_before_there_are_two_days(self):
        history = History()
        self.assertEqual(history.requests_per_day(), 0)
        history.sample(0, COUNTS, 100)
        history.sample(HOUR, COUNTS, 150)
        self.assertEqual(history.requests_per_day(), 24 * 50)

    def test_totals_and_samples_survive_a_restart(self):
        path = self.mktemp()
        history = History(path)
        history.sample(HOUR, COUNTS, 40)
        history.save(70)
        again = History(path)
        self.assertEqual(again.total_requests(5), 75)
        self.assertEqual(again.hourly, history.hourly)
        # A restart within the same hour adds no sample.
        again.sample(HOUR + 60, COUNTS, 75)
        self.assertEqual(len(again.hourly), 1)
        self.assertFalse(os.path.exists(f"{path}.tmp"))

    def test_the_dashboard_samples_every_minute_and_saves_at_stop(self):
        path = self.mktemp()
        polo = Polo(self, History(path))
        polo.add(1)
        polo.clock.advance(HOUR)
        polo.dashboard.stopService()
        saved = History(path)
        self.assertEqual(len(saved.hourly), 2)
        self.assertEqual(saved.hourly[-1]["total_nodes"], 1)

