"""One configured webhook: a checked URL, its secret, and the queue that delivers to it.

Both the daemon (its events, :mod:`pilotnet.webhooks.emitter`) and the
registry (its audit entries) deliver through a :class:`Webhook`: JSON bodies
signed as :mod:`pilotnet.webhooks.signing` describes, POSTed by
:class:`~pilotnet.webhooks.http.HttpSender` from a
:class:`~pilotnet.webhooks.queue.DeliveryQueue`.
"""

import json
from datetime import datetime, timezone

from pilotnet.webhooks import queue as delivery
from pilotnet.webhooks.http import HttpSender, resolve
from pilotnet.webhooks.signing import signed_headers
from pilotnet.webhooks.targets import check_url


def rfc3339(seconds: float) -> str:
    """UTC time as the reference writes it (RFC 3339 with fractional seconds, ``Z``)."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def json_body(payload: dict) -> bytes:
    """Compact JSON; values JSON cannot carry (addresses, paths) are written as their text."""
    return json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")


class Webhook:
    """POST every enqueued payload as signed JSON to ``url`` (checked here: raises TargetRefused)."""

    def __init__(self, reactor, url: str, secret: str, *, allow_private: bool = False,
                 render=lambda payload: payload, queue_size: int = delivery.QUEUE_SIZE,
                 attempts: int = delivery.ATTEMPTS, backoff: float = delivery.BACKOFF,
                 dead_letters: int = delivery.DEAD_LETTERS, timeout: float = 5.0, resolver=resolve,
                 send=None, name: str = "webhook"):
        """``render(payload)`` turns a queued payload into the document sent (run by the sender,
        off the caller's path); ``send`` replaces the HTTP sender (tests on a Clock)."""
        self.target = check_url(url, allow_private=allow_private)
        self.url = url
        self._secret = secret
        self._clock = reactor
        self._render = render
        if send is None:
            send = HttpSender(reactor, self.target, self._encode, allow_private=allow_private,
                              timeout=timeout, resolver=resolver)
        self.queue = delivery.DeliveryQueue(reactor, send, queue_size=queue_size, attempts=attempts,
                                            backoff=backoff, dead_letters=dead_letters, name=name)

    def _encode(self, payload: dict) -> tuple[bytes, dict]:
        body = json_body(self._render(payload))
        return body, signed_headers(self._secret, int(self._clock.seconds()), body)

    def enqueue(self, payload: dict) -> bool:
        return self.queue.enqueue(payload)

    def stats(self) -> dict:
        return {"url": self.url, **self.queue.stats()}

    def stop(self, grace: float = delivery.STOP_GRACE):
        return self.queue.stop(grace)
