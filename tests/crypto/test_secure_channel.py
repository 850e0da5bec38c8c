"""The port-443 secure channel against the Go reference's vectors, and its state machine."""

import struct

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.crypto import secure_channel as sc
from pilotnet.errors import CryptoError, DecodeError, PilotError
from tests.vectors import by_id, vectors
from tests.wire.chunking import chunk_sizes, split

SETTINGS = settings(max_examples=60, deadline=None)
KDF = by_id("secure443.kdf")
CLIENT_KEY = bytes.fromhex(KDF["inputs"]["x25519_private_client_hex"])
SERVER_KEY = bytes.fromhex(KDF["inputs"]["x25519_private_server_hex"])
PREFIXES = {"server": sc.SERVER_PREFIX, "client": sc.CLIENT_PREFIX}


def connected_pair():
    client, server = sc.SecureChannel.client(CLIENT_KEY), sc.SecureChannel.server(SERVER_KEY)
    reply = server.receive(client.opening_bytes())
    client.receive(reply.to_send)
    return client, server


class VectorTests(SynchronousTestCase):
    def test_key_exchange(self):
        client, server = sc.SecureChannel.client(CLIENT_KEY), sc.SecureChannel.server(SERVER_KEY)
        self.assertEqual(client.opening_bytes().hex(), KDF["output"]["x25519_public_client_hex"])
        self.assertEqual(server.opening_bytes(), b"")
        reply = server.receive(client.opening_bytes())
        self.assertEqual(reply.to_send.hex(), KDF["output"]["x25519_public_server_hex"])
        self.assertEqual(client.receive(reply.to_send), sc.Received(b"", []))
        self.assertEqual((client.state, server.state), (sc.ESTABLISHED, sc.ESTABLISHED))
        self.assertEqual(sc.channel_key(CLIENT_KEY, reply.to_send).hex(), KDF["output"]["aes256_key_hex"])

    def test_records(self):
        cases = vectors("secure-443", prefix="secure443.record")
        self.assertEqual(len(cases), 3)
        for case in cases:
            inputs = case["inputs"]
            key = bytes.fromhex(inputs["aes256_key_hex"])
            prefix = PREFIXES[inputs["role"]]
            self.assertEqual(prefix.hex(), inputs["nonce_prefix_hex"])
            self.assertEqual(prefix.hex(), inputs["aad_hex"])
            record = bytes.fromhex(case["output_hex"])
            opener = sc.RecordOpener(key, prefix, next_counter=inputs["counter"])
            self.assertEqual(opener.feed(record), [inputs["plaintext"].encode()], case["id"])
            sealer = sc.RecordSealer(key, prefix, next_counter=inputs["counter"])
            self.assertEqual(sealer.seal(inputs["plaintext"].encode()), record, case["id"])

    def test_channel_reads_the_reference_server(self):
        client, _ = connected_pair()
        records = b"".join(bytes.fromhex(by_id(f"secure443.record.server_counter{n}")["output_hex"])
                           for n in ("1_ping", "2_pong"))
        self.assertEqual(client.receive(records).plaintexts, [b"ping", b"pong"])

    def test_channel_writes_what_the_reference_client_writes(self):
        client, server = connected_pair()
        expected = by_id("secure443.record.client_counter1_ping")["output_hex"]
        self.assertEqual(client.seal(b"ping").hex(), expected)
        self.assertEqual(server.receive(bytes.fromhex(expected)).plaintexts, [b"ping"])


class StateTests(SynchronousTestCase):
    def test_cannot_send_before_established(self):
        client = sc.SecureChannel.client()
        self.assertEqual(client.state, sc.AWAITING_PEER_KEY)
        self.assertRaises(CryptoError, client.seal, b"x")

    def test_key_split_across_reads_and_records_right_behind_it(self):
        client, server = sc.SecureChannel.client(), sc.SecureChannel.server()
        reply = server.receive(client.opening_bytes()).to_send
        early = server.seal(b"hello")
        self.assertEqual(client.receive(reply[:10]), sc.Received(b"", []))
        self.assertTrue(not client.at_boundary)
        self.assertEqual(client.receive(reply[10:] + early).plaintexts, [b"hello"])
        self.assertTrue(client.at_boundary)

    def test_replayed_record_fails_the_channel(self):
        client, server = connected_pair()
        record = client.seal(b"once")
        server.receive(record)
        self.assertRaises(CryptoError, server.receive, record)
        self.assertEqual(server.state, sc.FAILED)
        self.assertRaises(CryptoError, server.receive, client.seal(b"later"))

    def test_reordered_records_rejected(self):
        client, server = connected_pair()
        first, second = client.seal(b"1"), client.seal(b"2")
        self.assertRaises(CryptoError, server.receive, second + first)

    def test_own_records_reflected_back_rejected(self):
        client, _ = connected_pair()
        self.assertRaises(CryptoError, client.receive, client.seal(b"echo"))

    def test_tampered_record_rejected_and_counter_kept(self):
        client, server = connected_pair()
        record = bytearray(client.seal(b"secret"))
        record[-1] ^= 1
        opener = server._opener
        self.assertRaises(CryptoError, server.receive, bytes(record))
        self.assertEqual(opener.next_counter, 1)

    def test_record_length_limits(self):
        for length in (0, 11, sc.MIN_RECORD_LENGTH - 1, sc.MAX_RECORD_LENGTH + 1):
            _, server = connected_pair()
            self.assertRaises(DecodeError, server.receive, struct.pack(">I", length))
            self.assertEqual(server.state, sc.FAILED)
        _, server = connected_pair()
        self.assertEqual(server.receive(struct.pack(">I", sc.MAX_RECORD_LENGTH)).plaintexts, [])

    def test_counter_exhaustion_refused(self):
        sealer = sc.RecordSealer(b"k" * 32, sc.CLIENT_PREFIX, next_counter=sc.MAX_COUNTER - 1)
        sealer.seal(b"last")
        self.assertRaises(CryptoError, sealer.seal, b"one too many")

    def test_large_writes_split_into_records(self):
        client, server = connected_pair()
        data = bytes(range(256)) * (sc.MAX_PLAINTEXT // 256 + 3)
        self.assertEqual(b"".join(server.receive(client.seal(data)).plaintexts), data)
        self.assertEqual(client._sealer.next_counter, 3)

    def test_low_order_peer_key_refused(self):
        server = sc.SecureChannel.server()
        self.assertRaises(CryptoError, server.receive, bytes(32))
        self.assertEqual(server.state, sc.FAILED)


class PropertyTests(SynchronousTestCase):
    @SETTINGS
    @given(st.lists(st.binary(max_size=100), max_size=6), chunk_sizes)
    def test_round_trip_in_chunks(self, messages, sizes):
        client, server = sc.SecureChannel.client(CLIENT_KEY), sc.SecureChannel.server(SERVER_KEY)
        received, reply = [], b""
        for piece in split(client.opening_bytes(), sizes):
            result = server.receive(piece)
            reply += result.to_send
            received += result.plaintexts
        client.receive(reply)
        for piece in split(b"".join(client.seal(m) for m in messages), sizes):
            received += server.receive(piece).plaintexts
        self.assertEqual(received, messages)
        self.assertTrue(server.at_boundary)

    @SETTINGS
    @given(st.binary(max_size=200), chunk_sizes)
    def test_random_bytes_only_raise_channel_errors(self, data, sizes):
        _, server = connected_pair()
        try:
            for piece in split(data, sizes):
                server.receive(piece)
        except PilotError as error:
            self.assertIsInstance(error, (CryptoError, DecodeError))
