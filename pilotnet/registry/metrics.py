"""Prometheus metrics of one registry, under the reference's names (controlplane §1.15).

:class:`RegistryMetrics` owns a private ``CollectorRegistry`` (never the
process-global default, so two registries in one test process, or a registry
beside a daemon, do not mix their figures).  The server feeds it every answered
request; the gauges that describe the directory (nodes online, trust links...)
are computed when scraped, so keeping them costs nothing per request.

Whoever serves HTTP (the dashboard's ``/metrics``) does::

    body = metrics_text(registry_server.metrics)
    request.setHeader("Content-Type", CONTENT_TYPE)

Labels are bounded: a ``type`` label is a known message type, ``unknown`` for
anything else and ``malformed`` for a body that was not a JSON object, so a
client cannot grow the metric set by inventing message types.

The per-request figures (requests, errors, durations) are plain numbers the
reactor adds to, turned into metric families by a custom collector when
scraped: a ``Counter.inc`` plus a ``Histogram.observe`` take a lock each and
cost about 1.2 µs per request, several percent of a lookup.
"""

from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = CONTENT_TYPE_LATEST
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0)
UNKNOWN = "unknown"
MALFORMED = "malformed"

# Reply type of a successful request -> the event counter it moves.
_EVENTS = {
    "register_ok": ("pilot_registrations", "Successful registrations (new and returning keys)."),
    "deregister_ok": ("pilot_deregistrations", "Successful deregistrations."),
    "report_trust_ok": ("pilot_trust_reports", "Trust consents reported."),
    "revoke_trust_ok": ("pilot_trust_revocations", "Trust consents revoked."),
    "request_handshake_ok": ("pilot_handshake_requests", "Handshake requests relayed."),
    "rotate_key_ok": ("pilot_key_rotations", "Public keys rotated."),
}


class RequestStats(Collector):
    """``pilot_requests_total``, ``pilot_errors_total`` and ``pilot_request_duration_seconds``.

    :meth:`count` runs on the reactor for every answered request; the
    families are built from the totals at scrape time (on the reactor too,
    so no lock is needed).
    """

    def __init__(self):
        # label -> [requests, errors, seconds, then the count of each bucket and of +Inf]
        self._by_type = {}

    def count(self, kind, failed, seconds):
        stats = self._by_type.get(kind)
        if stats is None:
            stats = self._by_type[kind] = [0, 0, 0.0] + [0] * (len(DURATION_BUCKETS) + 1)
        stats[0] += 1
        stats[1] += failed
        stats[2] += seconds
        stats[3 + bisect_left(DURATION_BUCKETS, seconds)] += 1

    def collect(self):
        requests = CounterMetricFamily("pilot_requests", "Requests received, by message type.",
                                       labels=["type"])
        errors = CounterMetricFamily("pilot_errors",
                                     "Requests answered with an error, by message type.",
                                     labels=["type"])
        duration = HistogramMetricFamily(
            "pilot_request_duration_seconds",
            "Time to answer a request (handling and storing), by type.", labels=["type"])
        for kind, (count, failed, seconds, *per_bucket) in sorted(self._by_type.items()):
            requests.add_metric([kind], count)
            if failed:
                errors.add_metric([kind], failed)
            buckets, total = [], 0
            for bound, in_bucket in zip(DURATION_BUCKETS + (float("inf"),), per_bucket):
                total += in_bucket
                buckets.append((floatToGoString(bound), total))
            duration.add_metric([kind], buckets, seconds)
        return [requests, errors, duration]


class RegistryMetrics:
    """The metrics of one registry server.

    ``registry`` is the :class:`~pilotnet.registry.handlers.Registry` (its
    directory is read at scrape time), ``clock`` gives ``seconds()`` for uptime
    and online status, ``known_types`` are the message types worth a label.
    """

    def __init__(self, registry, clock, known_types=None):
        self.registry = registry
        self.clock = clock
        self.started = clock.seconds()
        self.known_types = frozenset(known_types if known_types is not None
                                     else registry.message_types)
        self.collectors = CollectorRegistry(auto_describe=True)
        c = self.collectors
        # Requests, errors and durations by type; ``requests.collect()`` lists them.
        self.requests = RequestStats()
        c.register(self.requests)
        self.events = {reply: Counter(name, text, registry=c)
                       for reply, (name, text) in _EVENTS.items()}
        directory = registry.directory
        self._gauge("pilot_nodes_online", "Nodes that heartbeated within --offline-after.",
                    lambda: registry.online_count(clock.seconds()))
        self._gauge("pilot_nodes_total", "Registered nodes (not reaped or deregistered).",
                    lambda: len(directory.nodes))
        self._gauge("pilot_trust_links", "Trust pairs (both nodes consented).",
                    directory.trust_pair_count)
        self._gauge("pilot_task_executors", "Nodes advertising task execution.",
                    lambda: sum(1 for node in directory.nodes.values() if node.task_exec))
        self._gauge("pilot_networks_total", "Networks other than the backbone.",
                    lambda: len(directory.networks))
        self._gauge("pilot_networks_enterprise", "Enterprise networks.",
                    lambda: sum(1 for network in directory.networks.values() if network.enterprise))
        self._gauge("pilot_invites_pending", "Network invitations waiting for an answer.",
                    lambda: sum(len(pending) for pending in directory.invites.values()))
        self._gauge("pilot_uptime_seconds", "Seconds since the registry started.",
                    lambda: clock.seconds() - self.started)
        self.replication_subscribers = Gauge(
            "pilot_replication_subscribers", "Standbys following this registry.", registry=c)
        self.standby = Gauge("pilot_standby",
                             "1 while this registry is a standby following a primary.",
                             registry=c)

    def _gauge(self, name, text, compute):
        Gauge(name, text, registry=self.collectors).set_function(compute)

    def label(self, kind):
        """The bounded ``type`` label for a request's ``type`` field."""
        return kind if isinstance(kind, str) and kind in self.known_types else UNKNOWN

    def observe(self, kind, reply, seconds):
        """Count one answered request of label ``kind`` that took ``seconds``."""
        reply_type = reply.get("type")
        failed = reply_type == "error"
        self.requests.count(kind, failed, seconds)
        if not failed:
            event = self.events.get(reply_type)
            if event is not None:
                event.inc()

    def value(self, name, **labels):
        """One sample's current value (``None`` if absent); for tests and the dashboard."""
        return self.collectors.get_sample_value(name, labels or None)


def metrics_text(metrics):
    """The Prometheus text exposition (format 0.0.4) of ``metrics``, as bytes."""
    return generate_latest(metrics.collectors)
