"""The Twisted shell of the audit log: log lines, the registry webhook, the audit export.

:class:`AuditService` observes the :class:`~pilotnet.registry.audit.AuditLog`:
each entry is logged (``audit_action``) and queued for the registry webhook
and the audit export when they are configured.  (Entries reach the store with
the directory's changes: the log is one of its parts.)  Configuration changes
(``set_webhook``, ``set_audit_export``, their restored settings at start, or
their replicated ones) replace the delivery queues; on stop what is queued
drains for a few seconds.
"""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from pilotnet.registry.audit import AuditEntry, AuditLog
from pilotnet.registry.audit_export import Sender, make_exporter
from pilotnet.webhooks.queue import DeliveryQueue
from pilotnet.webhooks.targets import TargetRefused
from pilotnet.webhooks.webhook import Webhook

log = Logger()


class AuditService(Service):
    def __init__(self, reactor, audit: AuditLog, *, allow_private: bool = False, resolver=None,
                 delivery_options=None):
        """``delivery_options`` (``attempts``, ``backoff``, ...) tune both delivery queues (tests)."""
        self._reactor = reactor
        self._delivery = dict(delivery_options or {})
        self._audit = audit
        self._allow_private = allow_private
        self._options = {} if resolver is None else {"resolver": resolver}
        self.webhook: Webhook | None = None
        self.exporter: DeliveryQueue | None = None
        self._exporter_sender: Sender | None = None
        self.recorded = 0
        audit.observers.append(self._entry)
        audit.settings_observers.append(self._configure)
        audit.webhook_stats = lambda: self.webhook.queue.stats() if self.webhook is not None else {}
        audit.webhook_dead_letters = lambda: (self.webhook.queue.dead_letter_list()
                                              if self.webhook is not None else [])
        audit.export_stats = lambda: self.exporter.stats() if self.exporter is not None else {}

    def _entry(self, entry: AuditEntry):
        self.recorded += 1
        log.info("audit {audit_action}", audit_action=entry.action, node_id=entry.node_id,
                 network_id=entry.network_id)
        if self.webhook is not None:
            self.webhook.enqueue(entry.document())
        if self.exporter is not None:
            self.exporter.enqueue(entry.stored())

    def _configure(self, name: str, settings: dict | None):
        """Replace the delivery of ``name``.

        A stored or replicated target this process refuses (it came from a
        registry allowed private targets, and this one is not) leaves that
        delivery off, logged: it must not stop the registry from starting or a
        standby from following.
        """
        try:
            self._replace(name, settings)
        except TargetRefused as refused:
            log.error("audit: the {name} target is refused by this registry, so nothing is delivered to it: "
                      "{why}", name="registry webhook" if name == "webhook" else "audit export", why=refused.message)

    def _replace(self, name: str, settings: dict | None):
        """Stop the old delivery (what it queued still drains), then start the new one."""
        if name == "webhook":
            old, self.webhook = self.webhook, None
            if old is not None:
                old.stop()
            if settings is not None:
                self.webhook = Webhook(self._reactor, settings["url"], settings["secret"],
                                       allow_private=self._allow_private, name="registry webhook",
                                       **self._options, **self._delivery)
        elif name == "export":
            old_exporter, old_sender = self.exporter, self._exporter_sender
            self.exporter = self._exporter_sender = None
            if old_exporter is not None:
                old_exporter.stop().addCallback(lambda _: _close(old_sender))
            if settings is not None:
                self.exporter, self._exporter_sender = make_exporter(
                    self._reactor, settings, allow_private=self._allow_private, delivery_options=self._delivery,
                    **self._options)

    def stopService(self):
        super().stopService()
        stopping = []
        if self.webhook is not None:
            stopping.append(self.webhook.stop())
        if self.exporter is not None:
            sender = self._exporter_sender
            stopping.append(self.exporter.stop().addCallback(lambda _: _close(sender)))
        return defer.DeferredList(stopping, consumeErrors=True)


    def register_metrics(self, collectors):
        """Add the audit families to a Prometheus ``CollectorRegistry`` (the registry's)."""
        collectors.register(_AuditMetrics(self))


class _AuditMetrics:
    """The reference's audit metrics, read from the service when scraped.

    Delivery counters are those of the current webhook and export: setting
    either anew starts them from zero (a counter reset, as after a restart).
    """

    def __init__(self, service: AuditService):
        self._service = service

    def collect(self):
        service = self._service
        webhook = service.webhook.queue.stats() if service.webhook is not None else {}
        export = service.exporter.stats() if service.exporter is not None else {}
        yield CounterMetricFamily("pilot_audit_events", "Audit entries recorded by this process.",
                                  value=service.recorded)
        yield GaugeMetricFamily("pilot_webhook_configured", "1 while a registry webhook is set.",
                                value=int(service.webhook is not None))
        deliveries = CounterMetricFamily("pilot_webhook_deliveries", "Registry webhook events by outcome.",
                                         labels=["result"])
        for result in ("sent", "failed", "dropped"):
            deliveries.add_metric([result], webhook.get(result, 0))
        yield deliveries
        yield GaugeMetricFamily("pilot_audit_export_active", "1 while an audit export is set.",
                                value=int(service.exporter is not None))
        yield CounterMetricFamily("pilot_audit_exports", "Audit entries exported.", value=export.get("sent", 0))
        yield CounterMetricFamily("pilot_audit_export_errors", "Audit entries that could not be exported.",
                                  value=export.get("failed", 0) + export.get("dropped", 0))


def _close(sender):
    close = getattr(sender, "close", None)
    return close() if close is not None else None
