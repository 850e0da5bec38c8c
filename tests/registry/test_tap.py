"""The plugins' options and service composition (no process)."""

import gc
import json
import os

from twisted.application.service import IServiceCollection
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.python import usage
from twisted.trial.unittest import TestCase

from pilotnet import rendezvous_tap
from pilotnet.beacon import tap as beacon_tap
from pilotnet import registry_tap
from pilotnet.registry import tap as registry_parts
from pilotnet.registry.client import RegistryClientProtocol
from pilotnet.registry.tls import fingerprint


class OptionTests(TestCase):
    def test_defaults_listen_on_loopback(self):
        options = rendezvous_tap.Options()
        options.parseOptions([])
        self.assertEqual(options["registry"], "tcp:9000:interface=127.0.0.1")
        self.assertEqual(options["beacon"], ("127.0.0.1", 9001))
        self.assertEqual((options["offline-after"], options["stale-after"]), (120.0, 3600.0))
        self.assertIsNone(options["store"])

    def test_rejects_bad_values(self):
        for argv in (["--log-format", "xml"], ["--stale-after", "-1"], ["--beacon", "nowhere"],
                     ["--offline-after", "0"], ["--offline-after", "600", "--stale-after", "300"],
                     ["--peer", "1.2.3.4"], ["--beacon-id", "0"], ["--max-connections", "x"],
                     ["--max-connections-per-ip", "0"], ["--max-buffered-bytes", "x"],
                     ["--request-deadline", "0"], ["--signature-window", "-5"]):
            self.assertRaises(usage.UsageError, rendezvous_tap.Options().parseOptions, argv)

    def test_a_shared_database_store_keeps_no_files_beside_it_and_refuses_standby(self):
        url = "postgresql://pilot@db.example.net/pilot"
        options = registry_tap.Options()
        options.parseOptions(["--store", url])
        self.assertIsNone(options["replication-token-file"])
        with self.assertRaises(usage.UsageError) as refused:
            registry_tap.Options().parseOptions(["--store", url, "--standby", "127.0.0.1:9000",
                                                 "--replication-token", "t"])
        self.assertIn("needs a SQLite --store", str(refused.exception))

    def test_moving_a_store_needs_a_postgresql_one_to_move_into(self):
        with self.assertRaises(usage.UsageError) as refused:
            registry_tap.Options().parseOptions(["--store", self.mktemp(), "--import-store", "old.db"])
        self.assertIn("to copy a SQLite store, copy its file", str(refused.exception))

    def test_security_defaults_are_safe_and_options_change_them(self):
        defaults = registry_tap.Options()
        defaults.parseOptions([])
        self.assertEqual((defaults["allow-legacy-signatures"], defaults["allow-owner-recovery"]),
                         (False, False))
        self.assertEqual((defaults["max-connections-per-ip"], defaults["max-buffered-bytes"],
                          defaults["request-deadline"], defaults["signature-window"]),
                         (256, 64 * 1024 * 1024, 30.0, 300.0))
        options = registry_tap.Options()
        options.parseOptions(["--registry", "tcp:0:interface=127.0.0.1",
                              "--allow-legacy-signatures", "--allow-owner-recovery",
                              "--max-connections-per-ip", "4", "--max-buffered-bytes", "1000",
                              "--request-deadline", "5", "--signature-window", "60"])
        self.patch(registry_parts.log, "warn", lambda *args, **fields: None)
        service = registry_parts.make_registry_service(reactor, options)
        registry = service.registry_server.registry
        self.assertTrue(registry.allow_legacy_signatures and registry.allow_owner_recovery)
        self.assertEqual(registry.replays.window, 60.0)
        listener = next(child for child in service if hasattr(child, "_factory"))
        factory = listener._factory
        self.assertEqual((factory.max_per_ip, factory.budget.limit, factory.request_deadline),
                         (4, 1000, 5.0))

    def test_json_logs_configure_twistds_logger(self):
        parent = {"logger": None}
        options = registry_tap.Options()
        options.parent = parent
        options.parseOptions(["--log-format", "json"])
        self.assertEqual(parent["logger"],
                         "pilotnet.plugin_options.json_log_observer")

    def test_peers_repeat(self):
        options = beacon_tap.Options()
        options.parseOptions(["--peer", "192.0.2.1:9001", "--peer", "[::1]:9002"])
        self.assertEqual(options["peers"], [("192.0.2.1", 9001), ("::1", 9002)])


