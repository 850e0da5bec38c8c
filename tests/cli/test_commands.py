"""Every pilotctl command in-process against the fake daemon: human and JSON output, errors, exit codes."""

import io
import json
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from pilotnet.cli import catalogue
from pilotnet.cli.commands import node
from pilotnet.driver import client
from pilotnet.driver.targets import private_name_hint
from tests.cli.support import ImmediateClock, PilotctlMixin
from tests.driver.support import bounded
from tests.driver.fakedaemon import AGENT_B, NODE

NEEDS_DAEMON = [
    ["info"], ["peers"], ["connections"], ["disconnect", "3"], ["set-hostname", "a"], ["clear-hostname"],
    ["find", "a"], ["set-public"], ["set-private"], ["set-tags", "a"], ["clear-tags"], ["enable-tasks"],
    ["disable-tasks"], ["health"], ["ping", "a"], ["traceroute", "a"], ["bench", "a"],
    ["connect", "a", "--message", "m"], ["send", "a", "1", "--data", "d"], ["recv", "1"], ["listen", "1"],
    ["handshake", "5", "why"], ["approve", "5"], ["reject", "5"], ["pending"], ["trust"], ["untrust", "5"],
    ["send-message", "5", "--data", "d"], ["send-file", "5", __file__], ["publish", "t", "--data", "d"],
    ["subscribe", "5", "t"], ["task", "submit", "5", "--task", "t"], ["broadcast", "3", "m"],
    ["network", "list"], ["network", "join", "3"], ["network", "leave", "3"], ["network", "members", "3"],
    ["network", "invite", "3", "5"], ["network", "invites"], ["network", "accept", "3"], ["network", "reject", "3"],
    ["policy", "get", "--net", "3"], ["managed", "score", "5"], ["managed", "status"], ["managed", "rankings"],
    ["managed", "cycle", "--force"], ["member-tags", "get", "--net", "3"],
    ["member-tags", "set", "--net", "3", "--node", "5", "--tags", "gpu"],
    ["policy", "set", "--net", "3", "--inline",
     '{"version": 1, "rules": [{"name": "a", "on": "connect", "match": "true", "actions": [{"type": "allow"}]}]}'],
]
# Commands that only read or write files in the home directory, describe pilotctl, or ask the registry.
LOCAL = {"init", "config", "context", "daemon start", "daemon stop", "daemon status", "received", "inbox",
         "task accept", "task decline", "task execute", "task send-results", "task list", "task queue",
         "version", "help", "completion", "lookup", "register", "rotate-key", "deregister",
         "set-webhook", "clear-webhook", "policy validate", "policy test"}
# Commands that talk to the gateway's own control socket (tests/gateway covers them).
LOCAL |= {"gateway start", "gateway stop", "gateway map", "gateway unmap", "gateway list"}
# Commands that manage networks at the registry directly (tests/cli/test_network_admin.py covers them).
LOCAL |= {"network create", "network delete", "network rename", "network promote", "network demote",
          "network kick", "network role", "network policy"}
# The registry admin's commands (tests/integration/test_provisioning.py covers them).
LOCAL |= {"audit", "audit-export get", "audit-export set", "audit-export disable", "idp get", "idp set", "provision",
          "deprovision", "provision-status", "directory-sync", "directory-status", "external-id"}


