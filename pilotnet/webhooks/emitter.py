"""The daemon's webhook: its events as ``{event, event_id, node_id, timestamp, data}`` POSTs.

:class:`WebhookEmitter` is the :class:`~pilotnet.interfaces.IEventEmitter`
every part of the daemon reports to.  With no URL set, :meth:`~WebhookEmitter.emit`
returns at once (no allocation beyond the call's own arguments).  With one,
it numbers the event, stamps it with the clock and queues it; the JSON body
(addresses written as text, the time as RFC 3339) is made by the sender, off
the reactor's critical path.

The secret that signs the deliveries lives in a 0600 file (``webhook.secret``
in the node's home), created on first use and kept across URL changes and
restarts, so a receiver configures it once.
"""

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from pilotnet.interfaces import IEventEmitter
from pilotnet.webhooks.queue import STOP_GRACE
from pilotnet.webhooks.signing import new_secret

if TYPE_CHECKING:
    from pilotnet.webhooks.webhook import Webhook

SECRET_FILE = "webhook.secret"


def load_or_create_secret(path: Path) -> str:
    """The secret in ``path``, created 0600 with a fresh one if missing."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = new_secret()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    return secret


@implementer(IEventEmitter)
class WebhookEmitter:
    """Numbers, stamps and queues the daemon's events for the configured URL."""

    def __init__(self, reactor, secret_path: Path, node_id=lambda: None, *, allow_private: bool = False,
                 **webhook_options):
        self._reactor = reactor
        self._secret_path = Path(secret_path)
        self._node_id = node_id
        self.allow_private = allow_private
        self._options = webhook_options
        self._event_ids = itertools.count(1)
        self.webhook: Webhook | None = None
        #: Counters of webhooks replaced or cleared, so ``stats`` covers the whole run.
        self._past = {"sent": 0, "failed": 0, "dropped": 0}

    @property
    def active(self) -> bool:
        return self.webhook is not None

    def emit(self, event, **data):
        webhook = self.webhook
        if webhook is None:
            return
        webhook.enqueue({"event": event, "event_id": next(self._event_ids), "node_id": self._node_id(),
                         "timestamp": self._reactor.seconds(), "data": data or None})

    def set_url(self, url: str):
        """Deliver to ``url`` from now on (TargetRefused if it is not allowed); the old one drains.

        The delivery machinery (treq, twisted.web) is imported here, on first
        use: most daemons never set a webhook, and it was a tenth of their
        start-up.
        """
        from pilotnet.webhooks.webhook import Webhook

        webhook = Webhook(self._reactor, url, load_or_create_secret(self._secret_path),
                          allow_private=self.allow_private, render=_render, name="daemon webhook", **self._options)
        self._retire()
        self.webhook = webhook

    def clear(self):
        """Stop delivering; what is queued still drains for a moment."""
        return self._retire()

    def _retire(self, grace: float = STOP_GRACE):
        old, self.webhook = self.webhook, None
        if old is None:
            return None
        stopping = old.stop(grace)

        def count(_):
            for key in self._past:
                self._past[key] += getattr(old.queue, key)

        return stopping.addCallback(count)

    def stop(self):
        """Drain on daemon stop (for at most the grace period)."""
        return self._retire()

    def stats(self) -> dict:
        """What ``pilotctl info`` shows: the URL and the delivery counters of this run."""
        current: dict[str, Any] = self.webhook.stats() if self.webhook is not None else {"url": "", "queued": 0}
        totals = {key: value + (current.get(key, 0)) for key, value in self._past.items()}
        return {"url": current["url"], "enabled": self.webhook is not None, "queued": current["queued"],
                "secret_file": str(self._secret_path), **totals}


def _render(payload: dict) -> dict:
    """The document sent: the reference's field order, the time as text, no ``data`` when empty."""
    from pilotnet.webhooks.webhook import rfc3339  # loaded by then (set_url)

    document = {"event": payload["event"], "event_id": payload["event_id"], "node_id": payload["node_id"],
                "timestamp": rfc3339(payload["timestamp"])}
    if payload["data"] is not None:
        document["data"] = {key: _text(value) for key, value in payload["data"].items()}
    return document


def _text(value):
    """JSON values stay; a ``(host, port)`` endpoint becomes ``host:port``; anything else its text."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if type(value) is tuple and len(value) >= 2 and isinstance(value[0], str):
        host, port = value[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(value)
