"""The 34-byte packet header: known answers, error cases, and properties."""

import zlib

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import DecodeError
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import (
    HEADER_SIZE, MAX_PAYLOAD, PROTO_DATAGRAM, PROTO_STREAM, FLAG_ACK, FLAG_SYN, Packet, flag_names,
)
from tests.vectors import vectors


def packet_from_fields(fields):
    return Packet(
        fields["protocol"], Addr.parse(fields["src"]), Addr.parse(fields["dst"]),
        fields["src_port"], fields["dst_port"], flags=fields["flags"], seq=fields["seq"],
        ack=fields["ack"], window=fields["window"], payload=bytes.fromhex(fields["payload_hex"]),
    )


def fields_of(packet):
    return {
        "protocol": packet.protocol, "src": str(packet.src), "dst": str(packet.dst),
        "src_port": packet.src_port, "dst_port": packet.dst_port, "flags": packet.flags,
        "seq": packet.seq, "ack": packet.ack, "window": packet.window,
        "payload_hex": packet.payload.hex(), "version": 1,
    }


packets = st.builds(
    Packet,
    st.sampled_from([1, 2, 3]) | st.integers(0, 255),
    st.builds(Addr, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
    st.builds(Addr, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    flags=st.integers(0, 15),
    seq=st.integers(0, 0xFFFFFFFF),
    ack=st.integers(0, 0xFFFFFFFF),
    window=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=2048),
)


class KnownAnswerTests(SynchronousTestCase):
    def test_every_packet_vector(self):
        checked = 0
        for v in vectors("packet"):
            fields = v["inputs"].get("reply_fields", v["inputs"])
            expected = bytes.fromhex(v["output_hex"])
            self.assertEqual(packet_from_fields(fields).encode(), expected, v["id"])
            self.assertEqual(fields_of(Packet.decode(expected)), fields, v["id"])
            if "checksum_crc32" in v.get("output", {}):
                self.assertEqual(expected[30:34].hex(), v["output"]["checksum_crc32"])
                self.assertEqual(len(expected), v["output"]["length"])
            checked += 1
        self.assertEqual(checked, 14)

    def test_design_examples(self):
        """The two encodings worked out by hand in the protocol notes."""
        syn = Packet(PROTO_STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, flags=FLAG_SYN, window=512)
        self.assertEqual(
            syn.encode().hex(), "11010000000000000001000000000002c00003e800000000000000000200145ed874"
        )
        data = Packet(PROTO_STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, flags=FLAG_ACK,
                      seq=1, ack=1, window=502, payload=b"hello")
        self.assertEqual(
            data.encode().hex(),
            "12010005000000000001000000000002c00003e8000000010000000101f65ee872c868656c6c6f",
        )


class DecodeErrorTests(SynchronousTestCase):
    def setUp(self):
        self.wire = Packet(PROTO_DATAGRAM, Addr(0, 1), Addr(0, 2), 49153, 1000, payload=b"hello world!").encode()

    def assertRejected(self, data, fragment, offset=0):
        with self.assertRaises(DecodeError) as caught:
            Packet.decode(data, offset)
        self.assertIn(fragment, str(caught.exception))

    def test_short_header(self):
        self.assertRejected(self.wire[:HEADER_SIZE - 1], "too short")

    def test_truncated_payload(self):
        self.assertRejected(self.wire[:-1], "truncated")

    def test_checksum_mismatch(self):
        corrupt = bytearray(self.wire)
        corrupt[-1] ^= 0x01
        self.assertRejected(bytes(corrupt), "checksum")

    def test_version_other_than_one(self):
        for version in (0, 2, 15):
            raw = bytearray(self.wire)
            raw[0] = (version << 4) | (raw[0] & 0x0F)
            raw[30:34] = b"\0\0\0\0"
            raw[30:34] = zlib.crc32(bytes(raw)).to_bytes(4, "big")
            self.assertRejected(bytes(raw), "version")

    def test_trailing_bytes_are_ignored(self):
        self.assertEqual(Packet.decode(self.wire + b"junk"), Packet.decode(self.wire))

    def test_decode_at_offset(self):
        self.assertEqual(Packet.decode(b"PILT" + self.wire, 4), Packet.decode(self.wire))
        self.assertRejected(b"PILT" + self.wire[:-1], "truncated", 4)

    def test_an_authenticated_packet_skips_only_the_checksum(self):
        """Bytes a tunnel frame's tag vouched for: no CRC check, every other rule still holds."""
        corrupt = bytearray(self.wire)
        corrupt[30] ^= 0x01  # the checksum field alone
        self.assertEqual(Packet.decode(bytes(corrupt), verify_checksum=False), Packet.decode(self.wire))
        for cut, fragment in ((HEADER_SIZE - 1, "too short"), (len(self.wire) - 1, "truncated")):
            with self.assertRaises(DecodeError) as caught:
                Packet.decode(self.wire[:cut], verify_checksum=False)
            self.assertIn(fragment, str(caught.exception))
        raw = bytearray(self.wire)
        raw[0] = (2 << 4) | (raw[0] & 0x0F)
        with self.assertRaises(DecodeError) as caught:
            Packet.decode(bytes(raw), verify_checksum=False)
        self.assertIn("version", str(caught.exception))

    def test_encode_refuses_oversized_payload(self):
        packet = Packet(PROTO_DATAGRAM, Addr(0, 1), Addr(0, 2), 1, 2, payload=b"x" * (MAX_PAYLOAD + 1))
        self.assertRaises(ValueError, packet.encode)

    def test_encode_refuses_out_of_range_fields(self):
        packet = Packet(PROTO_DATAGRAM, Addr(0, 1), Addr(0, 2), 70000, 2)
        self.assertRaises(ValueError, packet.encode)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(packets)
    def test_round_trip(self, packet):
        self.assertEqual(Packet.decode(packet.encode()), packet)

    @settings(max_examples=300, deadline=None)
    @given(packets, st.data())
    def test_truncation_only_raises_decode_error(self, packet, data):
        wire = packet.encode()
        cut = data.draw(st.integers(0, len(wire) - 1))
        self.assertRaises(DecodeError, Packet.decode, wire[:cut])

    @settings(max_examples=300, deadline=None)
    @given(packets, st.data())
    def test_any_single_bit_flip_is_detected(self, packet, data):
        wire = bytearray(packet.encode())
        bit = data.draw(st.integers(0, len(wire) * 8 - 1))
        wire[bit // 8] ^= 1 << (bit % 8)
        try:
            decoded = Packet.decode(bytes(wire))
        except DecodeError:
            return
        # Flipping a length bit can leave a shorter packet whose CRC still fails; if
        # decoding succeeded the flip must have landed outside the covered bytes.
        self.assertEqual(decoded, packet)

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=200))
    def test_random_bytes_only_raise_decode_error(self, raw):
        for verify in (True, False):
            try:
                Packet.decode(raw, verify_checksum=verify)
            except DecodeError:
                pass

    @settings(max_examples=300, deadline=None)
    @given(packets)
    def test_round_trip_without_the_checksum_check(self, packet):
        self.assertEqual(Packet.decode(packet.encode(), verify_checksum=False), packet)

    def test_flag_names(self):
        self.assertEqual(flag_names(0x3), "SYN|ACK")
        self.assertEqual(flag_names(0), "-")
