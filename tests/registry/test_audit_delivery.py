"""The registry's webhook and audit exports against real receivers on 127.0.0.1 (port 0).

The registry is driven in process (no registry socket is needed for this);
its :class:`AuditService` delivers over real sockets to a twisted.web server
and to UDP and TCP syslog listeners, which parse what they receive.
"""

import json
import re

from hypothesis import given, strategies as st
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pilotnet import __version__
from pilotnet.registry.audit import AuditEntry
from pilotnet.registry.audit_export import cef
from pilotnet.registry.audit_service import AuditService
from pilotnet.webhooks.syslog import rfc5424
from pilotnet.webhooks.signing import verify
from tests.integration.processes import wait_until
from tests.registry.fixtures import identity
from tests.registry.test_audit import AuditedRegistry
from tests.webhooks.receivers import HttpReceiver, SyslogReceiver

RFC5424 = re.compile(rb"^<(?P<pri>\d{1,3})>1 (?P<timestamp>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
                     rb"(?P<msgid>\S+) (?P<sd>-|\[.*\]) \xef\xbb\xbf(?P<msg>.*)$", re.DOTALL)


def parse_cef(line):
    """A CEF line's seven header fields and its extension as a dict (unescaping ``\\=``, ``\\|``, ``\\\\``)."""
    fields, rest, current, escaped = [], line, "", False
    for index, char in enumerate(line):
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|" and len(fields) < 7:
            fields.append(current)
            current = ""
            if len(fields) == 7:
                rest = line[index + 1:]
                break
        else:
            current += char
    extension = {}
    for match in re.finditer(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", rest):
        extension[match.group(1)] = re.sub(r"\\(.)", _unescape, match.group(2))
    return fields, extension


def _unescape(match):
    return {"n": "\n", "r": "\r"}.get(match.group(1), match.group(1))


class AuditDeliveryTests(TestCase):
    timeout = 60

    def setUp(self):
        self.driven = AuditedRegistry(allow_private=True)
        self.driven.now = reactor.seconds()
        self.service = AuditService(reactor, self.driven.audit, allow_private=True,
                                    delivery_options={"backoff": 0.05, "attempts": 2})
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def mutate(self, count=1):
        for number in range(count):
            self.driven.register(identity(40 + number), hostname=f"node-{number}")

    async def test_the_registry_webhook_posts_signed_entries(self):
        receiver = HttpReceiver(self)
        secret = self.driven.admin({"type": "set_webhook", "url": receiver.url})["secret"]
        self.mutate(2)
        await receiver.wait_for(3)  # webhook.configured, then the two registrations
        documents = [request.json() for request in receiver.requests]
        self.assertEqual([d["action"] for d in documents], ["webhook.configured", "node.registered", "node.registered"])
        self.assertEqual(set(documents[1]), {"event_id", "action", "timestamp", "details", "node_id"})
        self.assertEqual(documents[1]["details"]["hostname"], "node-0")
        first = receiver.requests[1]
        self.assertTrue(verify(secret, first.headers["x-pilot-timestamp"], first.headers["x-pilot-signature"],
                               first.body, now=reactor.seconds()))
        await wait_until(lambda: self.driven.admin({"type": "get_webhook"})["delivered"] == 3, "delivery counted")

    async def test_the_dead_letters_fill_when_the_receiver_is_down(self):
        receiver = HttpReceiver(self)
        url = receiver.url
        await receiver.port.stopListening()
        self.driven.admin({"type": "set_webhook", "url": url})
        self.mutate(2)

        def dead_letters():
            return self.driven.admin({"type": "get_webhook_dlq"})["events"]

        await wait_until(lambda: len(dead_letters()) == 3, "three dead letters")
        actions = [letter["payload"]["action"] for letter in dead_letters()]
        self.assertEqual(actions, ["webhook.configured", "node.registered", "node.registered"])
        self.assertEqual(dead_letters()[0]["attempts"], 2)
        state = self.driven.admin({"type": "get_webhook"})
        self.assertEqual((state["failed"], state["dlq_size"], state["delivered"]), (3, 3, 0))

    async def test_json_export_is_signed_json(self):
        receiver = HttpReceiver(self)
        reply = self.driven.admin({"type": "set_audit_export", "format": "json", "endpoint": receiver.url})
        self.mutate()
        await receiver.wait_for(2)
        document = receiver.requests[1].json()
        self.assertEqual((document["action"], document["details"]["hostname"]), ("node.registered", "node-0"))
        request = receiver.requests[1]
        self.assertTrue(verify(reply["secret"], request.headers["x-pilot-timestamp"],
                               request.headers["x-pilot-signature"], request.body, now=reactor.seconds()))

    async def test_splunk_hec_export(self):
        receiver = HttpReceiver(self)
        self.driven.admin({"type": "set_audit_export", "format": "splunk_hec", "endpoint": receiver.url,
                           "splunk_token": "11111111-2222", "index": "pilot"})
        self.mutate()
        await receiver.wait_for(2)
        request = receiver.requests[1]
        self.assertEqual(request.headers["authorization"], "Splunk 11111111-2222")
        event = json.loads(request.body)
        self.assertEqual((event["sourcetype"], event["source"], event["index"]), ("pilot:audit", "pilot-registry", "pilot"))
        self.assertIsInstance(event["time"], float)
        self.assertEqual(event["event"]["action"], "node.registered")
        stats = self.driven.admin({"type": "get_audit_export"})
        self.assertNotIn("splunk_token", stats)

    async def check_syslog(self, transport):
        receiver = SyslogReceiver(self, transport)
        self.driven.admin({"type": "set_audit_export", "format": "syslog_cef",
                           "endpoint": f"{transport}://{receiver.address}"})
        self.driven.admin({"type": "create_network", "node_id": self.driven.register(identity(60)),
                           "name": "lab-one"})
        await receiver.wait_for(3)
        parsed = RFC5424.match(receiver.messages[2])
        self.assertIsNotNone(parsed, receiver.messages[2])
        self.assertEqual(int(parsed["pri"]), 13 * 8 + 5)
        self.assertEqual((parsed["app"], parsed["msgid"]), (b"pilot-registry", b"audit"))
        self.assertTrue(parsed["timestamp"].endswith(b"Z"))
        header, extension = parse_cef(parsed["msg"].decode())
        self.assertEqual(header, ["CEF:0", "Pilot Protocol", "pilot-registry", __version__, "network.created",
                                  "network.created", "4"])
        self.assertEqual(extension["act"], "network.created")
        self.assertEqual(extension["cn2Label"], "network_id")
        self.assertEqual(extension["cn2"], "1")
        self.assertEqual(extension["msg"], "name=lab-one, join_rule=open")

    def test_cef_escapes_what_its_fields_cannot_hold(self):
        tags = "a=b|c" + "\\" + "d" + "\n" + "x"
        entry = AuditEntry(1, 1_765_000_000.5, "tags.changed", None, 3, {"tags": tags})
        line = cef(entry)
        self.assertNotIn("\n", line)
        header, extension = parse_cef(line)
        self.assertEqual(header[4], "tags.changed")
        self.assertEqual(extension["msg"], "tags=" + tags)
        self.assertEqual((extension["rt"], extension["cn1"]), ("1765000000500", "3"))

    async def test_syslog_cef_over_udp(self):
        await self.check_syslog("udp")

    async def test_syslog_cef_over_tcp(self):
        await self.check_syslog("tcp")


class CefPropertyTests(SynchronousTestCase):
    @given(st.text(min_size=1, max_size=30), st.dictionaries(st.sampled_from(["hostname", "tags", "name", "url"]),
                                                             st.text(max_size=60), max_size=4),
           st.one_of(st.none(), st.integers(0, 2**32)))
    def test_any_entry_is_one_line_whose_fields_read_back(self, action, details, node_id):
        entry = AuditEntry(5, 1_765_000_000.0, action, None, node_id, details)
        line = cef(entry)
        self.assertNotIn("\n", line)
        self.assertNotIn("\r", line)
        header, extension = parse_cef(line)
        self.assertEqual(header[4], action.replace("\r", " ").replace("\n", " "))
        if details:
            self.assertEqual(extension["msg"], ", ".join(f"{k}={v}" for k, v in details.items()))
        message = rfc5424(line, timestamp=entry.timestamp, hostname="host name\n", app_name="pilot-registry")
        self.assertIsNotNone(RFC5424.match(message))
        self.assertEqual(message.count(b"\n"), 0)


class AuditMetricsTests(SynchronousTestCase):
    def test_the_audit_families_are_scraped_from_the_service(self):
        from prometheus_client import CollectorRegistry
        from twisted.internet.testing import MemoryReactorClock
        driven = AuditedRegistry()
        service = AuditService(MemoryReactorClock(), driven.audit)  # nothing is delivered: the clock stands still
        collectors = CollectorRegistry()
        service.register_metrics(collectors)
        driven.register(identity(70))
        driven.admin({"type": "set_webhook", "url": "https://hooks.example.com/x"})
        self.assertEqual(collectors.get_sample_value("pilot_audit_events_total"), 2)
        self.assertEqual(collectors.get_sample_value("pilot_webhook_configured"), 1)
        self.assertEqual(collectors.get_sample_value("pilot_audit_export_active"), 0)
        self.assertEqual(collectors.get_sample_value("pilot_webhook_deliveries_total", {"result": "sent"}), 0)
