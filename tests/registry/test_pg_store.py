"""Registries sharing one real PostgreSQL database, driven in this process (no sockets).

Each registry here is what ``twistd pilot-registry --store postgresql://...``
builds: a directory, the PostgreSQL store with its threads, the change
follower, and the shell answering message bodies.
"""

import json
import os
import socket

import psycopg
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.python import usage
from twisted.trial.unittest import TestCase

from pilotnet.errors import PilotError
from pilotnet.registry.challenges import sign_fresh_request
from pilotnet.registry.directory import Directory
from pilotnet.registry.freshness import DEFAULT_WINDOW
from pilotnet.registry.handlers import Registry
from pilotnet.registry.pg_feed import ChangeFollower
from pilotnet.registry.pg_schema import NODE_ID_BLOCK
from pilotnet.registry.pg_store import IdBlocks, PostgresStore, read_entity, read_snapshot
from pilotnet.registry.requests import RequestError
from pilotnet.registry.scaleout import SharedHousekeeping
from pilotnet import registry_tap
from pilotnet.registry.server import RegistryServer
from pilotnet.registry.snapshot import import_go_snapshot, read_go_snapshot
from pilotnet.registry.store import RegistryStore
from pilotnet.ratelimit import RateLimiter
from tests.integration.processes import pause, wait_until
from tests.registry.fixtures import ADMIN_TOKEN, PEER, identity
from tests.registry.network_scenario import network_state, run_network_changes
from tests.registry.postgres import start_cluster
from tests.registry.test_snapshot import _snapshot as go_snapshot

VISIBLE_WITHIN = 1.0


class SharedRegistry:
    """One registry on the shared database, answering bodies as its shell does."""

    def __init__(self, test, url):
        self.directory = Directory(started=reactor.seconds())
        self.store = PostgresStore(url)
        self.store.load_into(self.directory)
        self.store.use_thread(reactor)
        self.registry = Registry(self.directory, admin_token=ADMIN_TOKEN,
                                 register_limiter=RateLimiter(burst=1000, window=60.0))
        self.server = RegistryServer(self.registry, reactor, self.store)
        self.observed = []
        self.server.commit_observers.append(self.observed.extend)
        self.follower = ChangeFollower(reactor, self.store, self.directory,
                                       self.server.commit_observers)
        self.follower.start()
        test.addCleanup(self.stop)

    async def stop(self):
        self.follower.stop()
        await self.store.shutdown()

    async def send(self, request, signer=None):
        if signer is not None:
            request = sign_fresh_request(signer, request, reactor.seconds())
        return await self.server.answer(json.dumps(request).encode(), PEER)

    async def register(self, who, **fields):
        reply = await self.send({"type": "register", "public_key": who.public_key_b64,
                                 "listen_addr": "0.0.0.0:4000", **fields}, signer=who)
        assert reply["type"] == "register_ok", reply
        return reply["node_id"]


