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
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
        self.requests = Counter("pilot_requests", "Requests received, by message type.",
                                ["type"], registry=c)
        self.errors = Counter("pilot_errors", "Requests answered with an error, by message type.",
                              ["type"], registry=c)
        self.duration = Histogram("pilot_request_duration_seconds",
                                  "Time to answer a request (handling and storing), by type.",
                                  ["type"], buckets=DURATION_BUCKETS, registry=c)
        self._children = {}
        self.events = {reply: Counter(name, text, registry=c)
                       for reply, (name, text) in _EVENTS.items()}
        directory = registry.directory
        self._gauge("pilot_nodes_online", "Nodes that heartbeated within the stale threshold.",
                    lambda: registry.online_count(clock.seconds()))
        self._gauge("pilot_nodes_total", "Registered nodes (not reaped or deregistered).",
                    lambda: len(directory.nodes))
        self._gauge("pilot_trust_links", "Trust pairs (both nodes consented).",
                    directory.trust_pair_count)
        self._gauge("pilot_task_executors", "Nodes advertising task execution.",
                    lambda: sum(1 for node in directory.nodes.values() if node.task_exec))
        self._gauge("pilot_networks_total", "Networks other than the backbone.",
                    lambda: len(directory.networks))
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
        requests, duration = self._children.get(kind) or self._child(kind)
        requests.inc()
        duration.observe(seconds)
        reply_type = reply.get("type")
        if reply_type == "error":
            self.errors.labels(kind).inc()
        else:
            event = self.events.get(reply_type)
            if event is not None:
                event.inc()

    def _child(self, kind):
        # labels() costs a lock and a tuple per call; this runs per request.
        children = self._children[kind] = (self.requests.labels(kind),
                                           self.duration.labels(kind))
        return children

    def value(self, name, **labels):
        """One sample's current value (``None`` if absent); for tests and the dashboard."""
        return self.collectors.get_sample_value(name, labels or None)


def metrics_text(metrics):
    """The Prometheus text exposition (format 0.0.4) of ``metrics``, as bytes."""
    return generate_latest(metrics.collectors)
