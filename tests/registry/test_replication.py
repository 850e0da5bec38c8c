"""Hot-standby replication in memory: snapshot, changes, tokens, the read-only standby."""

import json
import os
import stat

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.trial.unittest import TestCase

from pilotnet.registry import replication
from pilotnet.registry.challenges import sign_fresh_request, sign_request
from pilotnet.registry.directory import Directory
from pilotnet.registry.framing import FrameDecoder, decode_body, encode_message
from pilotnet.registry.handlers import STANDBY_REFUSAL, Registry
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.server import RegistryServer
from pilotnet.registry.store import RegistryStore
from pilotnet.registry.tap import RegistryOptions
from tests.registry.fixtures import ADMIN_TOKEN, identity
from tests.registry.network_scenario import network_state, run_network_changes, run_sync

TOKEN = "s3cret"
PEER = ("127.0.0.1", 5000)


def _messages(data):
    return [decode_body(body) for body in FrameDecoder().feed(data)]


class _Pair:
    """A primary server and a standby state joined by the replication stream's bytes."""

    def __init__(self, test, token=TOKEN, store=None):
        self.test = test
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        registry = Registry(register_limiter=RateLimiter(burst=1000, window=60.0),
                            admin_token=ADMIN_TOKEN)
        self.source = replication.ReplicationSource(token, self.clock)
        self.primary = RegistryServer(registry, self.clock, replication=self.source)
        self.standby = Directory()
        self.state = replication.StandbyState(self.standby, store)
        self.transport = StringTransport()

    def send(self, request, signer=None):
        if signer is not None:
            request = sign_fresh_request(signer, request, self.primary.clock.seconds())
        return self.test.successResultOf(self.primary.answer(json.dumps(request).encode(), PEER))

    def register(self, who, **fields):
        return self.send({"type": "register", "public_key": who.public_key_b64,
                          "listen_addr": "127.0.0.1:4000", **fields})["node_id"]

    def subscribe(self, token=TOKEN):
        body = json.dumps({"type": "subscribe_replication", "token": token}).encode()
        return self.test.successResultOf(self.primary.answer(body, PEER, self.transport))

    def deliver(self):
        """Feed what the primary wrote to the standby; returns the message types."""
        messages = _messages(self.transport.value())
        self.transport.clear()
        for message in messages:
            self.state.receive(message)
        return [message["type"] for message in messages]


def _state(directory):
    return sorted(json.dumps(entity, sort_keys=True) for entity in directory.entities())


class ReplicationTests(TestCase):
    def test_snapshot_then_changes_keep_the_standby_identical(self):
        pair = _Pair(self)
        alice, bob = identity(1), identity(2)
        a = pair.register(alice, hostname="alice")
        b = pair.register(bob)
        pair.send({"type": "report_trust", "node_id": a, "peer_id": b}, alice)
        self.assertIsNone(pair.subscribe())
        self.assertEqual(pair.deliver(), ["replication_snapshot"])
        self.assertTrue(pair.state.synchronised)
        self.assertEqual(_state(pair.standby), _state(pair.primary.registry.directory))

        pair.send({"type": "report_trust", "node_id": b, "peer_id": a}, bob)
        pair.send({"type": "set_hostname", "node_id": a, "hostname": "alice2"}, alice)
        pair.send({"type": "deregister", "node_id": b}, bob)
        pair.send({"type": "lookup", "node_id": a})
        self.assertEqual(pair.deliver(), ["replication_changes"] * 3)
        self.assertEqual(_state(pair.standby), _state(pair.primary.registry.directory))
        self.assertEqual(pair.standby.hostname_index, {"alice2": a})
        self.assertNotIn(b, pair.standby.nodes)

    def test_networks_roles_invites_and_policies_reach_the_standby(self):
        pair = _Pair(self)
        pair.register(identity(1))
        pair.subscribe()
        pair.deliver()

        def ask(request, signer=None):
            reply = pair.send(request, signer)
            self.assertNotEqual(reply["type"], "error", reply)
            return reply

        ids = run_sync(run_network_changes(ask, pair.register))
        self.assertEqual(set(pair.deliver()), {"replication_changes"})
        self.assertEqual(network_state(pair.standby), network_state(pair.primary.registry.directory))
        # A standby answers the reference's network reads from what it was sent.
        standby = Registry(pair.standby)
        standby.read_only = True
        reply = standby.handle({"type": "get_member_role", "network_id": 1,
                                "target_node_id": ids["admin"]}, PEER, pair.clock.seconds())
        self.assertEqual(reply["role"], "admin")
        reply = standby.handle({"type": "get_network_policy", "network_id": 1}, PEER, pair.clock.seconds())
        self.assertEqual(reply["allowed_ports"], [80, 443])
        refused = standby.handle({"type": "kick_member", "network_id": 1, "target_node_id": ids["member"],
                                  "admin_token": ADMIN_TOKEN}, PEER, pair.clock.seconds())
        self.assertEqual(refused["error"], STANDBY_REFUSAL)

    def test_large_snapshot_in_chunks(self):
        pair = _Pair(self)
        for number in range(1, 251):
            pair.register(identity(number))
        pair.subscribe()
        types = pair.deliver()
        self.assertEqual(types, ["replication_snapshot"] * 2)  # 250 nodes + 250 keys + 2 counters
        self.assertEqual(len(pair.standby.nodes), 250)

    def test_heartbeats_and_stalled_subscribers_dropped(self):
        pair = _Pair(self)
        pair.subscribe()
        pair.deliver()
        pair.source.heartbeat()
        self.assertEqual(pair.deliver(), ["heartbeat"])
        pair.transport.producer.pauseProducing()
        pair.clock.advance(replication.MAX_STALL + 1)
        pair.source.heartbeat()
        self.assertTrue(pair.transport.disconnecting)
        self.assertEqual(pair.source.subscribers, {})

    def test_tokens(self):
        pair = _Pair(self)
        self.assertEqual(pair.subscribe("wrong")["error"], "invalid replication token")
        self.assertEqual(pair.source.subscribers, {})
        self.assertEqual(_Pair(self, token="").subscribe()["error"], "replication not configured")
        unconfigured = _Pair(self)
        unconfigured.primary.replication = None
        self.assertEqual(unconfigured.subscribe()["error"], "replication not configured")

    def test_refusal_reported_by_the_standby(self):
        pair = _Pair(self)
        pair.transport.write(encode_message(pair.subscribe("wrong")))
        self.assertRaises(replication.PilotError, pair.deliver)

    def test_standby_store_follows(self):
        store = RegistryStore(os.path.join(self.mktemp(), "standby.db"))
        self.addCleanup(store.close)
        pair = _Pair(self, store=store)
        pair.register(identity(1))
        pair.subscribe()
        pair.deliver()
        pair.register(identity(2))
        pair.deliver()
        restored = Directory()
        store.load_into(restored)
        self.assertEqual(_state(restored), _state(pair.primary.registry.directory))

    def test_partial_snapshot_dropped_when_the_stream_breaks(self):
        pair = _Pair(self)
        pair.state.receive({"type": "replication_snapshot", "entities": [
            ["counter", "next_node", 9]], "more": True})
        pair.state.lost()
        pair.state.receive({"type": "replication_snapshot", "entities": [], "more": False})
        self.assertEqual(pair.standby.next_node, 1)


