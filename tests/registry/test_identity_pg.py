"""Identities, provisioning records and the audit log of registries sharing one PostgreSQL database."""

from twisted.trial.unittest import TestCase

from tests.integration.processes import wait_until
from tests.registry.fixtures import ADMIN_TOKEN, identity
from tests.registry.postgres import start_cluster
from tests.registry.test_pg_store import SharedRegistry


class SharedIdentityTests(TestCase):
    timeout = 120

    async def test_what_one_registry_sets_the_other_reads_and_a_new_one_loads(self):
        cluster = await start_cluster(self)
        url = cluster.create_database("registry")
        a, b = SharedRegistry(self, url), SharedRegistry(self, url)
        node = await a.register(identity(1))
        for request in ({"type": "set_idp_config", "idp_type": "oidc", "url": "https://login.example.com",
                         "client_id": "pilot"},
                        {"type": "set_external_id", "node_id": node, "external_id": "alice@example.com"},
                        {"type": "provision_network", "blueprint": {"networks": [{"name": "lab", "owner": node}]}}):
            reply = await a.send({**request, "admin_token": ADMIN_TOKEN})
            self.assertNotEqual(reply["type"], "error", reply)

        def shared(registry):
            return (registry.registry.identities.external_id(node) == "alice@example.com"
                    and (registry.registry.identities.idp() or {}).get("idp_type") == "oidc"
                    and registry.registry.provisioning.counts() == (1, 0))
        await wait_until(lambda: shared(b), "the other registry to see the identity and the provisioning")
        self.assertIn("network.provisioned", [entry.action for entry in b.registry.audit.entries])
        late = SharedRegistry(self, url)
        self.assertTrue(shared(late))
        self.assertEqual([e.action for e in late.registry.audit.entries][-3:],
                         [e.action for e in a.registry.audit.entries][-3:])