class SharedDatabaseTests(TestCase):
    timeout = 120

    async def registries(self, count):
        cluster = await start_cluster(self)
        url = cluster.create_database("registry")
        return [SharedRegistry(self, url) for _ in range(count)]

    async def test_registration_on_one_is_visible_on_the_others(self):
        a, b, c = await self.registries(3)
        node_id = await a.register(identity(1), hostname="alpha")

        async def known_everywhere():
            for other in (b, c):
                reply = await other.send({"type": "lookup", "node_id": node_id})
                if reply["type"] != "lookup_ok" or reply.get("hostname") != "alpha":
                    return False
            return True

        await wait_until(known_everywhere, "the registration on the other registries",
                         timeout=VISIBLE_WITHIN)
        # The dashboard's observers on B heard of it as on A.
        self.assertIn(("node", str(node_id)), [(kind, key) for kind, key, _ in b.observed])

    async def test_node_ids_from_the_sequence_never_collide(self):
        a, b = await self.registries(2)
        ids = [await registry.register(identity(number))
               for number, registry in zip(range(1, 9), [a, b] * 4)]
        self.assertEqual(len(set(ids)), len(ids))

    async def test_audit_event_ids_are_unique_across_registries(self):
        a, b = await self.registries(2)
        await a.register(identity(1))
        await b.register(identity(2))
        await a.register(identity(3))

        def every_entry_everywhere():
            return all(len(registry.registry.audit.entries) == 3 for registry in (a, b))

        await wait_until(every_entry_everywhere, "every audit entry on both registries", timeout=VISIBLE_WITHIN)
        for registry in (a, b):
            entries = registry.registry.audit.entries
            self.assertEqual(len({entry.event_id for entry in entries}), 3)
            self.assertEqual(sorted(entry.node_id for entry in entries),
                             sorted(entry.node_id for entry in a.registry.audit.entries))
        stored = await a.store.run_reader(
            lambda conn: conn.execute("SELECT count(*) FROM pilot_entities WHERE kind = 'audit'"
                                      ).fetchone()[0])
        self.assertEqual(stored, 3)

    async def test_hostname_race_one_wins_the_other_gets_the_reference_error(self):
        a, b = await self.registries(2)
        first = await a.register(identity(1))
        second = await b.register(identity(2))
        await wait_until(lambda: second in a.directory.nodes and first in b.directory.nodes,
                         "both nodes known on both registries")
        # Both handled in memory before either commits: only the database can decide.
        replies = [a.send({"type": "set_hostname", "node_id": first, "hostname": "contested"},
                          signer=identity(1)),
                   b.send({"type": "set_hostname", "node_id": second, "hostname": "contested"},
                          signer=identity(2))]
        replies = [await reply for reply in replies]
        kinds = sorted(reply["type"] for reply in replies)
        self.assertEqual(kinds, ["error", "set_hostname_ok"], replies)
        winner = first if replies[0]["type"] == "set_hostname_ok" else second
        loser_reply = [reply for reply in replies if reply["type"] == "error"][0]
        self.assertEqual(loser_reply["error"],
                         f'hostname "contested" already in use by node {winner}')
        self.assertEqual(loser_reply["code"], "already_exists")

        def agreed():
            return all(registry.directory.hostname_holder("contested") == winner
                       for registry in (a, b))

        await wait_until(agreed, "both registries to agree on the holder")

    async def test_key_race_gives_one_node(self):
        a, b = await self.registries(2)
        who = identity(5)
        replies = [a.send({"type": "register", "public_key": who.public_key_b64,
                           "listen_addr": "0.0.0.0:4000"}, signer=who),
                   b.send({"type": "register", "public_key": who.public_key_b64,
                           "listen_addr": "0.0.0.0:4000"}, signer=who)]
        replies = [await reply for reply in replies]
        self.assertEqual([reply["type"] for reply in replies], ["register_ok", "register_ok"])
        self.assertEqual(replies[0]["node_id"], replies[1]["node_id"])

    async def test_register_time_hostname_race_registers_without_it(self):
        a, b = await self.registries(2)
        replies = [a.send({"type": "register", "public_key": identity(1).public_key_b64,
                           "listen_addr": "0.0.0.0:4000", "hostname": "taken"},
                          signer=identity(1)),
                   b.send({"type": "register", "public_key": identity(2).public_key_b64,
                           "listen_addr": "0.0.0.0:4000", "hostname": "taken"},
                          signer=identity(2))]
        replies = [await reply for reply in replies]
        self.assertEqual([reply["type"] for reply in replies], ["register_ok", "register_ok"])
        holders = [reply for reply in replies if reply.get("hostname") == "taken"]
        others = [reply for reply in replies if "hostname_error" in reply]
        self.assertEqual((len(holders), len(others)), (1, 1), replies)
        self.assertEqual(others[0]["hostname_error"], 'hostname "taken" already in use')

    async def test_handshake_relayed_between_registries(self):
        a, b = await self.registries(2)
        asker = await a.register(identity(1))
        answerer = await b.register(identity(2))
        await wait_until(lambda: answerer in a.directory.nodes and asker in b.directory.nodes,
                         "both nodes known on both registries")
        reply = await a.send({"type": "request_handshake", "from_node_id": asker,
                              "to_node_id": answerer, "justification": "hello"},
                             signer=identity(1))
        self.assertEqual(reply["type"], "request_handshake_ok", reply)

        async def delivered():
            polled = await b.send({"type": "poll_handshakes", "node_id": answerer},
                                  signer=identity(2))
            return polled["requests"]

        requests = await wait_until(delivered, "the request in the answerer's inbox on B")
        self.assertEqual([r["from_node_id"] for r in requests], [asker])
        reply = await b.send({"type": "respond_handshake", "node_id": answerer,
                              "peer_id": asker, "accept": True}, signer=identity(2))
        self.assertEqual(reply["type"], "respond_handshake_ok", reply)

        async def trusted():
            checked = await a.send({"type": "check_trust", "node_id": asker, "peer_id": answerer})
            return checked["trusted"]

        await wait_until(trusted, "the trust pair on A")

        async def answered():
            polled = await a.send({"type": "poll_handshakes", "node_id": asker},
                                  signer=identity(1))
            return polled["responses"]

        responses = await wait_until(answered, "the response in the asker's inbox on A")
        self.assertEqual([(r["from_node_id"], r["accept"]) for r in responses],
                         [(answerer, True)])

    async def test_inbox_additions_through_two_registries_are_merged(self):
        a, b = await self.registries(2)
        target = await a.register(identity(1))
        senders = [await a.register(identity(2)), await b.register(identity(3))]
        await wait_until(lambda: all(n in a.directory.nodes and n in b.directory.nodes
                                     for n in [target] + senders), "all nodes everywhere")
        # Both added before either registry heard of the other's request.
        replies = [a.send({"type": "request_handshake", "from_node_id": senders[0],
                           "to_node_id": target}, signer=identity(2)),
                   b.send({"type": "request_handshake", "from_node_id": senders[1],
                           "to_node_id": target}, signer=identity(3))]
        for reply in replies:
            self.assertEqual((await reply)["type"], "request_handshake_ok")

        def both_pending():
            return sorted(r.from_node_id for r in a.directory.pending_requests(target)) == \
                sorted(senders)

        await wait_until(both_pending, "both requests in the inbox on A")

    async def test_restart_loads_the_shared_state(self):
        cluster = await start_cluster(self)
        url = cluster.create_database("registry")
        a = SharedRegistry(self, url)
        node_id = await a.register(identity(1), hostname="kept")
        await a.stop()
        again = SharedRegistry(self, url)
        self.assertEqual(again.directory.nodes[node_id].hostname, "kept")
        self.assertNotEqual(await again.register(identity(2)), node_id)

    async def test_networks_roles_invites_and_policies_are_shared_and_survive_a_restart(self):
        cluster = await start_cluster(self)
        url = cluster.create_database("registry")
        a, b = SharedRegistry(self, url), SharedRegistry(self, url)

        async def ask(request, signer=None):
            reply = await a.send(request, signer)
            while "fetching network IDs" in reply.get("error", ""):
                # Two network IDs are kept in hand; the scenario creates four in a row.
                await pause(0.05)
                reply = await a.send(request, signer)
            self.assertNotEqual(reply["type"], "error", reply)
            return reply

        ids = await run_network_changes(ask, a.register)
        made = network_state(a.directory)
        await wait_until(lambda: network_state(b.directory) == made, "the networks on B")
        await a.stop()
        again = SharedRegistry(self, url)
        self.assertEqual(network_state(again.directory), made)
        # A role taken away on one registry is gone on the other.
        reply = await again.send({"type": "kick_member", "network_id": 1, "target_node_id": ids["admin"],
                                  "admin_token": ADMIN_TOKEN})
        self.assertEqual(reply["type"], "kick_member_ok")
        await wait_until(lambda: network_state(b.directory) == network_state(again.directory),
                         "the kick on B")
        self.assertNotIn(("member", f"1:{ids['admin']}"), network_state(b.directory))

    async def test_networks_made_before_settings_existed_load_and_gain_them(self):
        cluster = await start_cluster(self)
        url = cluster.create_database("registry")
        with psycopg.connect(url, autocommit=True) as conn:
            # The table as earlier versions made it, with one network in it.
            conn.execute("CREATE TABLE pilot_networks (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                         "join_rule TEXT NOT NULL, token TEXT NOT NULL, created DOUBLE PRECISION NOT NULL)")
            conn.execute("INSERT INTO pilot_networks VALUES (5, 'old', 'open', '', 1.0)")
        a = SharedRegistry(self, url)
        self.assertEqual((a.directory.networks[5].name, a.directory.networks[5].enterprise), ("old", False))
        reply = await a.send({"type": "set_network_enterprise", "network_id": 5, "enterprise": True,
                              "admin_token": ADMIN_TOKEN})
        self.assertEqual(reply["type"], "set_network_enterprise_ok")
        await a.stop()
        self.assertIs(SharedRegistry(self, url).directory.networks[5].enterprise, True)

    async def test_entity_kinds_without_a_table_are_kept_as_json(self):
        cluster = await start_cluster(self)
        a = SharedRegistry(self, cluster.create_database("registry"))
        await a.store.commit([("audit", "1", {"event": "node.registered", "node_id": 1})])
        _, entities = await a.store.run_reader(read_snapshot)
        self.assertIn(("audit", "1", {"event": "node.registered", "node_id": 1}), entities)
        await a.store.commit([("audit", "1", None)])
        _, entities = await a.store.run_reader(read_snapshot)
        self.assertNotIn("audit", [kind for kind, _, _ in entities])

    async def test_a_registry_back_after_pruned_changes_reloads_everything(self):
        cluster = await start_cluster(self)
        url = cluster.create_database("registry")
        a, b = SharedRegistry(self, url), SharedRegistry(self, url)
        b.follower.stop()
        away = [await a.register(identity(number)) for number in range(1, 4)]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM pilot_changes")  # what the lease holder prunes after an hour
        away.append(await a.register(identity(4)))
        self.assertFalse(any(node_id in b.directory.nodes for node_id in away))
        b.follower.start()
        await wait_until(lambda: all(node_id in b.directory.nodes for node_id in away),
                         "B to reload the whole state")

    async def test_exactly_one_registry_holds_the_reaper_lease(self):
        cluster = await start_cluster(self)
        url = cluster.create_database("registry")
        registries = [SharedRegistry(self, url) for _ in range(3)]
        rounds = [SharedHousekeeping(r.server, r.store, interval=10.0) for r in registries]
        for _ in range(2):
            for shared in rounds:
                await shared.round()
        self.assertEqual(sorted(r.registry.reaps_nodes for r in registries), [False, False, True])


    async def test_changes_to_one_node_through_two_registries_both_last(self):
        """B writes the node before it heard of A's change: B's write is redone on A's record."""
        a, b = await self.registries(2)
        who = identity(1)
        node_id = await a.register(who)
        await wait_until(lambda: succeed(node_id in b.directory.nodes), "the node on B",
                         timeout=VISIBLE_WITHIN)
        b.follower.stop()
        tagged = await a.send({"type": "set_tags", "node_id": node_id, "tags": ["gpu"]}, signer=who)
        made_public = await b.send({"type": "set_visibility", "node_id": node_id, "public": True},
                                   signer=who)
        self.assertEqual((tagged["type"], made_public["type"]), ("set_tags_ok", "set_visibility_ok"))
        b.follower.start()

        def both_everywhere():
            nodes = [registry.directory.nodes[node_id] for registry in (a, b)]
            return succeed(all(node.tags == ("gpu",) and node.public for node in nodes))

        await wait_until(both_everywhere, "the tags and the visibility on both registries",
                         timeout=VISIBLE_WITHIN)
        stored = await a.store.run_reader(read_entity, "node", str(node_id))
        self.assertEqual((stored["tags"], stored["public"]), (["gpu"], True))

    async def test_nonces_of_signed_writes_are_kept_until_their_window_passed(self):
        """The shared replay cache: one row per fresh-signed write, pruned by the reaper."""
        a, b = await self.registries(2)
        await a.register(identity(1))
        await b.send({"type": "lookup", "node_id": 1})  # a read: no row

        def count(conn):
            return conn.execute("SELECT count(*) FROM pilot_nonces").fetchone()[0]

        self.assertEqual(await a.store.run_reader(count), 1)
        reaper = SharedHousekeeping(a.server, a.store, interval=10.0)
        self.assertTrue(await a.store.run_reader(reaper._claim_lease, reactor.seconds()))
        self.assertEqual(await a.store.run_reader(count), 1)
        await a.store.run_reader(reaper._claim_lease, reactor.seconds() + 2 * DEFAULT_WINDOW + 1)
        self.assertEqual(await a.store.run_reader(count), 0)