class NoDaemonTests(PilotctlMixin, TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="pilot-test-")
        self.addCleanup(shutil.rmtree, self.home, True)

    async def test_every_daemon_command_says_not_running(self):
        covered = {catalogue.find(argv)[0].name for argv in NEEDS_DAEMON}
        self.assertEqual(covered, {c.name for c in catalogue.COMMANDS} - LOCAL)
        for argv in NEEDS_DAEMON:
            result = await self.pilotctl(*argv, "--json")
            self.assertEqual(result.code, 1, argv)
            self.assertEqual(result.stdout, "")
            self.assertEqual(result.stderr, '{"code":"not_running","hint":"start the daemon with: pilotctl daemon '
                                            'start","message":"daemon is not running","status":"error"}\n', argv)
        human = await self.pilotctl("info")
        self.assertEqual(human.stderr, "error: daemon is not running\nhint:  start the daemon with: pilotctl daemon start\n")

    async def test_usage_and_unknown_commands(self):
        bare = await self.pilotctl()
        self.assertEqual((bare.code, bare.stdout), (2, ""))
        self.assertIn("usage: pilotctl", bare.stderr)
        unknown = await self.pilotctl("frobnicate")
        self.assertEqual(unknown.code, 2)
        self.assertTrue(unknown.stderr.startswith("unknown command: frobnicate\n"))
        unknown_json = await self.pilotctl("frobnicate", "--json")
        self.assertEqual(unknown_json.code, 1)
        self.assertEqual(unknown_json.error, {
            "code": "invalid_argument", "hint": "run 'pilotctl context' for the full command list",
            "message": "unknown command: frobnicate", "status": "error"})
        daemon = await self.pilotctl("daemon", "restart", "--json")
        self.assertEqual((daemon.code, daemon.error["code"]), (1, "invalid_argument"))

    async def test_bad_input_is_invalid_argument_before_any_daemon_call(self):
        for argv in (["ping"], ["ping", "a", "--count", "x"], ["ping", "a", "--timeout", "soon"],
                     ["connect", "a", "99999", "--message", "m"], ["send", "a", "port", "--data", "x"],
                     ["send", "a", "7"], ["recv", "-1"], ["listen", "x"], ["bench", "a", "lots"],
                     ["bench", "a", "0"], ["disconnect", "first"], ["lookup", "node"], ["set-tags", "a", "b", "c", "d"],
                     ["info", "--verbose"], ["config", "--set", "novalue"], ["ping", "1:0002.0000.0001"],
                     ["connect", "a"]):
            result = await self.pilotctl(*argv, "--json")
            self.assertEqual(result.code, 1, argv)
            self.assertEqual(result.error["code"], "invalid_argument", (argv, result))

    async def test_set_webhook_without_a_daemon_is_kept_for_the_next_start(self):
        refused = await self.pilotctl("set-webhook", "ftp://example.com/", "--json")
        self.assertEqual((refused.code, refused.error["code"]), (1, "invalid_argument"))
        saved = await self.pilotctl("set-webhook", "https://hooks.example.com/pilot", "--json")
        self.assertEqual(saved.data, {"webhook": "https://hooks.example.com/pilot", "applied": False})
        with open(self.home_file("config.json")) as config:
            self.assertEqual(json.load(config)["webhook"], "https://hooks.example.com/pilot")
        human = await self.pilotctl("clear-webhook")
        self.assertEqual(human.stdout, "webhook cleared\nwill take effect on next daemon start\n")
        with open(self.home_file("config.json")) as config:
            self.assertNotIn("webhook", json.load(config))

    async def test_init_config_context(self):
        init = await self.pilotctl("init", "--registry", "10.0.0.1:9000", "--hostname=alpha", "--json")
        self.assertEqual(init.code, 0)
        self.assertEqual(init.data["registry"], "10.0.0.1:9000")
        self.assertEqual(init.data["beacon"], "127.0.0.1:9001")
        self.assertEqual(init.data["socket"], self.home_file("pilot.sock"))
        with open(self.home_file("config.json")) as config:
            self.assertEqual(json.load(config), {"registry": "10.0.0.1:9000", "hostname": "alpha"})
        shown = await self.pilotctl("config", "--json")
        self.assertEqual(shown.data["hostname"], "alpha")
        self.assertEqual(shown.data["pid_file"], self.home_file("pilot.pid"))
        set_key = await self.pilotctl("config", "--set", "beacon=10.0.0.1:9001")
        self.assertEqual(json.loads(set_key.stdout), {"key": "beacon", "value": "10.0.0.1:9001"})
        context = await self.pilotctl("context", "--json")
        self.assertEqual(context.data["version"], "1.2")
        self.assertIn("daemon start", context.data["commands"])

    async def test_a_broken_config_is_a_clear_error(self):
        with open(self.home_file("config.json"), "w") as config:
            config.write("[]")
        result = await self.pilotctl("config", "--json")
        self.assertEqual(result.error["code"], "invalid_argument")
        self.assertIn("config.json is not a JSON object", result.error["message"])


