"""What the registry keeps for the dashboard beyond its directory: a request
total that survives restarts, and online-node samples for the 24-hour and
7-day charts.

A sample is taken every minute but kept only as the first of its hour (at most
24 kept) and the first of its day (at most 7), so a restart inside an hour
adds nothing and the charts have no gaps or doubles.  Everything is one small
JSON file beside the registry's store, rewritten atomically on each tick and
at shutdown; without a store the history lives in memory only.
"""

import json
import os

HOUR = 3600
DAY = 24 * HOUR
KEEP_HOURLY = 24
KEEP_DAILY = 7
FIELDS = ("ts", "total_nodes", "online_nodes", "trust_links", "total_requests")


def history_path(store_path):
    return f"{store_path}.dashboard.json" if store_path else None


class History:
    def __init__(self, path=None):
        self.path = path
        self.earlier_requests = 0
        self.hourly = []
        self.daily = []
        if path and os.path.exists(path):
            with open(path) as handle:
                saved = json.load(handle)
            self.earlier_requests = int(saved.get("total_requests", 0))
            self.hourly = [self._clean(s) for s in saved.get("hourly", [])][-KEEP_HOURLY:]
            self.daily = [self._clean(s) for s in saved.get("daily", [])][-KEEP_DAILY:]

    @staticmethod
    def _clean(sample):
        return {name: int(sample[name]) for name in FIELDS}

    def total_requests(self, answered):
        """Requests answered over every run: earlier runs' total plus this run's."""
        return self.earlier_requests + answered

    def sample(self, now, counts, total_requests):
        """Record the figures at ``now`` if its hour (or day) has no sample yet."""
        sample = {"ts": int(now), "total_nodes": counts["total_nodes"],
                  "online_nodes": counts["active_nodes"],
                  "trust_links": counts["total_trust_links"], "total_requests": total_requests}
        for samples, bucket, keep in ((self.hourly, HOUR, KEEP_HOURLY),
                                      (self.daily, DAY, KEEP_DAILY)):
            if not samples or samples[-1]["ts"] // bucket < sample["ts"] // bucket:
                samples.append(sample)
                del samples[:-keep]

    def requests_per_day(self):
        """The last full day's requests, else the last hour's times 24, else 0 (as FK)."""
        if len(self.daily) >= 2:
            return self.daily[-1]["total_requests"] - self.daily[-2]["total_requests"]
        if len(self.hourly) >= 2:
            return 24 * (self.hourly[-1]["total_requests"] - self.hourly[-2]["total_requests"])
        return 0

    def save(self, total_requests):
        if not self.path:
            return
        temporary = f"{self.path}.tmp"
        with open(temporary, "w") as handle:
            json.dump({"total_requests": total_requests, "hourly": self.hourly,
                       "daily": self.daily}, handle)
        os.replace(temporary, self.path)