class ImportTests(TestCase):
    """A SQLite registry's store, or a Go snapshot, moved into a new PostgreSQL database."""

    timeout = 120

    def sqlite_store(self):
        directory = self.mktemp()
        os.makedirs(directory)
        store = RegistryStore(os.path.join(directory, "registry.db"))
        snapshot = os.path.join(directory, "go.json")
        with open(snapshot, "w") as handle:
            json.dump(go_snapshot(), handle)
        import_go_snapshot(snapshot, store)
        store.close()
        return store.path, snapshot

    @staticmethod
    def state(directory, without_tokens=False):
        """Every entity but the counters (and, if asked, the networks' tokens)."""
        entities = []
        for kind, key, value in directory.entities():
            if kind == "network" and without_tokens:
                value = dict(value, token="")
            if kind != "counter":
                entities.append((kind, key, json.dumps(value, sort_keys=True)))
        return sorted(entities)

    async def test_a_sqlite_store_moves_into_postgresql_and_the_registry_goes_on(self):
        cluster = await start_cluster(self)
        url = cluster.create_database("moved")
        path, _ = self.sqlite_store()
        registry_tap.Options().parseOptions(["--store", url, "--import-store", path])
        before = Directory()
        source = RegistryStore(path)
        source.load_into(before)
        source.close()
        moved = SharedRegistry(self, url)
        self.assertEqual(self.state(moved.directory), self.state(before))
        self.assertGreaterEqual(await moved.register(identity(9)), before.next_node)
        with self.assertRaises(usage.UsageError) as refused:
            registry_tap.Options().parseOptions(["--store", url, "--import-store", path])
        self.assertIn("already holds registry state", str(refused.exception))

    async def test_a_go_snapshot_imports_into_postgresql(self):
        cluster = await start_cluster(self)
        url = cluster.create_database("imported")
        _, snapshot = self.sqlite_store()
        registry_tap.Options().parseOptions(["--store", url, "--import-snapshot", snapshot])
        with open(snapshot, "rb") as handle:
            expected = read_go_snapshot(handle.read())
        imported = SharedRegistry(self, url)
        # An invite network gets a random token at each reading of the snapshot.
        self.assertEqual(self.state(imported.directory, without_tokens=True),
                         self.state(expected, without_tokens=True))

    def test_a_missing_store_is_refused_not_created(self):
        missing = os.path.join(self.mktemp(), "nothing.db")
        with self.assertRaises(usage.UsageError) as refused:
            registry_tap.Options().parseOptions(["--store", "postgresql://pilot@127.0.0.1:1/none",
                                                 "--import-store", missing])
        self.assertIn("no registry store at", str(refused.exception))
        self.assertFalse(os.path.exists(missing))