class CommandTests(PilotctlMixin, TestCase):
    clock = ImmediateClock()

    def setUp(self):
        self.start_fake_daemon()

    async def test_info(self):
        result = await self.pilotctl("info", "--json")
        self.assertEqual(result.code, 0)
        self.assertEqual(result.data["address"], str(NODE))
        self.assertTrue(result.stdout.startswith('{"data":{"address":'))
        self.assertTrue(result.stdout.endswith(',"status":"ok"}\n'))
        human = await self.pilotctl("info")
        self.assertIn("  Uptime:      01:02:05\n", human.stdout)
        self.assertIn("  Encryption:  enabled (X25519 + AES-256-GCM), 2/2 peers encrypted, 1 authenticated\n",
                      human.stdout)
        self.assertIn("  Traffic:     1.5 KB sent / 2.0 MB recv\n", human.stdout)

    async def test_peers_show_the_path(self):
        result = await self.pilotctl("peers", "--json")
        self.assertEqual(result.data["total"], 2)
        self.assertEqual([p["path"] for p in result.data["peers"]], ["direct", "relay"])
        searched = await self.pilotctl("peers", "--search", "40001", "--json")
        self.assertEqual([p["node_id"] for p in searched.data["peers"]], [AGENT_B.node])
        human = await self.pilotctl("peers")
        self.assertIn("PATH", human.stdout.splitlines()[0])
        self.assertIn("relay", human.stdout)

    async def test_connections_and_disconnect(self):
        empty = await self.pilotctl("connections")
        self.assertEqual(empty.stdout, "no connections\n")
        listening = await self.pilotctl("disconnect", "77", "--json")
        self.assertEqual(listening.data, {"conn_id": 77})

    async def test_hostname_tags_visibility_tasks(self):
        result = await self.pilotctl("set-hostname", "alpha")
        self.assertEqual(result.stdout, "hostname set: alpha\n")
        with open(self.home_file("config.json")) as config:
            self.assertEqual(json.load(config)["hostname"], "alpha")
        self.assertEqual((await self.pilotctl("clear-hostname")).stdout, "hostname cleared\n")
        self.assertEqual((await self.pilotctl("set-tags", "gpu", "ml")).stdout, "tags set: #gpu #ml\n")
        self.assertEqual((await self.pilotctl("clear-tags", "--json")).data, {"tags": []})
        self.assertEqual((await self.pilotctl("set-public", "--json")).data["visibility"], "public")
        self.assertEqual((await self.pilotctl("set-private", "--json")).data["visibility"], "private")
        self.assertEqual((await self.pilotctl("enable-tasks", "--json")).data["task_exec"], True)
        self.assertEqual((await self.pilotctl("disable-tasks", "--json")).data["task_exec"], False)
        too_many = await self.pilotctl("set-tags", "a", "b", "c", "d")
        self.assertEqual(too_many.stderr, "error: set-tags: maximum 3 tags allowed, got 4\n")

    async def test_find(self):
        found = await self.pilotctl("find", "agent-b")
        self.assertEqual(found.stdout, "Hostname:  agent-b\nNode ID:   9\nAddress:   0:0000.0000.0009\nVisible:   public\n")
        missing = await self.pilotctl("find", "ghost", "--json")
        self.assertEqual(missing.error, {
            "code": "not_found", "hint": private_name_hint("ghost"),
            "message": 'cannot find "ghost" — hostname not found or no mutual trust', "status": "error"})
        self.assertIn('pilotctl handshake ghost "reason"', missing.error["hint"])

    async def test_unknown_hostname_target(self):
        result = await self.pilotctl("ping", "ghost", "--json")
        self.assertEqual(result.code, 1)
        self.assertEqual(result.error["code"], "not_found")
        self.assertEqual(result.error["message"], 'cannot resolve "ghost" — is the hostname correct and is there '
                                                  "mutual trust?")
        self.assertEqual(result.error["hint"], private_name_hint("ghost"))

    async def test_health(self):
        result = await self.pilotctl("health", "--json")
        self.assertEqual(result.data, {"status": "ok", "uptime_seconds": 3725.5, "connections": 0, "peers": 2,
                                       "bytes_sent": 1536, "bytes_recv": 2 * 1024 * 1024})
        human = await self.pilotctl("health")
        self.assertEqual(human.stdout, "Daemon Health\n  Status:      ok\n  Uptime:      01:02:05\n"
                                       "  Connections: 0\n  Peers:       2\n  Traffic:     1.5 KB sent / 2.0 MB recv\n")

    async def test_ping(self):
        result = await self.pilotctl("ping", "agent-b", "--count", "3")
        self.assertEqual(result.code, 0)
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], "PING 0:0000.0000.0009")
        for seq, line in enumerate(lines[1:4]):
            self.assertRegex(line, rf"^6 bytes from 0:0000\.0000\.0009: seq={seq} time=[0-9]+\.[0-9]{{2}} ms$")
        self.assertEqual(lines[4:7], ["", "--- 0:0000.0000.0009 ping statistics ---",
                                      "3 probes sent, 3 received, 0% probe loss"])
        self.assertRegex(lines[7], r"^rtt min/avg/max = [0-9]+\.[0-9]{2}/[0-9]+\.[0-9]{2}/[0-9]+\.[0-9]{2} ms$")
        self.assertEqual(len(lines), 8)
        self.assertEqual(result.stderr, 'resolved "agent-b" → 0:0000.0000.0009\n')
        as_json = await self.pilotctl("ping", "9", "--count", "2", "--json")
        self.assertEqual(as_json.data["target"], str(AGENT_B))
        self.assertEqual([r["bytes"] for r in as_json.data["results"]], [6, 6])
        self.assertFalse(as_json.data["timeout"])

    async def test_ping_fails_when_every_probe_fails(self):
        result = await self.pilotctl("ping", "99", "--count", "2")
        self.assertEqual(result.code, 1)
        self.assertEqual(result.stdout.count("error: cannot connect to 0:0000.0000.0063 port 7: dial timeout"), 2)
        self.assertIn("error: no reply from 0:0000.0000.0063: all 2 probes failed", result.stderr)
        # As ping(8), the statistics on total loss too, with the right count in every line.
        self.assertIn("\n--- 0:0000.0000.0063 ping statistics ---\n2 probes sent, 0 received, 100% probe loss\n",
                      result.stdout)
        self.assertNotIn("rtt min/avg/max", result.stdout)
        four = await self.pilotctl("ping", "99", "--count", "4", "--json")
        self.assertEqual(four.error["message"], "no reply from 0:0000.0000.0063: all 4 probes failed")
        self.assertEqual(four.stdout, "")
        one = await self.pilotctl("ping", "99", "--count", "1")
        self.assertIn("1 probe sent, 0 received, 100% probe loss", one.stdout)
        self.assertIn("error: no reply from 0:0000.0000.0063: the probe failed", one.stderr)

    async def test_traceroute(self):
        result = await self.pilotctl("traceroute", "0:0000.0000.0009", "--json")
        self.assertEqual(len(result.data["rtt_samples"]), 3)
        self.assertEqual(result.data["target"], str(AGENT_B))
        human = await self.pilotctl("traceroute", "9")
        self.assertTrue(human.stdout.startswith("TRACEROUTE 0:0000.0000.0009\n  1  0:0000.0000.0009  setup="))

    async def test_bench_checks_the_data(self):
        result = await self.pilotctl("bench", "agent-b", "0.5", "--json")
        self.assertEqual(result.code, 0, result)
        self.assertEqual(result.data["sent_bytes"], 512 * 1024)
        self.assertEqual(result.data["recv_bytes"], 512 * 1024)
        human = await self.pilotctl("bench", "agent-b", "0.25", terminal=True)
        self.assertIn("BENCH 0:0000.0000.0009 — sending 0.2 MB via echo port", human.stdout)
        self.assertIn("100%", human.stderr)
        self.assertEqual(human.stderr.count("100%"), 1)
        piped = await self.pilotctl("bench", "agent-b", "0.25")
        self.assertNotIn("\r", piped.stderr)  # no progress bar into a file or a pipe
        self.assertIn("  Echoed:   256.0 KB in ", human.stdout)

    async def test_connect_and_send(self):
        result = await self.pilotctl("connect", "agent-b", "7", "--message", "hello", "--json")
        self.assertEqual(result.data, {"target": str(AGENT_B), "port": 7, "sent": 5, "response": "hello"})
        piped = await self.pilotctl("connect", "9", "7", stdin=io.StringIO("line one\nline two\n"))
        self.assertEqual(piped.stdout, "line one\nline two\n")
        sent = await self.pilotctl("send", "agent-b", "7", "--data", "x")
        self.assertEqual(sent.stdout, "x\n")
        refused = await self.pilotctl("send", "agent-b", "1234", "--data", "x", "--json")
        self.assertEqual(refused.error, {
            "code": "connection_failed", "hint": "check that 0:0000.0000.0009 is reachable: pilotctl ping 0:0000.0000.0009",
            "message": "cannot connect to 0:0000.0000.0009 port 1234: connection refused", "status": "error"})
        interactive = await self.pilotctl("connect", "agent-b", "--json")
        self.assertEqual(interactive.error["message"], "--message is required (interactive mode not supported)")

    async def test_connect_times_out_without_a_response(self):
        listener = await self.pilotctl_listener(2000)
        result = await self.pilotctl("connect", "self", "2000", "--message", "hi", "--timeout", "0.05", "--json")
        self.assertEqual(result.error["code"], "timeout")
        self.assertEqual(result.error["message"], "no response within 50ms")
        await listener.close()

    async def pilotctl_listener(self, port):
        return await (await self.sdk()).listen(port)

    async def sdk(self):
        """An SDK connection of the test's own, playing the remote side."""
        daemon = await client.connect(reactor, self.home_file("pilot.sock"))
        self.addCleanup(daemon.close)
        return daemon

    async def test_recv(self):
        daemon = await self.sdk()
        receiving = ensureDeferred(self.pilotctl("recv", "3000", "--count", "2", "--json"))
        for text in (b"first", b"second"):
            await self.bound(3000)
            stream = await daemon.dial(str(NODE), 3000)
            await stream.write(text)
            await stream.closed
        result = await receiving
        self.assertEqual(result.data, {"messages": [
            {"seq": 0, "port": 3000, "data": "first", "bytes": 5},
            {"seq": 1, "port": 3000, "data": "second", "bytes": 6}], "timeout": False})

    async def test_recv_and_listen_time_out(self):
        recv = await self.pilotctl("recv", "3001", "--timeout", "0.05", "--json")
        self.assertEqual(recv.data, {"messages": [], "timeout": True})
        human = await self.pilotctl("listen", "3001", "--count", "1", "--timeout", "0.05")
        self.assertEqual((human.code, human.stdout), (0, ""))

    async def test_listen_for_datagrams(self):
        daemon = await self.sdk()
        listening = ensureDeferred(self.pilotctl("listen", "4000", "--count", "2", "--json"))
        await self.bound(4000)
        await daemon.send_datagram("agent-b", 4000, b"one")
        await daemon.send_datagram("agent-b", 4000, b"two")
        result = await listening
        self.assertEqual([m["data"] for m in result.data["messages"]], ["one", "two"])
        self.assertEqual(result.data["messages"][0]["src_addr"], str(NODE))

    async def test_listen_unbounded_prints_ndjson(self):
        daemon = await self.sdk()
        listening = ensureDeferred(self.pilotctl("listen", "4001", "--timeout", "0.5", "--json"))
        await self.bound(4001)
        await daemon.send_datagram("agent-b", 4001, b"one")
        result = await listening
        self.assertEqual(result.code, 0)
        self.assertEqual(json.loads(result.stdout.splitlines()[0])["data"], "one")

    async def test_broadcast_says_how_many_members_it_reached(self):
        result = await self.pilotctl("broadcast", "3", "maintenance at noon", "--json")
        self.assertEqual(result.data, {"network_id": 3, "address": "3:0003.FFFF.FFFF", "port": 1000,
                                       "bytes": 19, "sent": 2, "unreachable": 0})
        self.assertEqual(self.fake.node.calls[-1], ("broadcast", 3, 1000, b"maintenance at noon"))
        self.fake.node.broadcast_reach = (1, 1)
        human = await self.pilotctl("broadcast", "3", "hi", "--port", "4000")
        self.assertEqual(human.stdout, "broadcast 2 bytes to network 3 port 4000: sent to 1 member, "
                                       "1 member unreachable\n")
        self.assertEqual(self.fake.node.calls[-1], ("broadcast", 3, 4000, b"hi"))
        self.fake.node.broadcast_reach = (0, 0)
        alone = await self.pilotctl("broadcast", "3", "hi")
        self.assertEqual(alone.stdout, "broadcast 2 bytes to network 3 port 1000: sent to 0 members\n")
        self.assertIn("no other member of network 3 is online", alone.stderr)

    async def test_broadcast_refuses_bad_input_before_the_daemon(self):
        for argv in (["x", "m"], ["70000", "m"], ["3", ""], ["3", "m", "--port", "port"], ["3"]):
            result = await self.pilotctl("broadcast", *argv, "--json")
            self.assertEqual((result.code, result.error["code"]), (1, "invalid_argument"), argv)
        self.assertNotIn("broadcast", [call[0] for call in self.fake.node.calls])

    async def bound(self, port):
        """Wait (bounded) until the command under test has bound ``port`` at the fake daemon."""
        await bounded(self.fake.node.bound(port))


