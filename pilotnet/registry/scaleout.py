"""What a registry does besides serving when it shares a PostgreSQL database with others.

* follows the others' changes (:class:`~pilotnet.registry.pg_feed.ChangeFollower`);
* every housekeeping round: reads the ``last_seen`` times the others flushed
  (heartbeats reach only the registry a node talks to), renews or takes the
  *reaper lease* -- one row in ``pilot_leases`` -- so that exactly one
  registry reaps stale nodes, and, holding it, prunes old changes and the
  nonces whose signatures the window refuses anyway;
"""

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import gatherResults
from twisted.logger import Logger

from pilotnet.registry.pg_feed import ChangeFollower

# A reaper that stops renewing loses the lease after this many housekeeping rounds.
LEASE_ROUNDS = 3
# Changes older than this are deleted; a registry away longer reloads the whole state.
CHANGE_RETENTION_SECONDS = 3600
# How far back the last-seen refresh looks beyond the newest time it saw (flush delays).
SEEN_OVERLAP = 60.0

log = Logger()


class _Follow(Service):
    def __init__(self, follower):
        self._follower = follower

    def startService(self):
        super().startService()
        self._follower.start()

    def stopService(self):
        super().stopService()
        self._follower.stop()


class SharedHousekeeping:
    """The rounds that keep several registries on one database in step."""

    def __init__(self, server, store, interval: float) -> None:
        self._server = server
        self._store = store
        self._interval = interval
        self._seen_since = 0.0
        self.reaper = False

    def round(self):
        return gatherResults([
            self._store.run_reader(self._read_seen, self._seen_since).addCallback(self._merge_seen),
            self._store.run_reader(self._claim_lease, self._server.clock.seconds()).addCallback(
                self._leased),
        ], consumeErrors=True).addErrback(
            lambda failure: log.warn("registry: shared housekeeping failed: {error}",
                                     error=failure.value))

    @staticmethod
    def _read_seen(conn, since):
        return conn.execute("SELECT id, last_seen FROM pilot_nodes WHERE last_seen > %s",
                            (since,)).fetchall()

    def _merge_seen(self, rows) -> None:
        nodes = self._server.registry.directory.nodes
        newest = self._seen_since
        for node_id, last_seen in rows:
            node = nodes.get(node_id)
            if node is not None and node.last_seen < last_seen:
                node.last_seen = last_seen
            newest = max(newest, last_seen)
        self._seen_since = max(0.0, newest - SEEN_OVERLAP)

    def _claim_lease(self, conn, now: float) -> bool:
        seconds = self._interval * LEASE_ROUNDS
        held = conn.execute(
            "INSERT INTO pilot_leases (name, holder, expires) "
            "VALUES ('reaper', %s, now() + %s * INTERVAL '1 second') "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
            "WHERE pilot_leases.holder = excluded.holder OR pilot_leases.expires < now() "
            "RETURNING holder", (self._store.origin, seconds)).fetchone() is not None
        if held:
            conn.execute("DELETE FROM pilot_changes WHERE committed_at < "
                         "now() - %s * INTERVAL '1 second'", (CHANGE_RETENTION_SECONDS,))
            conn.execute("DELETE FROM pilot_nonces WHERE expires < %s", (now,))
        return held

    def _leased(self, held: bool) -> None:
        if held != self.reaper:
            log.info("registry: {what} the reaper lease", what="took" if held else "lost")
        self.reaper = held
        self._server.registry.reaps_nodes = held


def scaleout_service(reactor, server, store, interval: float) -> MultiService:
    """The services of a registry on a shared database (see the module doc)."""
    follower = ChangeFollower(reactor, store, server.registry.directory, server.commit_observers)
    shared = SharedHousekeeping(server, store, interval)
    # Nobody reaps until the lease says who does.
    server.registry.reaps_nodes = False
    service = MultiService()
    _Follow(follower).setServiceParent(service)
    rounds = TimerService(interval, shared.round)
    rounds.clock = reactor
    rounds.setServiceParent(service)
    return service
