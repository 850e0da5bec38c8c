"""Network policies with the real ``pilotctl`` and real processes (docs/networks.md).

``policy validate`` and ``policy test`` need nothing running.  ``policy set``
then ``policy get`` go through a real daemon to a real registry; the managed
network's cycle runs in a real daemon.  The last two need the registry's
network messages (``set_expr_policy``, managed ``rules``): where the registry
under test answers that it does not know them, the test says so and skips.
"""

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SkipTest, TestCase

from pilotnet.registry.client import RegistryError, connect_registry
from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, pilotctl, wait_until
from tests.webhooks.receivers import HttpReceiver

ADMIN_TOKEN = "policy-admin-token"

#: The worked example of docs/networks.md: echo for everyone, services for tagged peers, nothing else.
POLICY = {
    "version": 1,
    "rules": [
        {"name": "allow-echo", "on": "connect", "match": "port == 7", "actions": [{"type": "allow"}]},
        {"name": "services", "on": "connect", "match": 'has_tag(peer_tags, "service") && port in [1000, 1001]',
         "actions": [{"type": "score", "params": {"delta": 1}}, {"type": "allow"}]},
        {"name": "deny-rest", "on": "connect", "match": "true", "actions": [{"type": "deny"}]},
    ],
}


class PolicyFileTests(TestCase):
    """``policy validate`` and ``policy test``: the real pilotctl on a file, no daemon, no registry."""

    timeout = 60

    def setUp(self):
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)
        self.file = os.path.join(self.home, "policy.json")
        with open(self.file, "w") as handle:
            json.dump(POLICY, handle)

    def run_pilotctl(self, *args):
        return pilotctl(self, self.home, *args)

    async def test_policy_test_gives_the_documented_decisions(self):
        cases = [({"type": "connect", "port": 7}, "allow", [("allow", "allow-echo")]),
                 ({"type": "connect", "port": 1000, "peer_tags": ["service"]}, "allow",
                  [("score", "services"), ("allow", "services")]),
                 ({"type": "connect", "port": 1000, "peer_tags": ["worker"]}, "deny", [("deny", "deny-rest")]),
                 ({"type": "dial", "port": 80}, "allow", [("allow", "_default")]),
                 ({"type": "cycle"}, None, [])]
        for event, verdict, directives in cases:
            result = await self.run_pilotctl("--json", "policy", "test", "--file", self.file,
                                             "--event", json.dumps(event))
            self.assertEqual(result.code, 0, result)
            data = result.json()["data"]
            self.assertEqual((data["event_type"], data["verdict"]), (event["type"], verdict))
            self.assertEqual([(d["type"], d["rule"]) for d in data["directives"]], directives)
        human = await self.run_pilotctl("policy", "test", "--file", self.file, "--event", '{"type":"connect"}')
        self.assertEqual(human.code, 0, human)
        self.assertIn("deny (from rule 'deny-rest')", human.stdout)
        self.assertIn("verdict: deny", human.stdout)

    async def test_validate_and_its_refusals(self):
        result = await self.run_pilotctl("--json", "policy", "validate", "--file", self.file)
        self.assertEqual(result.code, 0, result)
        self.assertEqual(result.json()["data"], {"valid": True, "version": 1, "rules": 3, "events": ["connect"],
                                                 "default_verdict": "allow"})
        broken = dict(POLICY, rules=[dict(POLICY["rules"][0], match="port ==")])
        refused = await self.run_pilotctl("--json", "policy", "validate", "--inline", json.dumps(broken))
        self.assertEqual(refused.code, 1, refused)
        error = refused.error()
        self.assertEqual(error["code"], "invalid_argument")
        self.assertIn("rule 'allow-echo' match", error["message"])
        self.assertIn("docs/networks.md", error["hint"])
        bad_event = await self.run_pilotctl("--json", "policy", "test", "--file", self.file, "--event", "{nope")
        self.assertEqual((bad_event.code, bad_event.error()["code"]), (1, "invalid_argument"))
        missing = await self.run_pilotctl("--json", "policy", "test", "--file", "/nonexistent/policy.json",
                                          "--event", "{}")
        self.assertEqual(missing.error()["code"], "not_found")
        helped = await self.run_pilotctl("policy", "test", "--help")
        self.assertEqual(helped.code, 0, helped)
        self.assertIn("usage: pilotctl policy test --file PATH --event JSON", helped.stdout)


