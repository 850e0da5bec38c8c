"""What the registry keeps for the dashboard beyond its directory: a request
total that survives restarts, and online-node samples for the 24-hour and
7-day charts.

A sample is taken at start, every minute and whenever the figures change, but
kept only as the first of its hour (at most 24 kept) and the first of its day
(at most 7), so a restart inside an hour adds nothing and the charts have no
gaps or doubles.  The latest sample is kept apart (:attr:`History.latest`):
the charts end with it, so they show now, not the hour's first minute.
Everything but the latest sample is one small JSON file beside the registry's
store, rewritten atomically every minute and at shutdown; without a store the
history lives in memory only.
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
        self.latest = None
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
        self.latest = sample
        for samples, bucket, keep in ((self.hourly, HOUR, KEEP_HOURLY),
                                      (self.daily, DAY, KEEP_DAILY)):
            if not samples or samples[-1]["ts"] // bucket < sample["ts"] // bucket:
                samples.append(sample)
                del samples[:-keep]

    def chart(self, samples):
        """``samples`` (hourly or daily) followed by the latest sample when it is newer."""
        if self.latest is not None and (not samples or samples[-1]["ts"] < self.latest["ts"]):
            return [*samples, self.latest]
        return list(samples)

    def requests_last_day(self, now, total_requests):
        """Requests answered in the 24 hours before ``now`` (``total_requests`` is the total now).

        Counted from the newest sample at least a day old; when the history is
        younger than a day, from its oldest sample (so a registry started an
        hour ago shows that hour's requests, never 0 beside a non-zero total).
        """
        samples = sorted(self.hourly + self.daily, key=lambda sample: sample["ts"])
        if not samples:
            return 0
        older = [sample for sample in samples if sample["ts"] <= now - DAY]
        start = older[-1] if older else samples[0]
        return max(0, total_requests - start["total_requests"])

    def save(self, total_requests):
        if not self.path:
            return
        temporary = f"{self.path}.tmp"
        with open(temporary, "w") as handle:
            json.dump({"total_requests": total_requests, "hourly": self.hourly,
                       "daily": self.daily}, handle)
        os.replace(temporary, self.path)
