"""The dashboard inside the registry process: figures, history, live feed, HTTP site.

:class:`Dashboard` is a twistd service that watches the registry server's
commits (``server.commit_observers``), keeps a
:class:`~pilotnet.dashboard.index.DirectoryIndex` up to date with them (built
once, then changed node by node), samples the history at start, every minute
and on every change of the figures, and tells open pages about changes.

Nodes also go offline without any commit (their heartbeats just stop), so
while a page is open the figures are compared with the last ones seen every
``ONLINE_CHECK`` seconds; a node crossing the ``--offline-after`` cutoff
reaches open pages within that second.

A standby's replication hands the primary's changes to the same observers.  A
directory replaced wholesale (a standby taking a primary's snapshot) is
indexed afresh.

A directory of more than ``BUILD_STEP`` nodes is indexed a step per reactor
turn (30-70 ms of CPU each at a million nodes on a busy machine; some 500 steps, about
10 s of CPU) rather than in one go, which at a million nodes held the registry's reactor for seconds; the
registry answers meanwhile, and the dashboard answers 503 (code
``not_running``) until the index is complete.
"""

import gc

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import LoopingCall
from twisted.web.server import Site

from pilotnet.dashboard.app import DashboardApp
from pilotnet.dashboard.history import History, history_path
from pilotnet.dashboard.index import ONLINE_CHECK, DirectoryIndex, Indexing
from pilotnet.dashboard.live import LiveFeed
from pilotnet.plugin_options import StreamListener

SAMPLE_INTERVAL = 60.0
# Trust consents, then nodes, indexed per step of a build (30-70 ms of CPU at a million nodes).
BUILD_STEP = 2_000


class Dashboard(MultiService):
    """``freeze`` (:func:`gc.freeze` under twistd) runs after each step of a stepped build.

    The twistd plugins freeze everything built before the reactor starts out of
    garbage collections; an index built in steps after that would otherwise be
    walked by every full collection (a million rows: a stall of a few hundred
    ms).  Its rows hold no cycles, so freezing them keeps no garbage.
    """

    def __init__(self, server, clock, history=None, freeze=None):
        super().__init__()
        self.server = server
        self.clock = clock
        self.history = history if history is not None else History()
        self.live = LiveFeed(clock, self.headline)
        self._freeze = freeze
        self._builder = LoopingCall(self._build_step)
        self._builder.clock = clock
        # Started now, with the registry's restored directory, rather than on the first
        # request: a small directory is indexed at once, a large one from the start on.
        self._index = self._new_index()
        server.commit_observers.append(self._committed)
        self._seen_counts = None
        for interval, job in ((SAMPLE_INTERVAL, self.sample), (ONLINE_CHECK, self.watch)):
            timer = TimerService(interval, job)
            timer.clock = clock
            timer.setServiceParent(self)

    def site(self):
        return Site(DashboardApp(self).resource())

    def startService(self):
        super().startService()
        self.live.start()
        self._continue_build()

    def stopService(self):
        if self._builder.running:
            self._builder.stop()
        self.live.stop()
        self.history.save(self.total_requests())
        return super().stopService()

    def _new_index(self) -> DirectoryIndex:
        directory = self.server.registry.directory
        small = len(directory.nodes) + len(directory.consents) <= BUILD_STEP
        return DirectoryIndex(self.server.registry, self.clock.seconds(), build=small)

    def _continue_build(self) -> None:
        if self.running and self._index.building and not self._builder.running:
            self._builder.start(0, now=False)

    def _build_step(self) -> None:
        if self._index.build_step(BUILD_STEP):
            self._builder.stop()
            self.sample()  # the start's sample, skipped while the index was incomplete
            self.live.changed()
        if self._freeze is not None:
            self._freeze()

    @property
    def ready(self) -> bool:
        """Whether the index is complete (the dashboard answers only then)."""
        return not self._index.building

    def _committed(self, changes):
        if changes:
            self._index.note(changes)
            if self.ready:
                self.live.changed()

    def index(self):
        """The directory's indexes, brought up to date (:class:`Indexing` while being built)."""
        now = self.clock.seconds()
        registry = self.server.registry
        index = self._index
        if index.nodes is not registry.directory.nodes:
            index = self._index = self._new_index()
            self._continue_build()
        if index.building:
            done, total = index.progress
            raise Indexing(f"the dashboard is indexing the directory ({done:,} of {total:,} nodes)",
                           hint="try again in a few seconds")
        index.refresh(now)
        return index

    def total_requests(self):
        """Requests answered over every run (this run's come from the registry's metrics)."""
        answered = sum(sample.value for metric in self.server.metrics.requests.collect()
                       for sample in metric.samples if sample.name == "pilot_requests_total")
        return self.history.total_requests(int(answered))

    def uptime(self):
        return int(self.clock.seconds() - self.server.registry.directory.started)

    def headline(self):
        """The counts a live event carries (the page fetches the rest)."""
        return dict(self.index().counts(), total_requests=self.total_requests())

    def summary(self):
        """``/api/stats`` without the per-node lists: both reference forms' figures."""
        index = self.index()
        stats = index.counts()
        total = self.total_requests()
        stats.update(total_requests=total, uptime_secs=self.uptime(),
                     req_per_day=self.history.requests_last_day(self.clock.seconds(), total),
                     networks=index.networks, versions=index.versions,
                     hourly=self.history.hourly, daily=self.history.daily)
        return stats

    def sample(self):
        if not self.ready:
            return
        total = self.total_requests()
        self._record(self.index().counts(), total)
        self.history.save(total)

    def watch(self):
        """While a page is open: :meth:`notice_changes` (every ``ONLINE_CHECK`` seconds).

        Commits already trigger a live event; this catches what changes with
        the clock alone: nodes going offline when their heartbeats stop.  The
        check scans every node (about 20 ms at 100,000), so nobody watching
        means no scan; the minute's sample and the next page catch up.
        """
        if self.live.listeners and self.ready:
            self.notice_changes()

    def notice_changes(self):
        """Tell open pages, and the history, of figures that moved since the last look."""
        counts = self.index().counts()
        if counts != self._seen_counts:
            self._record(counts, self.total_requests())
            self.live.changed()

    def _record(self, counts, total_requests):
        self._seen_counts = counts
        self.history.sample(self.clock.seconds(), counts, total_requests)


def make_dashboard(clock, server, store_path=None, freeze=None):
    """The dashboard of ``server``, its history kept beside the store at ``store_path``."""
    return Dashboard(server, clock, History(history_path(store_path)), freeze)


def serve_dashboard(reactor, registry_service, options, on_listening):
    """Add the dashboard and its HTTP listener (``options["http"]``) to a registry's service."""
    dashboard = make_dashboard(reactor, registry_service.registry_server, options["store"],
                               freeze=gc.freeze)
    dashboard.setServiceParent(registry_service)
    StreamListener(serverFromString(reactor, options["http"]), dashboard.site(),
                   on_listening).setServiceParent(registry_service)
    return dashboard