class PolicyThroughTheRegistryTests(PilotctlMixin, TestCase):
    timeout = 180

    async def start(self, daemons=("alpha",)):
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous"),
                                                  "--admin-token", ADMIN_TOKEN).start()
        self.registry = await connect_registry(reactor, self.rendezvous.registry_endpoint)
        self.addCleanup(self.registry.transport.abortConnection)
        started = []
        for name in daemons:
            started.append(await DaemonProcess(self, os.path.join(base, name), self.rendezvous,
                                               hostname=name).start())
        return started

    async def admin(self, message):
        try:
            return await self.registry.request({**message, "admin_token": ADMIN_TOKEN})
        except RegistryError as error:
            if "unknown message type" in error.message:
                raise SkipTest(f"this registry does not answer {message['type']} yet: {error.message}")
            raise

    async def test_policy_set_then_get_round_trips(self):
        [alpha] = await self.start()
        created = await self.admin({"type": "create_network", "node_id": alpha.node_id, "name": "policed"})
        network = created["network_id"]
        await self.admin({"type": "get_expr_policy", "network_id": network})
        policy_file = os.path.join(alpha.home, "policy.json")
        with open(policy_file, "w") as handle:
            json.dump(POLICY, handle)
        stored = await self.on(alpha, "--json", "policy", "set", "--net", str(network), "--file", policy_file)
        self.assertEqual(stored.code, 0, stored)
        self.assertEqual(stored.json()["data"]["rules"], 3)
        fetched = await self.ok(alpha, "policy", "get", "--net", str(network))
        self.assertEqual(fetched, {"network_id": network, "expr_policy": POLICY})
        sdk = await alpha.connect()
        self.assertEqual(await sdk.get_policy(network), POLICY)
        tagged = await sdk.set_member_tags(network, alpha.node_id, ["service"])
        self.assertEqual(tagged["type"], "set_member_tags_ok")
        tags = await self.ok(alpha, "member-tags", "get", "--net", str(network), "--node", str(alpha.node_id))
        self.assertEqual(tags["tags"], ["service"])
        cleared = await self.on(alpha, "--json", "policy", "set", "--net", str(network), "--inline", "null")
        self.assertEqual(cleared.error()["code"], "invalid_argument")  # validated here before anything is sent

    async def test_a_managed_network_cycles_in_the_daemon(self):
        alpha, beta, gamma = await self.start(("alpha", "beta", "gamma"))
        rules = {"links": 2, "cycle": "1h", "prune": 1, "prune_by": "score", "fill": 1, "fill_how": "random"}
        created = await self.admin({"type": "create_network", "node_id": alpha.node_id, "name": "managed",
                                    "rules": rules})
        network = created["network_id"]
        listing = await self.admin({"type": "list_networks"})
        if not any(n.get("id") == network and n.get("rules") for n in listing["networks"]):
            raise SkipTest("this registry does not keep managed rules yet")
        for daemon in (beta, gamma):
            await self.admin({"type": "join_network", "node_id": daemon.node_id, "network_id": network})
        # The daemon finds its managed networks when it registers: restart alpha with the same identity.
        await alpha.stop()
        await alpha.start()
        status = await wait_until(lambda: self._status(alpha, network), "alpha's managed engine", timeout=30)
        self.assertEqual((status["network_id"], status["max_links"], status["prune_by"]), (network, 2, "score"))
        await wait_until(lambda: self._peers(alpha, network, 2), "the managed set to fill", timeout=30)
        rankings = await self.ok(alpha, "managed", "rankings", "--net", str(network))
        members = {row["node_id"] for row in rankings["rankings"]}
        self.assertEqual(members, {beta.node_id, gamma.node_id})
        scored = await self.ok(alpha, "managed", "score", str(beta.node_id), "--net", str(network), "--delta", "5")
        self.assertEqual((scored["node_id"], scored["delta"]), (beta.node_id, 5))
        sdk = await alpha.connect()
        top = (await sdk.managed_rankings(network))[0]
        self.assertEqual((top["node_id"], top["score"]), (beta.node_id, 5))
        await wait_until(lambda: self._trusts(alpha, {beta.node_id, gamma.node_id}), "the links to be trusted",
                         timeout=30, interval=0.5)
        cycle = await self.ok(alpha, "managed", "cycle", "--force", "--net", str(network))
        self.assertEqual(cycle["pruned_ids"], [gamma.node_id])  # the lowest score goes
        self.assertTrue(await self._trusts(alpha, {beta.node_id}))  # and its trust link with it
        refused = await self.on(alpha, "--json", "managed", "cycle", "--net", str(network))
        self.assertEqual(refused.error()["code"], "invalid_argument")

    async def _trusts(self, daemon, nodes):
        trusted = await self.ok(daemon, "trust")
        return {peer["node_id"] for peer in trusted["trusted"]} == nodes

    async def _status(self, daemon, network):
        result = await self.on(daemon, "--json", "managed", "status", "--net", str(network))
        return result.json()["data"] if result.code == 0 else None

    async def _peers(self, daemon, network, count):
        status = await self._status(daemon, network)
        return status is not None and status["peers"] == count