class IdBlockTests(TestCase):
    """IDs from the sequences, fetched ahead; the handlers never wait for them."""

    def fetcher(self, answer):
        self.fetched = []
        return lambda sequence, count: self.fetched.append((sequence, count)) or answer(count)

    def test_blocks_are_used_in_order_and_more_fetched_before_they_run_out(self):
        ids = IdBlocks(self.fetcher(lambda count: succeed([5000 + i * 1000
                                                             for i in range(count)])))
        ids.prime([1, 1001, 2001, 3001], [5], 1)
        block = NODE_ID_BLOCK
        first = [ids.node_id() for _ in range(2 * block)]
        self.assertEqual(first, list(range(1, 1 + block)) + list(range(1001, 1001 + block)))
        ids.node_id()
        self.assertEqual(self.fetched, [])
        ids.node_id()  # under half of the reserve left: fetch
        self.assertEqual(self.fetched, [("pilot_node_ids", 3)])

    def test_a_burst_that_empties_the_reserve_doubles_it(self):
        ids = IdBlocks(self.fetcher(lambda count: Deferred()))
        ids.prime([1], [5], 1)
        for _ in range(NODE_ID_BLOCK):
            ids.node_id()
        with self.assertRaises(RequestError) as refused:
            ids.node_id()
        self.assertIn("retry", refused.exception.message)
        self.assertEqual(ids._reserve_blocks, 8)

    def test_network_ids_stay_within_16_bits(self):
        ids = IdBlocks(self.fetcher(lambda count: Deferred()))
        ids.prime([1], [0x10000], 1)
        with self.assertRaises(RequestError):
            ids.network_id()


class UnreachableDatabaseTests(TestCase):
    def test_a_database_nobody_serves_is_a_clear_connection_error(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        store = PostgresStore(f"postgresql://pilot:secret@127.0.0.1:{port}/pilot?connect_timeout=2")
        with self.assertRaises(PilotError) as refused:
            store.load_into(Directory())
        self.assertEqual(refused.exception.code, "connection_failed")
        self.assertNotIn("secret", refused.exception.message)
