"""The registry admin's commands end to end: real ``twistd pilot-rendezvous`` processes, the real
``pilotctl``, real HTTP receivers (the identity webhook, the audit export) on 127.0.0.1.

One primary with a store, then a standby following it: the identity provider
verifies registrations, a blueprint provisions a network and the export, a
directory file fills the network, and the standby serves the same audit log
and records, also after its restart.
"""

import json
import os

from twisted.trial.unittest import TestCase

from tests.integration.processes import DaemonProcess, RendezvousProcess, pilotctl, wait_until
from tests.webhooks.receivers import HttpReceiver

ADMIN_TOKEN = "integration-admin-token"
VERIFIED = json.dumps({"verified": True, "external_id": "alice@example.com"}).encode()
REFUSED = json.dumps({"verified": False, "error": "unknown token"}).encode()


class AdminCommandsTests(TestCase):
    timeout = 180

    def home(self, registry, admin_token=ADMIN_TOKEN):
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        config = {"registry": registry.registry_address}
        if admin_token:
            config["admin_token"] = admin_token
        with open(os.path.join(home, "config.json"), "w") as handle:
            json.dump(config, handle)
        return home

    def file(self, name, document):
        path = os.path.join(os.path.abspath(self.mktemp()) + "-" + name)
        with open(path, "w") as handle:
            json.dump(document, handle)
        return path

    async def ok(self, home, *args):
        result = await pilotctl(self, home, *args, "--json")
        self.assertEqual(result.code, 0, result)
        return result.json()["data"]

    async def refused(self, home, *args):
        result = await pilotctl(self, home, *args, "--json")
        self.assertEqual(result.code, 1, result)
        return result.error()

    async def test_identity_blueprint_directory_sync_audit_and_a_standby(self):
        store = ["--store", "registry.db", "--admin-token", ADMIN_TOKEN, "--webhooks-allow-private"]
        primary = await RendezvousProcess(self, self.mktemp(), *store).start()
        admin = self.home(primary)

        # The identity provider: a webhook that verifies the first token and refuses the second.
        verifier = HttpReceiver(self, answers=[VERIFIED, REFUSED])
        configured = await self.ok(admin, "idp", "set", "--type", "webhook", "--url", verifier.url)
        self.assertEqual(configured["idp_type"], "webhook")
        self.assertIn("secret", configured)
        self.assertTrue((await self.ok(admin, "idp", "get"))["verifies_tokens"])
        alice = await self.ok(self.home(primary, None), "register", "--identity-token", "alice-token")
        self.assertEqual(alice["external_id"], "alice@example.com")
        self.assertEqual(verifier.requests[0].json(), {"token": "alice-token"})
        mallory = await self.refused(self.home(primary, None), "register", "--identity-token", "forged")
        self.assertIn("identity verification failed: unknown token", mallory["message"])
        bob = await self.ok(self.home(primary, None), "register")
        self.assertNotIn("external_id", bob)
        # A daemon registers with the token in its config.json.
        verifier.answers.append(json.dumps({"verified": True, "external_id": "carol@example.com"}).encode())
        carol = DaemonProcess(self, self.mktemp(), primary)
        os.makedirs(carol.home, mode=0o700)
        with open(os.path.join(carol.home, "config.json"), "w") as handle:
            json.dump({"identity_token": "carol-token"}, handle)
        await carol.start()
        held = await self.ok(admin, "external-id", str(carol.node_id))
        self.assertEqual((held["external_id"], held["verified"]), ("carol@example.com", True))
        self.assertEqual(verifier.requests[-1].json(), {"token": "carol-token"})
        await self.ok(admin, "external-id", str(bob["node_id"]), "bob@example.com")
        self.assertEqual((await self.ok(admin, "external-id", str(bob["node_id"])))["source"], "admin")
        await self.ok(admin, "external-id", str(bob["node_id"]), "--clear")

        # A blueprint: a network owned by bob, alice a member, and the audit export.
        exported = HttpReceiver(self)
        blueprint = self.file("team.json", {"name": "team", "networks": [
            {"name": "research", "owner": bob["node_id"], "members": [alice["node_id"]]}],
            "audit_export": {"format": "json", "endpoint": exported.url}})
        provisioned = await self.ok(admin, "provision", blueprint)
        network = provisioned["networks"][0]
        self.assertEqual((network["name"], network["created"], network["joined"]),
                         ("research", True, [alice["node_id"]]))
        human = await pilotctl(self, admin, "provision-status")
        self.assertIn("research", human.stdout)
        await exported.wait_for(3)
        self.assertIn("network.created", [request.json()["action"] for request in exported.requests])

        # Directory sync: alice is listed, dave waits for a node, and --remove-unlisted keeps bob (no external ID).
        directory = self.file("staff.json", {"network": "research", "entries": [
            {"external_id": "alice@example.com"}, {"external_id": "dave@example.com"}]})
        synced = await self.ok(admin, "directory-sync", directory, "--remove-unlisted")
        self.assertEqual((synced["matched"], synced["pending"], synced["removed"]),
                         ([alice["node_id"]], ["dave@example.com"], []))
        status = await self.ok(admin, "directory-status", str(network["network_id"]))
        self.assertEqual((status["members"], status["pending"]), (2, ["dave@example.com"]))

        audit = await self.ok(admin, "audit", "--network", str(network["network_id"]))
        actions = [entry["action"] for entry in audit["entries"]]
        for action in ("directory.synced", "network.provisioned", "network.joined", "network.created"):
            self.assertIn(action, actions)
        self.assertEqual((await self.ok(admin, "audit-export", "get"))["format"], "json")

        # Errors a user can cause: no token, a wrong token, bad input.
        no_token = await self.refused(self.home(primary, None), "audit")
        self.assertEqual(no_token["code"], "auth_required")
        self.assertIn("PILOT_ADMIN_TOKEN", no_token["hint"])
        with_flag = await self.ok(self.home(primary, None), "idp", "get", "--admin-token", ADMIN_TOKEN)
        self.assertEqual(with_flag["idp_type"], "webhook")
        wrong = await self.refused(self.home(primary, "guess"), "provision-status")
        self.assertEqual(wrong["message"], "registry: invalid admin token")
        self.assertEqual((await self.refused(admin, "audit-export", "set", "--format", "xml", "--endpoint", "x"))
                         ["code"], "invalid_argument")
        self.assertEqual((await self.refused(admin, "provision", "/nonexistent.json"))["code"], "not_found")
        self.assertEqual((await self.refused(admin, "directory-status", "77"))["code"], "not_found")

        # A standby gets the same audit log and records, and keeps them over a restart.
        token_file = os.path.join(primary.directory, "registry.db.replication-token")
        standby_options = ["--store", "standby.db", "--admin-token", ADMIN_TOKEN, "--standby",
                           primary.registry_address, "--replication-token-file", token_file]
        standby = await RendezvousProcess(self, self.mktemp(), *standby_options).start()
        on_standby = self.home(standby)
        primary_log = (await self.ok(admin, "audit", "--limit", "1000"))["entries"]

        async def replicated():
            result = await pilotctl(self, on_standby, "audit", "--limit", "1000", "--json")
            return result.code == 0 and result.json()["data"]["entries"] == primary_log
        await wait_until(replicated, "the standby's audit log to match the primary's")
        self.assertEqual((await self.ok(on_standby, "provision-status"))["networks"][0]["name"], "research")
        refused = await self.refused(on_standby, "audit-export", "disable")
        self.assertIn("standby mode", refused["message"])

        await standby.stop()
        restarted = RendezvousProcess(self, standby.directory, *standby_options)
        restarted.registry_port, restarted.beacon_port = standby.registry_port, standby.beacon_port
        await restarted.start()
        after = (await self.ok(on_standby, "audit", "--limit", "1000"))["entries"]
        self.assertEqual(after[-len(primary_log):], primary_log)
