"""The gateway's mapping table: the reference's allocation order, uniqueness and error texts."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import ALREADY_EXISTS, INVALID_ARGUMENT, NOT_FOUND, PilotError
from pilotnet.gateway import mappings
from pilotnet.gateway.mappings import Mapping, MappingTable, parse_ports, parse_subnet
from pilotnet.gateway.tap import pair_targets
from pilotnet.wire.address import Addr


class MappingTableTests(SynchronousTestCase):
    def setUp(self):
        self.table = MappingTable(parse_subnet(mappings.DEFAULT_SUBNET))

    def add(self, node, ip=None):
        mapping = self.table.plan(Addr(0, node), ip)
        self.table.add(mapping)
        return mapping

    def refused(self, code, message, node, ip=None):
        with self.assertRaises(PilotError) as raised:
            self.table.plan(Addr(0, node), ip)
        self.assertEqual((raised.exception.code, raised.exception.message), (code, message))

    def test_automatic_ips_come_in_order_skipping_used_ones(self):
        self.assertEqual(self.add(4).local_ip, "10.4.0.1")
        self.assertEqual(self.add(5, "10.4.0.2").local_ip, "10.4.0.2")
        self.assertEqual(self.add(6).local_ip, "10.4.0.3")
        self.table.remove("10.4.0.1")
        self.assertEqual(self.add(7).local_ip, "10.4.0.1")

    def test_an_address_already_mapped_keeps_its_ip(self):
        first = self.add(4)
        self.assertEqual(self.table.plan(Addr(0, 4), "10.4.0.9"), first)
        self.assertEqual(len(self.table), 1)

    def test_explicit_ips_must_be_free_and_inside_the_subnet(self):
        self.add(4, "10.4.0.9")
        self.refused(ALREADY_EXISTS, "IP 10.4.0.9 already mapped", 5, "10.4.0.9")
        self.refused(INVALID_ARGUMENT, "IP 10.5.0.1 not in subnet 10.4.0.0/16", 5, "10.5.0.1")
        self.refused(INVALID_ARGUMENT, "invalid IP 'ten'", 5, "ten")

    def test_exhaustion_and_unknown_unmaps_use_the_reference_texts(self):
        table = MappingTable(parse_subnet("10.9.0.0/30"))
        for node in (1, 2):
            table.add(table.plan(Addr(0, node)))
        with self.assertRaises(PilotError) as raised:
            table.plan(Addr(0, 3))
        self.assertEqual(raised.exception.message, "subnet exhausted")
        with self.assertRaises(PilotError) as raised:
            table.remove("10.9.0.3")
        self.assertEqual((raised.exception.code, raised.exception.message), (NOT_FOUND, "no mapping for 10.9.0.3"))

    def test_the_table_is_bounded(self):
        self.patch(mappings, "MAX_MAPPINGS", 2)
        self.add(1)
        self.add(2)
        with self.assertRaises(PilotError) as raised:
            self.table.plan(Addr(0, 3))
        self.assertIn("too many mappings", raised.exception.message)

    def test_listing_is_in_ip_order_and_documents_the_reference_fields(self):
        self.add(4, "10.4.0.10")
        self.add(5, "10.4.0.9")
        self.assertEqual([m.local_ip for m in self.table.mappings()], ["10.4.0.9", "10.4.0.10"])
        self.assertEqual(Mapping("10.4.0.1", Addr(0, 4), "alpha").document(),
                         {"local_ip": "10.4.0.1", "pilot_addr": "0:0000.0000.0004", "hostname": "alpha"})


class OptionParsingTests(SynchronousTestCase):
    def test_subnets_and_ports(self):
        self.assertEqual(str(parse_subnet("10.4.0.7/16")), "10.4.0.0/16")
        for bad in ("10.4.0.0/31", "fd00::/64", "nonsense"):
            self.assertRaises(PilotError, parse_subnet, bad)
        self.assertEqual(parse_ports("80, 443,80"), [80, 443])
        for bad in ("0", "80,x", "65536", ""):
            self.assertRaises(PilotError, parse_ports, bad)

    def test_targets_pair_with_the_ip_that_follows_them(self):
        self.assertEqual(pair_targets(["alpha", "10.4.0.5", "0:0000.0000.0004", "beta"]),
                         [("alpha", "10.4.0.5"), ("0:0000.0000.0004", None), ("beta", None)])
        from twisted.python.usage import UsageError
        self.assertRaises(UsageError, pair_targets, ["10.4.0.5"])
        self.assertRaises(UsageError, pair_targets, ["alpha", "10.4.0.5", "10.4.0.6"])