class ServiceTests(TestCase):
    def test_rendezvous_service_writes_its_ports(self):
        directory = self.mktemp()
        os.makedirs(directory)
        ports_file = os.path.join(directory, "ports.json")
        options = rendezvous_tap.Options()
        options.parseOptions(["--registry", "tcp:0:interface=127.0.0.1", "--beacon",
                              "127.0.0.1:0", "--ports-file", ports_file,
                              "--store", os.path.join(directory, "r.db")])
        frozen = []
        self.patch(rendezvous_tap, "freeze_loaded_state", lambda service: frozen.append(service))
        service = rendezvous_tap.makeService(options)
        self.assertEqual(len(frozen), 1)
        self.assertTrue(IServiceCollection.providedBy(service))
        service.startService()
        self.addCleanup(service.stopService)
        with open(ports_file) as handle:
            ports = json.load(handle)
        self.assertEqual(sorted(ports), ["beacon", "registry"])
        self.assertNotEqual(ports["registry"]["port"], 0)
        self.assertEqual(ports["beacon"]["host"], "127.0.0.1")

    def test_bind_failure_stops_start_up(self):
        taken = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        options = registry_tap.Options()
        options.parseOptions(["--registry", f"tcp:{taken.getHost().port}:interface=127.0.0.1"])
        self.patch(registry_tap, "freeze_loaded_state", lambda service: None)
        service = registry_tap.makeService(options)
        self.assertRaises(CannotListenError, service.startService)

    def test_loaded_state_frozen_out_of_collections(self):
        self.addCleanup(gc.unfreeze)
        registry_tap.freeze_loaded_state()
        self.assertGreater(gc.get_freeze_count(), 0)


class TLSTests(TestCase):
    @inlineCallbacks
    def test_tls_listener_with_a_pinnable_self_signed_certificate(self):
        logged = []
        self.patch(registry_parts.log, "info", lambda fmt, **fields: logged.append(fields))
        options = registry_tap.Options()
        options.parseOptions(["--registry", "tcp:0:interface=127.0.0.1", "--tls"])
        bound = []
        service = registry_parts.make_registry_service(reactor, options, bound.append)
        service.startService()
        self.addCleanup(service.stopService)
        pinned = next(fields["fingerprint"] for fields in logged if "fingerprint" in fields)

        # Verification is by pin, as the daemon does it, not by a CA.
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", bound[0].port,
                                      CertificateOptions(verify=False))
        client = yield connectProtocol(endpoint, RegistryClientProtocol())
        self.addCleanup(client.transport.abortConnection)
        reply = yield client.request({"type": "list_networks"})
        self.assertEqual(reply["type"], "list_networks_ok")
        certificate = client.transport.getPeerCertificate().to_cryptography()
        self.assertEqual(fingerprint(certificate), pinned)

    def test_a_generated_certificate_is_kept_beside_the_store(self):
        """One flag for a real deployment: the fingerprint daemons pin survives a restart."""
        directory = self.mktemp()
        os.makedirs(directory)
        store = os.path.join(directory, "registry.db")
        pins = []
        for _ in range(2):
            logged = []
            self.patch(registry_parts.log, "info", lambda fmt, **fields: logged.append(fields))
            options = registry_tap.Options()
            options.parseOptions(["--registry", "tcp:0:interface=127.0.0.1", "--tls",
                                  "--store", store])
            service = registry_parts.make_registry_service(reactor, options)
            service.registry_server.store.close()
            pins.append(next(fields["fingerprint"] for fields in logged if "fingerprint" in fields))
        self.assertEqual(pins[0], pins[1])
        self.assertEqual(os.stat(store + ".tls-key.pem").st_mode & 0o777, 0o600)

    def test_cert_and_key_go_together(self):
        self.assertRaises(usage.UsageError, registry_tap.Options().parseOptions,
                          ["--tls", "--tls-cert", "c.pem"])
