"""The nameserver's record protocol (port 53): the reference's request and reply texts, and fuzzing."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire import nameserver as ns
from pilotnet.wire.address import Addr

SETTINGS = settings(max_examples=300, deadline=None)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=ns.MAX_NAME)
addresses = st.builds(Addr, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
requests = st.one_of(
    st.builds(lambda kind, name: ns.Query(kind, name), st.sampled_from(["A", "N"]), names),
    st.builds(lambda network, port: ns.Query("S", network=network, port=port),
              st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(lambda name, address: ns.Register("A", name, address=address), names, addresses),
    st.builds(lambda name, network: ns.Register("N", name, network=network), names, st.integers(0, 0xFFFF)),
    st.builds(lambda name, address, network, port: ns.Register("S", name, address, network, port),
              names, addresses, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
)


class RequestTests(SynchronousTestCase):
    def test_the_reference_requests(self):
        self.assertEqual(ns.parse_request(b"QUERY A agent-alpha"), ns.Query("A", "agent-alpha"))
        self.assertEqual(ns.parse_request(b"query n research\n"), ns.Query("N", "research"))
        self.assertEqual(ns.parse_request(b"QUERY S 1 80"), ns.Query("S", network=1, port=80))
        self.assertEqual(ns.parse_request(b"REGISTER A web 0:0000.0000.0004\r\n"),
                         ns.Register("A", "web", address=Addr(0, 4)))
        self.assertEqual(ns.parse_request(b"register N research 7"), ns.Register("N", "research", network=7))
        self.assertEqual(ns.parse_request(b"REGISTER s web 1:0001.0000.0009 1 8080"),
                         ns.Register("S", "web", Addr(1, 9), 1, 8080))

    def test_the_reference_errors(self):
        for data, message in (
            (b"QUERY", "too few fields"), (b"", "too few fields"), (b"QUERY A", "too few fields"),
            (b"REGISTER S web 0:0000.0000.0004 1", "too few fields"),
            (b"DELETE A web", "unknown command: DELETE"), (b"QUERY MX web", "unknown record type: MX"),
            (b"QUERY S 70000 80", 'invalid network id "70000"'), (b"QUERY S 1 x", 'invalid port "x"'),
            (b"REGISTER A web 4", 'invalid address "4"'), (b"QUERY A bad/name", 'invalid name "bad/name"'),
            (b"QUERY A caf\xc3\xa9", "request is not ASCII text"),
            (b"QUERY A " + b"a" * ns.MAX_REQUEST, f"request too long (at most {ns.MAX_REQUEST} bytes)"),
        ):
            with self.assertRaises(DecodeError) as raised:
                ns.parse_request(data)
            self.assertEqual(raised.exception.message, message, data)

    def test_replies_are_the_reference_texts(self):
        self.assertEqual(ns.a_reply("web", Addr(0, 4)), b"A web 0:0000.0000.0004")
        self.assertEqual(ns.n_reply("research", 7), b"N research 7")
        self.assertEqual(ns.s_reply([("web", Addr(0, 4), 80), ("api", Addr(0, 5), 80)]),
                         b"S web 0:0000.0000.0004 80\nS api 0:0000.0000.0005 80")
        self.assertEqual(ns.s_reply([]), b"S")
        self.assertEqual(ns.error_reply('name "x" not found'), b'ERR name "x" not found')

    @SETTINGS
    @given(requests)
    def test_requests_round_trip(self, request):
        self.assertEqual(ns.parse_request(ns.encode_request(request)), request)

    @SETTINGS
    @given(st.binary(max_size=ns.MAX_REQUEST + 64))
    def test_random_bytes_parse_or_raise_decode_error(self, data):
        try:
            request = ns.parse_request(data)
        except DecodeError as error:
            self.assertLessEqual(len(ns.error_reply(error.message)), 128)  # a refusal never echoes much back
        else:
            self.assertIsInstance(request, (ns.Query, ns.Register))

    @SETTINGS
    @given(requests, st.integers(0, 200))
    def test_truncated_requests_parse_or_raise_decode_error(self, request, cut):
        data = ns.encode_request(request)
        try:
            ns.parse_request(data[:max(0, len(data) - cut)])
        except DecodeError:
            pass

    @SETTINGS
    @given(st.lists(st.text(alphabet="AQRSNEGITUYaqrs 0123456789:.\t", max_size=20), max_size=8))
    def test_word_salad_parses_or_raises_decode_error(self, words):
        try:
            ns.parse_request(" ".join(words).encode())
        except DecodeError:
            pass
