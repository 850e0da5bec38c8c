"""The registry's Prometheus metrics: names of the reference, bounded labels, live gauges."""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pilotnet.registry.challenges import sign_fresh_request
from pilotnet.registry.handlers import Registry
from pilotnet.registry.metrics import metrics_text
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.server import RegistryServer
from tests.registry.fixtures import identity


def _body(request):
    return json.dumps(request).encode()


class RegistryMetricsTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        ticks = iter(range(1_000_000))
        registry = Registry(register_limiter=RateLimiter(burst=100, window=60.0))
        # Each request "takes" one millisecond of the fake timer.
        self.server = RegistryServer(registry, self.clock, timer=lambda: next(ticks) / 1000)
        self.metrics = self.server.metrics

    def send(self, request, signer=None):
        if signer is not None:
            request = sign_fresh_request(signer, request, self.server.clock.seconds())
        return self.successResultOf(self.server.answer(_body(request), ("127.0.0.1", 5000)))

    def register(self, who):
        return self.send({"type": "register", "public_key": who.public_key_b64,
                          "listen_addr": "127.0.0.1:4000"})["node_id"]

    def test_requests_errors_and_events_counted_by_type(self):
        alice, bob = identity(1), identity(2)
        a, b = self.register(alice), self.register(bob)
        self.send({"type": "lookup", "node_id": a})
        self.send({"type": "lookup", "node_id": 999})
        self.send({"type": "report_trust", "node_id": a, "peer_id": b}, alice)
        self.send({"type": "report_trust", "node_id": b, "peer_id": a}, bob)
        self.send({"type": "deregister", "node_id": b}, bob)
        value = self.metrics.value
        self.assertEqual(value("pilot_requests_total", type="register"), 2)
        self.assertEqual(value("pilot_requests_total", type="lookup"), 2)
        self.assertEqual(value("pilot_errors_total", type="lookup"), 1)
        self.assertIsNone(value("pilot_errors_total", type="register"))
        self.assertEqual(value("pilot_registrations_total"), 2)
        self.assertEqual(value("pilot_trust_reports_total"), 2)
        self.assertEqual(value("pilot_deregistrations_total"), 1)
        self.assertEqual(value("pilot_request_duration_seconds_count", type="lookup"), 2)
        self.assertEqual(value("pilot_request_duration_seconds_bucket", type="lookup",
                               le="0.001"), 2)

    def test_labels_stay_bounded(self):
        self.send({"type": "no-such-type-%d" % 1})
        self.send({"type": ["a list"]})
        self.server.answer(b"not json", ("127.0.0.1", 5000))
        value = self.metrics.value
        self.assertEqual(value("pilot_requests_total", type="unknown"), 2)
        self.assertEqual(value("pilot_errors_total", type="unknown"), 2)
        self.assertEqual(value("pilot_errors_total", type="malformed"), 1)

    def test_directory_gauges_read_when_scraped(self):
        alice, bob = identity(1), identity(2)
        a, b = self.register(alice), self.register(bob)
        self.send({"type": "set_task_exec", "node_id": a, "enabled": True}, alice)
        self.send({"type": "report_trust", "node_id": a, "peer_id": b}, alice)
        value = self.metrics.value
        self.assertEqual(value("pilot_nodes_total"), 2)
        self.assertEqual(value("pilot_nodes_online"), 2)
        self.assertEqual(value("pilot_task_executors"), 1)
        self.assertEqual(value("pilot_trust_links"), 0)
        self.send({"type": "report_trust", "node_id": b, "peer_id": a}, bob)
        self.assertEqual(value("pilot_trust_links"), 1)
        self.clock.advance(301)
        self.assertEqual(value("pilot_nodes_online"), 0)
        self.assertEqual(value("pilot_uptime_seconds"), 301)

    def test_text_exposition(self):
        self.register(identity(1))
        text = metrics_text(self.metrics).decode()
        self.assertIn('pilot_requests_total{type="register"} 1.0', text)
        self.assertIn("# TYPE pilot_request_duration_seconds histogram", text)
        self.assertIn("pilot_nodes_online 1.0", text)

    def test_each_server_has_its_own_metrics(self):
        other = RegistryServer(Registry(), self.clock)
        self.register(identity(1))
        self.assertIsNone(other.metrics.value("pilot_requests_total", type="register"))
