"""Beacon messages 0x01-0x07, IPv4 and IPv6."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire import beacon
from pilotnet.wire.beacon import (
    Discover, DiscoverReply, Endpoint, PunchCommand, PunchRequest, Relay, RelayDeliver, Sync,
)
from tests.vectors import by_id, vectors

u32 = st.integers(0, 0xFFFFFFFF)
ports = st.integers(0, 0xFFFF)
endpoints = st.builds(Endpoint, st.ip_addresses().map(str), ports).filter(
    # IPv4-mapped IPv6 addresses travel as IPv4, so they come back in IPv4 form.
    lambda e: not e.host.startswith("::ffff:")
)
frames = st.binary(min_size=4, max_size=300)
cookies = st.one_of(st.just(b""), st.binary(min_size=beacon.COOKIE_SIZE, max_size=beacon.COOKIE_SIZE).filter(any))
messages = st.one_of(
    st.builds(Discover, u32, cookies),
    st.builds(DiscoverReply, endpoints, cookies),
    st.builds(PunchRequest, u32, u32),
    st.builds(PunchCommand, endpoints, cookies),
    st.builds(Relay, u32, u32, frames),
    st.builds(RelayDeliver, u32, frames),
    st.builds(Sync, u32, st.lists(u32, max_size=50).map(tuple)),
)


class KnownAnswerTests(SynchronousTestCase):
    def test_encoded_vectors_round_trip(self):
        checked = 0
        for v in vectors("beacon"):
            if "output_hex" not in v:
                continue
            raw = bytes.fromhex(v["output_hex"])
            message = beacon.decode(raw)
            self.assertEqual(beacon.encode(message), raw, v["id"])
            checked += 1
        self.assertEqual(checked, 13)

    def test_fields(self):
        self.assertEqual(beacon.decode(bytes.fromhex(by_id("beacon.01_discover_node1")["output_hex"])), Discover(1))
        self.assertEqual(beacon.encode(Discover(0)).hex(), by_id("beacon.01_discover_node0")["output_hex"])
        self.assertEqual(beacon.encode(PunchRequest(1, 2)).hex(), by_id("beacon.03_punch_request")["output_hex"])
        v = by_id("beacon.02_discover_reply_parse")
        reply = beacon.decode(bytes.fromhex(v["inputs"]["reply_hex"]))
        self.assertEqual(str(reply.endpoint), v["output"]["endpoint"])
        for vid in ("beacon.02_discover_reply_ipv4", "beacon.02_discover_reply_ipv6"):
            v = by_id(vid)
            reply = DiscoverReply(Endpoint(v["inputs"]["observed_ip"], v["inputs"]["observed_port"]))
            self.assertEqual(beacon.encode(reply).hex(), v["output_hex"], vid)
        for vid in ("beacon.04_punch_command_ipv4", "beacon.04_punch_command_ipv6"):
            v = by_id(vid)
            command = PunchCommand(Endpoint(v["inputs"]["target_ip"], v["inputs"]["target_port"]))
            self.assertEqual(beacon.encode(command).hex(), v["output_hex"], vid)
        v = by_id("beacon.05_relay_pilt")
        inner = bytes.fromhex(v["inputs"]["inner_frame_hex"])
        relay = Relay(v["inputs"]["sender"], v["inputs"]["destination"], inner)
        self.assertEqual(beacon.encode(relay).hex(), v["output_hex"])
        self.assertEqual(beacon.relay_envelope(relay.sender, relay.destination, inner).hex(), v["output_hex"])
        v = by_id("beacon.06_relay_deliver_pilt")
        self.assertEqual(beacon.encode(RelayDeliver(1, inner)).hex(), v["output_hex"])
        v = by_id("beacon.07_sync_one_node")
        self.assertEqual(beacon.encode(Sync(7, (1,))).hex(), v["output_hex"])
        v = by_id("beacon.07_sync_two_nodes")
        decoded = beacon.decode(bytes.fromhex(v["output_hex"]))
        self.assertEqual(set(decoded.nodes), set(v["inputs"]["nodes_set"]))

    def test_punch_flow_vector_layouts(self):
        v = by_id("beacon.03_punch_request_flow")
        to_requester = beacon.decode(bytes.fromhex(v["output"]["to_requester_hex"]))
        to_target = beacon.decode(bytes.fromhex(v["output"]["to_target_hex"]))
        self.assertEqual(str(to_requester.endpoint), v["inputs"]["node2_addr"])
        self.assertEqual(str(to_target.endpoint), v["inputs"]["node1_addr"])

    def test_ipv4_mapped_travels_as_ipv4(self):
        raw = beacon.encode(DiscoverReply(Endpoint("::ffff:10.1.2.3", 9)))
        self.assertEqual(raw[1], 4)
        self.assertEqual(beacon.decode(raw).endpoint, Endpoint("10.1.2.3", 9))


class ErrorTests(SynchronousTestCase):
    def test_errors_name_the_message(self):
        cases = {
            b"": "empty",
            b"\x01\x00\x00": "discover truncated",
            b"\x02\x05" + bytes(7): "IP length 5",
            b"\x04\x04\x01\x02": "punch command truncated",
            b"\x03" + bytes(7): "punch request truncated",
            b"\x05" + bytes(11): "relay truncated",
            b"\x06" + bytes(7): "relay delivery truncated",
            b"\x07\x00\x00\x00\x01\x00\x02\x00\x00\x00\x01": "announces 2 nodes",
            b"\x09": "unknown beacon message type 0x09",
        }
        for raw, fragment in cases.items():
            with self.assertRaises(DecodeError) as caught:
                beacon.decode(raw)
            self.assertIn(fragment, str(caught.exception))

    def test_discover_tolerates_extra_bytes(self):
        self.assertEqual(beacon.decode(b"\x01\x00\x00\x00\x05extra"), Discover(5))

    def test_is_beacon_message(self):
        self.assertTrue(beacon.is_beacon_message(b"\x01\x00\x00\x00\x01"))
        self.assertFalse(beacon.is_beacon_message(b"PILS"))
        self.assertFalse(beacon.is_beacon_message(b""))


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(messages)
    def test_round_trip(self, message):
        self.assertEqual(beacon.decode(beacon.encode(message)), message)

    @settings(max_examples=300, deadline=None)
    @given(messages.filter(lambda m: not isinstance(m, (Relay, RelayDeliver))), st.data())
    def test_truncation_only_raises_decode_error(self, message, data):
        raw = beacon.encode(message)
        cut = data.draw(st.integers(0, len(raw) - 1))
        if isinstance(message, Discover) or (isinstance(message, Sync) and cut >= 7 + 4 * len(message.nodes)):
            return
        if getattr(message, "cookie", b"") and cut >= len(raw) - beacon.COOKIE_SIZE:
            self.assertEqual(beacon.decode(raw[:cut]), message._replace(cookie=b""))  # a cut cookie is none
            return
        self.assertRaises(DecodeError, beacon.decode, raw[:cut])

    @settings(max_examples=600, deadline=None)
    @given(st.binary(max_size=64))
    def test_random_bytes_only_raise_decode_error(self, raw):
        try:
            beacon.decode(raw)
        except DecodeError:
            pass


class PaddedDiscoverTests(SynchronousTestCase):
    def test_padded_discover_decodes_like_the_reference_one_and_outsizes_every_reply(self):
        padded = beacon.padded_discover(7)
        self.assertEqual(beacon.decode(padded), beacon.Discover(7))
        self.assertEqual(padded[:5], beacon.encode(beacon.Discover(7)))
        cookie = bytes(range(1, 17))
        widest = [beacon.encode(kind(beacon.Endpoint("2001:db8::1", 65535), cookie))
                  for kind in (beacon.DiscoverReply, beacon.PunchCommand)]
        self.assertEqual({len(padded), len(beacon.padded_discover(7, cookie))} | set(map(len, widest)),
                         {beacon.PADDED_REQUEST_SIZE})
        self.assertEqual(beacon.decode(beacon.padded_discover(7, cookie)), beacon.Discover(7, cookie))
        request = beacon.padded(beacon.PunchRequest(7, 8))
        self.assertEqual((len(request), beacon.decode(request)), (len(widest[0]), beacon.PunchRequest(7, 8)))

    def test_a_cookie_is_read_only_where_it_ends_the_datagram(self):
        cookie = bytes(range(1, 17))
        reply = beacon.encode(beacon.DiscoverReply(beacon.Endpoint("192.0.2.1", 9), cookie))
        self.assertEqual(beacon.decode(reply).cookie, cookie)
        self.assertEqual(beacon.decode(reply + b"x"), beacon.DiscoverReply(beacon.Endpoint("192.0.2.1", 9)))
        self.assertRaises(ValueError, beacon.encode, beacon.PunchCommand(beacon.Endpoint("192.0.2.1", 9), b"short"))
