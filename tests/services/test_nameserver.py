"""The nameserver on port 53: its rules (ownership, expiry, bounds) and the service over real daemons."""

import os

from twisted.trial.unittest import SynchronousTestCase, TestCase

from pilotnet.errors import DecodeError
from pilotnet.services import nameserver
from pilotnet.services.nameserver import MAX_RECORDS_PER_NODE, RECORD_TTL, PORT_NAMESERVER, Records
from pilotnet.wire.address import Addr
from tests.integration.processes import DaemonProcess, RendezvousProcess

ALPHA, BETA = Addr(0, 4), Addr(0, 5)


class RecordTests(SynchronousTestCase):
    def setUp(self):
        self.records = Records()

    def ask(self, text, caller=ALPHA, now=0.0):
        return self.records.answer(text.encode(), caller, now)

    def test_a_node_registers_and_others_query_its_records(self):
        self.assertEqual(self.ask("REGISTER A alpha 0:0000.0000.0004"), b"OK")
        self.assertEqual(self.ask("QUERY A alpha", caller=BETA), b"A alpha 0:0000.0000.0004")
        self.assertEqual(self.ask("REGISTER N research 7"), b"OK")
        self.assertEqual(self.ask("QUERY N research", caller=BETA), b"N research 7")
        self.assertEqual(self.ask("REGISTER S web 0:0000.0000.0004 0 80"), b"OK")
        self.assertEqual(self.ask("REGISTER S api 0:0000.0000.0005 0 80", caller=BETA), b"OK")
        self.assertEqual(self.ask("QUERY S 0 80"), b"S api 0:0000.0000.0005 80\nS web 0:0000.0000.0004 80")
        self.assertEqual(self.ask("QUERY S 0 443"), b"S")

    def test_unknown_names_get_the_reference_errors(self):
        with self.assertRaises(DecodeError):
            self.ask("QUERY")
        self.assertEqual(self.ask("QUERY A nobody"), b'ERR name "nobody" not found')
        self.assertEqual(self.ask("QUERY N nowhere"), b'ERR network "nowhere" not found')

    def test_a_node_cannot_register_another_nodes_address(self):
        for text in ("REGISTER A alpha 0:0000.0000.0005", "REGISTER S web 0:0000.0000.0005 0 80"):
            with self.assertRaises(nameserver.RecordRefused) as raised:
                self.ask(text)
            self.assertEqual(raised.exception.message, "cannot register address for another node")
        self.assertEqual(len(self.records), 0)

    def test_a_name_belongs_to_its_registrant_until_it_expires(self):
        self.ask("REGISTER A shared 0:0000.0000.0004")
        self.ask("REGISTER N lab 1")
        with self.assertRaises(nameserver.RecordRefused) as raised:
            self.ask("REGISTER A shared 0:0000.0000.0005", caller=BETA, now=10)
        self.assertEqual(raised.exception.message, 'name "shared" is registered by another node')
        with self.assertRaises(nameserver.RecordRefused):
            self.ask("REGISTER N lab 2", caller=BETA, now=10)
        self.assertEqual(self.ask("REGISTER A shared 0:0000.0000.0005", caller=BETA, now=RECORD_TTL + 1), b"OK")
        self.assertEqual(self.ask("QUERY A shared", now=RECORD_TTL + 2), b"A shared 0:0000.0000.0005")

    def test_records_expire_and_re_registering_refreshes_them(self):
        self.ask("REGISTER A alpha 0:0000.0000.0004", now=0)
        self.ask("REGISTER S web 0:0000.0000.0004 0 80", now=0)
        self.ask("REGISTER S web 0:0000.0000.0004 0 80", now=200)  # refreshed, not duplicated
        self.assertEqual(self.ask("QUERY A alpha", now=RECORD_TTL + 1), b'ERR name "alpha" not found')
        self.assertEqual(self.ask("QUERY S 0 80", now=RECORD_TTL + 1), b"S web 0:0000.0000.0004 80")
        self.assertEqual(self.records.expire(200 + RECORD_TTL), 1)
        self.assertEqual(len(self.records), 0)

    def test_one_node_holds_a_bounded_number_of_records(self):
        for number in range(MAX_RECORDS_PER_NODE):
            self.ask(f"REGISTER A name{number} 0:0000.0000.0004")
        with self.assertRaises(nameserver.RecordRefused) as raised:
            self.ask("REGISTER A one-more 0:0000.0000.0004")
        self.assertIn("too many records", raised.exception.message)
        self.assertEqual(self.ask("REGISTER A name0 0:0000.0000.0004"), b"OK")  # a refresh still works
        self.assertEqual(self.ask("REGISTER A beta 0:0000.0000.0005", caller=BETA), b"OK")

    def test_the_store_as_a_whole_is_bounded(self):
        self.patch(nameserver, "MAX_RECORDS", 3)
        for node in range(3):
            self.ask(f"REGISTER A n{node} 0:0000.0000.{node:04X}", caller=Addr(0, node))
        with self.assertRaises(nameserver.RecordRefused) as raised:
            self.ask("REGISTER A late 0:0000.0000.0009", caller=Addr(0, 9))
        self.assertEqual(raised.exception.message, "nameserver is full")


class NameserverServiceTests(TestCase):
    """Port 53 of a real daemon, asked by another over a real stream (one request, one reply per stream)."""

    timeout = 120

    async def ask(self, client, target, text):
        stream = await client.dial(target, PORT_NAMESERVER)
        await stream.write(text)
        reply = b""
        async for chunk in stream:
            reply += chunk
        return reply

    async def test_register_and_query_over_port_53(self):
        base = self.mktemp()
        rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        alpha = await DaemonProcess(self, os.path.join(base, "alpha"), rendezvous, hostname="alpha").start()
        beta = await DaemonProcess(self, os.path.join(base, "beta"), rendezvous, hostname="beta").start()
        client = await alpha.connect()
        self.assertEqual(await self.ask(client, "beta", f"REGISTER A alpha {alpha.address}\n".encode()), b"OK")
        self.assertEqual(await self.ask(client, "beta", b"QUERY A alpha"), f"A alpha {alpha.address}".encode())
        self.assertEqual(await self.ask(client, "beta", f"REGISTER A beta {beta.address}".encode()),
                         b"ERR cannot register address for another node")
        self.assertEqual(await self.ask(client, "beta", f"REGISTER S web {alpha.address} 0 80".encode()), b"OK")
        self.assertEqual(await self.ask(client, "beta", b"query s 0 80"), f"S web {alpha.address} 80".encode())
        self.assertEqual(await self.ask(client, "beta", b"QUERY A beta"), b'ERR name "beta" not found')
        self.assertEqual(await self.ask(client, "beta", b"HELLO"), b"ERR too few fields")
        self.assertEqual(await self.ask(client, "beta", b"\xff" * 5000),
                         b"ERR request too long (at most 1024 bytes)")
