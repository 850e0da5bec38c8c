"""The real ``pilotctl`` against real daemons: what users type, and what they get back."""

import os

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, pilotctl, wait_until


class PilotctlTests(PilotctlMixin, TestCase):
    timeout = 180

    async def network(self):
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        self.alpha = await DaemonProcess(self, os.path.join(base, "alpha"), self.rendezvous,
                                         hostname="alpha").start()
        self.beta = await DaemonProcess(self, os.path.join(base, "beta"), self.rendezvous,
                                        hostname="beta").start()

    async def wait_bound(self, daemon, port):
        async def bound():
            info = await daemon.query_info()
            return info is not None and port in info["bound_ports"]
        await wait_until(bound, f"port {port} to be bound")

    async def test_node_and_diagnostics_commands(self):
        await self.network()
        info = await self.ok(self.alpha, "info")
        self.assertEqual((info["node_id"], info["address"], info["hostname"]),
                         (self.alpha.node_id, self.alpha.address, "alpha"))
        found = await self.ok(self.alpha, "find", "beta")
        self.assertEqual((found["node_id"], found["address"]), (self.beta.node_id, self.beta.address))
        ping = await self.ok(self.alpha, "ping", "beta", "--count", "2")
        self.assertEqual([r["seq"] for r in ping["results"]], [0, 1])
        self.assertTrue(all(r["rtt_ms"] > 0 for r in ping["results"]))
        bench = await self.ok(self.alpha, "bench", "beta", "20")
        self.assertEqual(bench["sent_bytes"], 20 * 1024 * 1024)
        self.assertEqual(bench["recv_bytes"], bench["sent_bytes"])
        peers = await self.ok(self.alpha, "peers")
        [peer] = peers["peers"]
        self.assertEqual((peer["node_id"], peer["path"], peer["encrypted"], peer["authenticated"]),
                         (self.beta.node_id, "direct", True, True))
        connections = await self.ok(self.alpha, "connections")
        self.assertIn("total", connections)
        human = await self.on(self.alpha, "ping", "beta", "--count", "1")
        self.assertEqual(human.code, 0, human)
        self.assertIn(f"PING {self.beta.address}", human.stdout)

    async def test_messages_streams_and_datagrams(self):
        await self.network()
        receiving = ensureDeferred(self.on(self.beta, "recv", "3000", "--count", "1", "--json", "--timeout", "60s"))
        await self.wait_bound(self.beta, 3000)
        sent = await self.ok(self.alpha, "send", "beta", "3000", "--data", "hello beta")
        self.assertEqual(sent["sent"], len("hello beta"))
        received = await receiving
        self.assertEqual(received.code, 0, received)
        [message] = received.json()["data"]["messages"]
        self.assertEqual(message["data"], "hello beta")

        echoed = await self.ok(self.alpha, "connect", "beta", "7", "--message", "echo me")
        self.assertEqual(echoed["response"], "echo me")

        listening = ensureDeferred(self.on(self.beta, "listen", "3001", "--count", "1", "--json", "--timeout", "60s"))
        await self.wait_bound(self.beta, 3001)
        sender = await self.alpha.connect()
        await sender.send_datagram(self.beta.address, 3001, b"datagram!")
        heard = await listening
        self.assertEqual(heard.code, 0, heard)
        [datagram] = heard.json()["data"]["messages"]
        self.assertEqual((datagram["data"], datagram["src_addr"]), ("datagram!", self.alpha.address))

    async def test_bad_input_gets_a_code_a_message_and_an_exit_status(self):
        await self.network()
        cases = [
            (("ping", "no-such-host", "--count", "1"), "not_found"),
            (("send", "beta", "99999", "--data", "x"), "invalid_argument"),
            (("send", "beta", "port", "--data", "x"), "invalid_argument"),
            (("ping", "beta", "--count", "many"), "invalid_argument"),
            (("connect", "0:0000.0000.0999", "7", "--message", "x", "--timeout", "3s"), "not_found"),  # no such node
            (("lookup", "abc"), "invalid_argument"),
            (("frobnicate",), "invalid_argument"),
        ]
        for args, code in cases:
            result = await self.on(self.alpha, *args, "--json")
            self.assertEqual(result.code, 1, (args, result))
            error = result.error()
            self.assertEqual((error["status"], error["code"]), ("error", code), (args, result))
            self.assertTrue(error["message"], args)
        unknown = await self.on(self.alpha, "frobnicate")
        self.assertEqual(unknown.code, 2, unknown)
        human = await self.on(self.alpha, "ping", "no-such-host", "--count", "1")
        self.assertEqual(human.code, 1)
        self.assertIn("error: ", human.stderr)
        missing = await pilotctl(self, self.alpha.home, "info", "--json",
                                 socket_path=os.path.join(self.alpha.home, "missing.sock"))
        self.assertEqual(missing.code, 1)
        self.assertEqual(missing.error()["code"], "not_running")
        self.assertIn("pilotctl daemon start", missing.error()["hint"])
