"""The dashboard inside the registry process: figures, history, live feed, HTTP site.

:class:`Dashboard` is a twistd service that watches the registry server's
commits (``server.commit_observers``), keeps the current
:class:`~pilotnet.dashboard.snapshot.Snapshot` (rebuilt on change, at most once
per ``MIN_REBUILD`` seconds, and at least every ``MAX_AGE`` seconds so online
status follows the clock), samples the history every minute and tells open
pages about changes.
"""

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.web.server import Site

from pilotnet.dashboard.app import DashboardApp
from pilotnet.dashboard.history import History, history_path
from pilotnet.dashboard.live import LiveFeed
from pilotnet.dashboard.snapshot import Snapshot

MIN_REBUILD = 1.0
MAX_AGE = 10.0
SAMPLE_INTERVAL = 60.0


class Dashboard(MultiService):
    def __init__(self, server, clock, history=None):
        super().__init__()
        self.server = server
        self.clock = clock
        self.history = history if history is not None else History()
        self.live = LiveFeed(clock, self.headline)
        self._snapshot = None
        self._changed = True
        server.commit_observers.append(self._committed)
        sampler = TimerService(SAMPLE_INTERVAL, self.sample)
        sampler.clock = clock
        sampler.setServiceParent(self)

    def site(self):
        return Site(DashboardApp(self).resource())

    def startService(self):
        super().startService()
        self.live.start()

    def stopService(self):
        self.live.stop()
        self.history.save(self.total_requests())
        return super().stopService()

    def _committed(self, changes):
        if changes:
            self._changed = True
            self.live.changed()

    def snapshot(self):
        now = self.clock.seconds()
        current = self._snapshot
        age = None if current is None else now - current.taken
        if age is None or age >= MAX_AGE or (self._changed and age >= MIN_REBUILD):
            self._changed = False
            current = self._snapshot = Snapshot(self.server.registry, now)
        return current

    def total_requests(self):
        """Requests answered over every run (this run's come from the registry's metrics)."""
        answered = sum(sample.value for metric in self.server.metrics.requests.collect()
                       for sample in metric.samples if sample.name == "pilot_requests_total")
        return self.history.total_requests(int(answered))

    def uptime(self):
        return int(self.clock.seconds() - self.server.registry.directory.started)

    def headline(self):
        """The counts a live event carries (the page fetches the rest)."""
        return dict(self.snapshot().counts(), total_requests=self.total_requests())

    def summary(self):
        """``/api/stats`` without the per-node lists: both reference forms' figures."""
        snapshot = self.snapshot()
        stats = snapshot.counts()
        stats.update(total_requests=self.total_requests(), uptime_secs=self.uptime(),
                     req_per_day=self.history.requests_per_day(), networks=snapshot.networks,
                     versions=snapshot.versions, hourly=self.history.hourly,
                     daily=self.history.daily)
        return stats

    def sample(self):
        total = self.total_requests()
        self.history.sample(self.clock.seconds(), self.snapshot().counts(), total)
        self.history.save(total)


def make_dashboard(clock, server, store_path=None):
    """The dashboard of ``server``, its history kept beside the store at ``store_path``."""
    return Dashboard(server, clock, History(history_path(store_path)))
