"""Virtual addresses: the reference's text and binary forms, and every parse error."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire.address import Addr, SocketAddr, broadcast, ZERO, REGISTRY, BEACON, NAMESERVER
from tests.vectors import vectors

networks = st.integers(0, 0xFFFF)
nodes = st.integers(0, 0xFFFFFFFF)
addrs = st.builds(Addr, networks, nodes)


class KnownAnswerTests(SynchronousTestCase):
    def test_format_vectors(self):
        checked = 0
        for v in vectors("address", prefix="address.format"):
            addr = Addr(v["inputs"]["network"], v["inputs"]["node"])
            self.assertEqual(str(addr), v["output"]["text"], v["id"])
            self.assertEqual(addr.to_bytes().hex(), v["output_hex"], v["id"])
            self.assertEqual(Addr.from_bytes(bytes.fromhex(v["output_hex"])), addr)
            self.assertEqual(addr.is_zero, v["output"]["is_zero"], v["id"])
            self.assertEqual(addr.is_broadcast, v["output"]["is_broadcast"], v["id"])
            checked += 1
        self.assertEqual(checked, 10)

    def test_parse_vectors(self):
        checked = 0
        for v in vectors("address", prefix="address.parse."):
            out = v["output"]
            if out["ok"]:
                addr = Addr.parse(v["inputs"]["text"])
                self.assertEqual(addr, Addr(out["network"], out["node"]), v["id"])
                self.assertEqual(str(addr), out["canonical_text"], v["id"])
            else:
                self.assertRaises(DecodeError, Addr.parse, v["inputs"]["text"])
            checked += 1
        self.assertEqual(checked, 15)

    def test_parse_socket_vectors(self):
        for v in vectors("address", prefix="address.parse_socket"):
            out = v["output"]
            if out["ok"]:
                sock = SocketAddr.parse(v["inputs"]["text"])
                self.assertEqual(sock, SocketAddr(Addr(out["network"], out["node"]), out["port"]))
                self.assertEqual(str(sock), out["canonical_text"])
            else:
                self.assertRaises(DecodeError, SocketAddr.parse, v["inputs"]["text"])


class ParseErrorTests(SynchronousTestCase):
    def assertRejected(self, text, fragment):
        with self.assertRaises(DecodeError) as caught:
            Addr.parse(text)
        self.assertIn(fragment, str(caught.exception))

    def test_messages_name_the_problem(self):
        self.assertRejected("0-0000.0000.0001", "expected N:XXXX.YYYY.YYYY")
        self.assertRejected("1:0002.0000.0001", "network mismatch")
        self.assertRejected("0:000.0000.0001", "4 hex digits")
        self.assertRejected("0:0000.0000", "3 dot-separated")
        self.assertRejected("65536:0000.0000.0001", "at most 65535")

    def test_python_number_syntax_is_not_accepted(self):
        for text in ("+1:0001.0000.0001", "1_0:000A.0000.0001", " 1:0001.0000.0001",
                     "0:0x00.0000.0001", "0:0000.0000.+001", "٣:0003.0000.0001", ""):
            self.assertRaises(DecodeError, Addr.parse, text)

    def test_non_text_is_rejected(self):
        self.assertRaises(DecodeError, Addr.parse, None)
        self.assertRaises(DecodeError, SocketAddr.parse, b"0:0000.0000.0001:7")

    def test_truncated_binary(self):
        self.assertRaises(DecodeError, Addr.from_bytes, b"\x00" * 5)
        self.assertRaises(DecodeError, Addr.from_bytes, b"\x00" * 6, 1)


class SpecialAddressTests(SynchronousTestCase):
    def test_constants(self):
        self.assertEqual(str(ZERO), "0:0000.0000.0000")
        self.assertEqual(str(REGISTRY), "0:0000.0000.0001")
        self.assertEqual(str(BEACON), "0:0000.0000.0002")
        self.assertEqual(str(NAMESERVER), "0:0000.0000.0003")
        self.assertEqual(str(broadcast(7)), "7:0007.FFFF.FFFF")
        self.assertTrue(broadcast(7).is_broadcast)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(addrs)
    def test_text_round_trip(self, addr):
        self.assertEqual(Addr.parse(str(addr)), addr)
        self.assertEqual(Addr.parse(str(addr).lower()), addr)

    @settings(max_examples=300, deadline=None)
    @given(addrs)
    def test_binary_round_trip(self, addr):
        self.assertEqual(Addr.from_bytes(addr.to_bytes()), addr)

    @settings(max_examples=200, deadline=None)
    @given(addrs, st.integers(0, 0xFFFF))
    def test_socket_round_trip(self, addr, port):
        sock = SocketAddr(addr, port)
        self.assertEqual(SocketAddr.parse(str(sock)), sock)

    @settings(max_examples=500, deadline=None)
    @given(st.text(max_size=30))
    def test_random_text_only_raises_decode_error(self, text):
        for parse in (Addr.parse, SocketAddr.parse):
            try:
                parse(text)
            except DecodeError:
                pass

    @settings(max_examples=300, deadline=None)
    @given(st.from_regex(r"\A[0-9]{1,6}:[0-9A-Fa-fxX+_ ]{3,5}\.[0-9A-Fa-f]{3,5}\.[0-9A-Fa-f]{4}\Z"))
    def test_near_miss_text_only_raises_decode_error(self, text):
        try:
            addr = Addr.parse(text)
        except DecodeError:
            return
        self.assertEqual(Addr.parse(str(addr)), addr)
