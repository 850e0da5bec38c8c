"""host:port text: one parser and one formatter with IPv6 brackets and port bounds."""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import INVALID_ARGUMENT, DecodeError
from pilotnet.wire.hostport import join_host_port, split_host_port

ports = st.integers(1, 0xFFFF)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)
hosts = st.one_of(ipv4, ipv6, names)


class KnownAnswerTests(SynchronousTestCase):
    def test_accepted(self):
        for text, expected in [
            ("127.0.0.1:9000", ("127.0.0.1", 9000)),
            ("[::1]:9000", ("::1", 9000)),
            ("[fe80::1%eth0]:1", ("fe80::1%eth0", 1)),
            ("registry.example.org:65535", ("registry.example.org", 65535)),
            ("localhost:00080", ("localhost", 80)),
        ]:
            self.assertEqual(split_host_port(text), expected, text)

    def test_refused(self):
        for text in ["", "127.0.0.1", "127.0.0.1:", ":9000", "[]:9000", "::1:9000", "[::1:9000", "::1]:9000",
                     "a[b]:1", "[::1]x:1", "[[::1]]:1", "host:0", "host:65536", "host:123456", "host:+80",
                     "host: 80", "host:8_0", "host:８０", "host:-1", "host:0x50"]:
            with self.assertRaises(DecodeError, msg=text) as caught:
                split_host_port(text)
            self.assertEqual(caught.exception.code, INVALID_ARGUMENT)
            self.assertIn("hint", str(caught.exception))

    def test_options(self):
        self.assertEqual(split_host_port(":9000", allow_empty_host=True), ("", 9000))
        self.assertEqual(split_host_port("0.0.0.0:0", allow_port_zero=True), ("0.0.0.0", 0))
        self.assertEqual(split_host_port("[::]:0", allow_empty_host=True, allow_port_zero=True), ("::", 0))
        self.assertRaises(DecodeError, split_host_port, "[]:1", allow_empty_host=True)

    def test_message_names_what(self):
        with self.assertRaises(DecodeError) as caught:
            split_host_port("nowhere", what="--standby")
        self.assertIn("--standby", str(caught.exception))

    def test_not_text(self):
        self.assertRaises(DecodeError, split_host_port, None)
        self.assertRaises(DecodeError, split_host_port, b"127.0.0.1:1")

    def test_join(self):
        self.assertEqual(join_host_port("192.0.2.1", 7), "192.0.2.1:7")
        self.assertEqual(join_host_port("2001:db8::1", 7), "[2001:db8::1]:7")
        self.assertEqual(join_host_port("", 7), ":7")


class PropertyTests(SynchronousTestCase):
    @given(hosts, ports)
    def test_round_trip(self, host, port):
        self.assertEqual(split_host_port(join_host_port(host, port)), (host, port))

    @given(st.text(max_size=80))
    def test_garbage_raises_only_decode_error(self, text):
        for empty in (False, True):
            try:
                host, port = split_host_port(text, allow_empty_host=empty, allow_port_zero=empty)
            except DecodeError:
                continue
            self.assertTrue(0 <= port <= 0xFFFF)
            self.assertEqual(split_host_port(join_host_port(host, port), allow_empty_host=empty,
                                             allow_port_zero=empty), (host, port))

    @given(hosts, st.integers(0x10000, 10 ** 6))
    def test_ports_above_range_refused(self, host, port):
        self.assertRaises(DecodeError, split_host_port, join_host_port(host, port))