class PolicyAtTheGateTests(PilotctlMixin, TestCase):
    """A network's policy decides which members' connections get in, in real private daemons."""

    timeout = 180

    async def test_a_member_is_refused_what_the_policy_denies(self):
        base = self.mktemp()
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous"),
                                             "--admin-token", ADMIN_TOKEN).start()
        alpha, beta = [await DaemonProcess(self, os.path.join(base, name), rendezvous, "--network-sync", "1",
                                           hostname=name, public=False).start() for name in ("alpha", "beta")]
        registry = await connect_registry(reactor, rendezvous.registry_endpoint)
        self.addCleanup(registry.transport.abortConnection)
        created = await registry.request({"type": "create_network", "node_id": alpha.node_id, "name": "guarded",
                                          "admin_token": ADMIN_TOKEN})
        network = str(created["network_id"])
        joined = await self.on(beta, "network", "join", network)
        self.assertEqual(joined.code, 0, joined)

        async def beta_reaches_alpha():
            result = await self.on(beta, "ping", alpha.address, "--count", "1", "--timeout", "3s", "--json")
            return result.code == 0

        await wait_until(beta_reaches_alpha, "the members to trust each other", timeout=30, interval=0.5)
        echo_only = {"version": 1, "rules": [
            {"name": "echo", "on": "connect", "match": "port == 7", "actions": [{"type": "allow"}]},
            {"name": "nothing-else", "on": "connect", "match": "true", "actions": [{"type": "deny"}]},
            {"name": "no-dial-2000", "on": "dial", "match": "port == 2000", "actions": [{"type": "deny"}]}]}
        stored = await self.on(alpha, "--json", "policy", "set", "--net", network, "--inline", json.dumps(echo_only))
        self.assertEqual(stored.code, 0, stored)
        receiving = ensureDeferred(self.on(alpha, "recv", "1000", "--count", "1", "--json", "--timeout", "20s"))
        refused = await self.on(beta, "--json", "connect", alpha.address, "1000", "--message", "hi",
                                "--timeout", "5s")
        self.assertEqual(refused.code, 1, refused)
        self.assertTrue(await beta_reaches_alpha())  # port 7 is still allowed
        received = (await receiving).json()["data"]
        self.assertEqual((received["messages"], received["timeout"]), ([], True))  # nothing reached port 1000
        dialing = await self.on(alpha, "--json", "connect", beta.address, "2000", "--message", "hi", "--timeout", "5s")
        self.assertEqual(dialing.code, 1, dialing)
        self.assertEqual(dialing.error()["code"], "refused")
        self.assertIn(f"the policy of network {network} denies dialing node {beta.node_id} port 2000",
                      dialing.error()["message"])


class PolicyEventTests(PilotctlMixin, TestCase):
    """A policy's ``join`` rule, run by a real daemon when a member joins, sends its webhook."""

    timeout = 180

    async def test_a_join_rule_sends_its_webhook(self):
        base = self.mktemp()
        receiver = HttpReceiver(self)
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous"),
                                             "--admin-token", ADMIN_TOKEN).start()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), rendezvous, "--network-sync", "1",
                                    "--webhook", receiver.url, "--webhook-allow-private", hostname="alpha").start()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), rendezvous, hostname="beta").start()
        registry = await connect_registry(reactor, rendezvous.registry_endpoint)
        self.addCleanup(registry.transport.abortConnection)
        created = await registry.request({"type": "create_network", "node_id": alpha.node_id, "name": "greeters",
                                          "admin_token": ADMIN_TOKEN})
        network = created["network_id"]
        greet = {"version": 1, "rules": [{"name": "greet", "on": "join", "match": "members >= 2", "actions": [
            {"type": "tag", "params": {"add": "newcomer"}},
            {"type": "webhook", "params": {"event": "member-joined"}}]}]}
        stored = await self.on(alpha, "--json", "policy", "set", "--net", str(network), "--inline", json.dumps(greet))
        self.assertEqual(stored.code, 0, stored)

        async def alpha_sees(members):
            info = await self.ok(alpha, "info")
            return any(n["network_id"] == network and n["members"] == members for n in info["networks"])

        await wait_until(lambda: alpha_sees(1), "alpha to see its network", timeout=30, interval=0.5)
        joined = await self.on(beta, "network", "join", str(network))
        self.assertEqual(joined.code, 0, joined)
        await wait_until(lambda: alpha_sees(2), "alpha to see beta join", timeout=30, interval=0.5)

        def greeted():
            return [r.json() for r in receiver.requests if r.json()["event"] == "policy.member-joined"]

        await wait_until(lambda: bool(greeted()), "the policy's webhook", timeout=30, interval=0.5)
        [event] = greeted()
        self.assertEqual(event["data"], {"network_id": network, "rule": "greet", "trigger": "join",
                                         "peer_id": beta.node_id})
