"""The audit log, its settings, identities and provisioning records reach a standby and survive its restart."""

import json
import os

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from pilotnet.ratelimit import RateLimiter
from pilotnet.registry import replication
from pilotnet.registry.audit import AuditLog
from pilotnet.registry.directory import Directory
from pilotnet.registry.framing import FrameDecoder, decode_body
from pilotnet.registry.handlers import Registry
from pilotnet.registry.server import RegistryServer
from pilotnet.registry.store import RegistryStore
from tests.registry.fixtures import ADMIN_TOKEN, PEER, identity

TOKEN = "replication-token"
CAPACITY = 6


def _registry():
    return Registry(admin_token=ADMIN_TOKEN, audit=AuditLog(capacity=CAPACITY),
                    register_limiter=RateLimiter(burst=1000, window=60.0))


class AuditReplicationTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.source = replication.ReplicationSource(TOKEN, self.clock)
        self.primary = RegistryServer(_registry(), self.clock, replication=self.source)
        self.path = os.path.join(self.mktemp(), "standby.db")
        self.standby_store = RegistryStore(self.path)
        self.standby = _registry()
        self.standby.read_only = True
        self.state = replication.StandbyState(self.standby.directory, self.standby_store)
        self.transport = StringTransport()

    def ask(self, request, server=None):
        reply = self.successResultOf((server or self.primary).answer(
            json.dumps({**request, "admin_token": ADMIN_TOKEN}).encode(), PEER, self.transport))
        return reply

    def register(self, number):
        return self.ask({"type": "register", "public_key": identity(number).public_key_b64,
                         "listen_addr": "127.0.0.1:4000"})["node_id"]

    def deliver(self):
        for body in FrameDecoder().feed(self.transport.value()):
            self.state.receive(decode_body(body))
        self.transport.clear()

    def standby_asks(self, request):
        return self.standby.handle({**request, "admin_token": ADMIN_TOKEN}, PEER, self.clock.seconds())

    def same_log(self):
        primary = self.primary.registry.handle({"type": "get_audit_log", "admin_token": ADMIN_TOKEN}, PEER, 0)
        self.assertEqual(self.standby_asks({"type": "get_audit_log"})["entries"], primary["entries"])
        return primary["entries"]

    def test_snapshot_changes_evictions_and_restart(self):
        a = self.register(1)
        self.ask({"type": "set_audit_export", "format": "json", "endpoint": "https://siem.example.com/in"})
        self.ask({"type": "set_external_id", "node_id": a, "external_id": "alice@example.com"})
        self.ask({"type": "provision_network", "blueprint": {"name": "bp", "networks": [{"name": "ml", "owner": a}]}})
        self.assertIsNone(self.ask({"type": "subscribe_replication", "token": TOKEN}))
        self.deliver()
        self.same_log()
        self.assertEqual(self.standby.audit.settings, self.primary.registry.audit.settings)

        for number in range(2, 2 + CAPACITY):  # more entries than the ring holds: evictions replicate too
            self.register(number)
        self.deliver()
        entries = self.same_log()
        self.assertEqual(len(entries), CAPACITY)
        self.assertEqual(self.standby_asks({"type": "get_identity", "node_id": a})["external_id"], "alice@example.com")
        self.assertEqual([n["name"] for n in self.standby_asks({"type": "get_provision_status"})["networks"]], ["ml"])

        self.successResultOf(self.standby_store.shutdown())
        store = RegistryStore(self.path)
        self.addCleanup(store.close)
        restarted = _registry()
        announced = []
        restarted.audit.settings_observers.append(lambda name, value: announced.append(name))
        store.load_into(restarted.directory)
        restarted.audit.restored()
        log = restarted.handle({"type": "get_audit_log", "admin_token": ADMIN_TOKEN}, PEER, 0)["entries"]
        self.assertEqual(log, entries)
        self.assertEqual(announced, ["export"])
        self.assertEqual(restarted.identities.external_id(a), "alice@example.com")
        # A promoted standby numbers its entries after the primary's.
        self.assertEqual(restarted.audit.next_id, entries[0]["event_id"] + 1)

    def test_a_store_read_before_the_concerns_are_composed_is_handed_over(self):
        a = self.register(1)
        self.ask({"type": "set_external_id", "node_id": a, "external_id": "alice"})
        self.ask({"type": "subscribe_replication", "token": TOKEN})
        self.deliver()
        self.successResultOf(self.standby_store.shutdown())
        store = RegistryStore(self.path)
        self.addCleanup(store.close)
        bare = Directory()
        store.load_into(bare)  # no concern owns these kinds yet: kept as they are
        composed = Registry(bare, admin_token=ADMIN_TOKEN, audit=AuditLog(capacity=CAPACITY))
        self.assertEqual(composed.identities.external_id(a), "alice")
        self.assertEqual([entry.action for entry in composed.audit.entries][-1], "identity.external_id_set")


class RefusedTargetTests(TestCase):
    def test_a_replicated_target_this_registry_refuses_delivers_nothing_and_breaks_nothing(self):
        from twisted.internet.testing import MemoryReactorClock

        from pilotnet.registry.audit import CONFIG_KIND
        from pilotnet.registry.audit_service import AuditService

        standby = _registry()
        service = AuditService(MemoryReactorClock(), standby.audit)  # private targets not allowed here
        standby.directory.apply(CONFIG_KIND, "export", {"format": "json", "endpoint": "http://127.0.0.1:9/in",
                                                        "source": "pilot-registry", "secret": "s"})
        standby.directory.apply(CONFIG_KIND, "webhook", {"url": "http://10.0.0.1/hook", "secret": "s"})
        self.assertIsNone(service.exporter)
        self.assertIsNone(service.webhook)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.assertIn("export", standby.audit.settings)  # kept: a promoted registry allowed them may use it
