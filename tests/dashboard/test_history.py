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
        # One request a minute: a day of them, counted from the sample a day back.
        now = start + 9 * DAY
        self.assertEqual(history.requests_last_day(now, total_requests=9 * 24 * 60), 24 * 60)

    def test_requests_in_the_last_day_count_from_the_oldest_sample_of_a_young_history(self):
        history = History()
        self.assertEqual(history.requests_last_day(0, 5), 0)
        history.sample(0, COUNTS, 100)
        self.assertEqual(history.requests_last_day(60, 130), 30)
        history.sample(HOUR, COUNTS, 150)
        self.assertEqual(history.requests_last_day(HOUR + 60, 160), 60)
        self.assertEqual(history.requests_last_day(DAY + 60, 400), 300)

    def test_charts_end_with_the_latest_sample_not_the_hours_first(self):
        history = History()
        history.sample(HOUR, COUNTS, 0)
        self.assertEqual(history.chart(history.hourly), history.hourly)
        later = dict(COUNTS, active_nodes=4)
        history.sample(HOUR + 600, later, 0)
        self.assertEqual(len(history.hourly), 1)
        chart = history.chart(history.hourly)
        self.assertEqual([s["online_nodes"] for s in chart], [3, 4])
        self.assertIs(chart[-1], history.latest)
        self.assertEqual(history.chart([]), [history.latest])

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