class ConnectionRowTests(TestCase):
    """The connections table reads the daemon's counters (the reference's field names)."""

    def test_row_and_counters(self):
        row, counters = node._connection_rows({
            "id": 1, "local_port": 49152, "remote_addr": "0:0000.0000.0009", "remote_port": 7,
            "state": "ESTABLISHED", "cong_win": 10, "in_flight": 2, "srtt_ms": 1.25, "unacked": 3,
            "ooo_buf": 0, "peer_recv_win": 64, "recv_win": 32, "bytes_sent": 2048, "bytes_recv": 10,
            "retransmits": 4, "fast_retx": 1, "sacked_bytes": 5, "dup_acks": 6,
        })
        self.assertEqual(row[5:], [10, 2, "1.2ms", 3, 0, 64, 32])
        self.assertEqual(counters, "    tx=2.0 KB rx=10 B retx=4 fast-retx=1 sack=5 dup-ack=6")

    def test_unmeasured_round_trip(self):
        row, _ = node._connection_rows({
            "id": 1, "local_port": 49152, "remote_addr": "0:0000.0000.0009", "remote_port": 7,
            "state": "SYN_SENT", "cong_win": 10240, "in_flight": 0, "srtt_ms": None, "unacked": 0,
            "ooo_buf": 0, "peer_recv_win": 0, "recv_win": 512, "bytes_sent": 0, "bytes_recv": 0,
            "retransmits": 0, "fast_retx": 0, "sacked_bytes": 0, "dup_acks": 0,
        })
        self.assertEqual(row[7], "-")