class ReadOnlyRegistryTests(TestCase):
    def test_standby_answers_reads_and_refuses_writes(self):
        registry = Registry()
        alice = identity(1)
        now = 1_700_000_000.0
        registered = registry.handle({"type": "register", "public_key": alice.public_key_b64,
                                      "listen_addr": "1.2.3.4:5"}, PEER, now)
        registry.read_only = True
        node_id = registered["node_id"]
        self.assertEqual(registry.handle({"type": "lookup", "node_id": node_id}, PEER,
                                         now)["type"], "lookup_ok")
        beat = registry.handle(sign_request(alice, {"type": "heartbeat", "node_id": node_id}),
                               PEER, now)
        self.assertEqual(beat["type"], "heartbeat_ok")
        for request in ({"type": "register", "public_key": identity(2).public_key_b64},
                        sign_fresh_request(alice, {"type": "set_hostname", "node_id": node_id,
                                                   "hostname": "x"}, now)):
            reply = registry.handle(request, PEER, now)
            self.assertEqual(reply["error"], STANDBY_REFUSAL)

    def test_standby_never_reaps(self):
        clock = Clock()
        registry = Registry()
        registry.handle({"type": "register", "public_key": identity(1).public_key_b64},
                        PEER, clock.seconds())
        registry.read_only = True
        server = RegistryServer(registry, clock)
        clock.advance(10_000)
        server.housekeeping()
        self.assertEqual(len(registry.directory.nodes), 1)


class ReplicationOptionsTests(TestCase):
    def test_primary_generates_a_private_token_beside_the_store(self):
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "token")
        token = replication.load_or_create_token(path)
        self.assertGreater(len(token), 30)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(replication.load_or_create_token(path), token)

    def test_token_file_defaults_beside_the_store(self):
        options = RegistryOptions()
        options.parseOptions(["--store", "reg.db"])
        self.assertEqual(options["replication-token-file"], "reg.db.replication-token")

    def test_standby_options(self):
        options = RegistryOptions()
        options.parseOptions(["--standby", "[::1]:9000", "--replication-token", "t"])
        self.assertEqual(options["standby"], ("::1", 9000))
        for arguments, message in (
                (["--standby", "127.0.0.1:9000"], "needs --replication-token"),
                (["--standby", "127.0.0.1:9000", "--store", self.mktemp()],
                 "cannot read the replication token file"),
                (["--standby", "nowhere", "--replication-token", "t"], "expected host:port")):
            error = self.assertRaises(usage.UsageError, RegistryOptions().parseOptions,
                                      arguments)
            self.assertIn(message, str(error))
