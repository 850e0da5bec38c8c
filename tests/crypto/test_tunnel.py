"""Tunnel crypto: key agreement, PILS sealing, PILA signing, the replay window."""

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.crypto.identity import Identity
from pilotnet.crypto.kdf import TUNNEL_INFO, derive_key, x25519_shared_secret
from pilotnet.crypto.tunnel import (
    MAX_COUNTER, REPLAY_WINDOW, ReplayedFrame, ReplayWindow, TunnelKeyPair, TunnelSession,
    build_auth_key_offer, check_auth_key_offer,
)
from pilotnet.errors import CryptoError, DecodeError
from pilotnet.wire.tunnel import AuthKeyOffer, decode_auth_key_offer
from tests.vectors import by_id

NODE1_KEYS = TunnelKeyPair(bytes([0x11]) * 32)
NODE2_KEYS = TunnelKeyPair(bytes([0x22]) * 32)


def sessions(prefix=b"\xa1\xb2\xc3\xd4"):
    sender = TunnelSession.with_peer(NODE1_KEYS, 1, NODE2_KEYS.public_key, prefix=prefix)
    receiver = TunnelSession.with_peer(NODE2_KEYS, 2, NODE1_KEYS.public_key)
    return sender, receiver


class KeyAgreementTests(SynchronousTestCase):
    def test_kdf_vector(self):
        out = by_id("tunnel.kdf")["output"]
        self.assertEqual(NODE1_KEYS.public_key.hex(), out["x25519_public_node1_hex"])
        self.assertEqual(NODE2_KEYS.public_key.hex(), out["x25519_public_node2_hex"])
        secret = x25519_shared_secret(NODE1_KEYS.private_key, NODE2_KEYS.public_key)
        self.assertEqual(secret.hex(), out["shared_secret_hex"])
        self.assertEqual(NODE1_KEYS.session_key(NODE2_KEYS.public_key).hex(), out["aes256_key_hex"])
        self.assertEqual(NODE2_KEYS.session_key(NODE1_KEYS.public_key).hex(), out["aes256_key_hex"])

    def test_hkdf_known_answer_from_fixed_secret(self):
        # Shared secret 00 01 .. 1f, worked out independently in the protocol notes.
        self.assertEqual(
            derive_key(bytes(range(32)), TUNNEL_INFO).hex(),
            "a1a89c7e75a7301db827f184a1702e8235df8831a9c57d970a1b88ca91377a64",
        )

    def test_aes_gcm_known_answer(self):
        """Fixed key, nonce and AAD through the bare cipher: the sealing below adds only framing."""
        v = by_id("tunnel.pils.counter1")
        inputs = v["inputs"]
        sealed = AESGCM(bytes.fromhex(inputs["aes256_key_hex"])).encrypt(
            bytes.fromhex(inputs["nonce_hex"]), bytes.fromhex(inputs["plaintext_packet_hex"]),
            bytes.fromhex(inputs["aad_hex"]),
        )
        self.assertEqual(sealed.hex(), v["output_hex"][40:])

    def test_low_order_peer_key_is_refused(self):
        self.assertRaises(CryptoError, NODE1_KEYS.session_key, bytes(32))


class SealTests(SynchronousTestCase):
    def test_pils_vectors(self):
        for vid in ("tunnel.pils.counter1", "tunnel.pils.counter7"):
            v = by_id(vid)
            inputs = v["inputs"]
            sender, receiver = sessions(bytes.fromhex(inputs["nonce_prefix_hex"]))
            for _ in range(inputs["counter"] - 1):
                sender.seal(b"")
            frame = sender.seal(bytes.fromhex(inputs["plaintext_packet_hex"]))
            self.assertEqual(frame.hex(), v["output_hex"], vid)
            self.assertEqual(receiver.open(bytes.fromhex(v["output_hex"])).hex(), inputs["plaintext_packet_hex"])

    def test_counters_start_at_one_and_increase(self):
        sender, _ = sessions()
        self.assertEqual(sender.send_counter, 0)
        first = sender.seal(b"a")
        second = sender.seal(b"b")
        self.assertEqual(first[12:20], (1).to_bytes(8, "big"))
        self.assertEqual(second[12:20], (2).to_bytes(8, "big"))

    def test_wrong_aad_or_tampering_fails(self):
        sender, receiver = sessions()
        frame = bytearray(sender.seal(b"payload"))
        for index in (4, 8, 12, 20, len(frame) - 1):
            tampered = bytearray(frame)
            tampered[index] ^= 0x40
            fresh_receiver = sessions()[1]
            self.assertRaises(CryptoError, fresh_receiver.open, bytes(tampered))
        self.assertEqual(receiver.open(bytes(frame)), b"payload")

    def test_short_frame(self):
        self.assertRaises(DecodeError, sessions()[1].open, b"PILS" + bytes(20))

    def test_counter_exhaustion(self):
        sender, _ = sessions()
        sender._send_counter = MAX_COUNTER - 2
        sender.seal(b"last")
        with self.assertRaises(CryptoError) as caught:
            sender.seal(b"one too many")
        self.assertIn("exhausted", str(caught.exception))

    def test_replay_is_rejected(self):
        sender, receiver = sessions()
        frame = sender.seal(b"x")
        receiver.open(frame)
        self.assertRaises(ReplayedFrame, receiver.open, frame)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.binary(max_size=1500), min_size=1, max_size=20))
    def test_round_trip(self, payloads):
        sender, receiver = sessions()
        for payload in payloads:
            self.assertEqual(receiver.open(sender.seal(payload)), payload)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=100))
    def test_random_frames_only_raise_project_errors(self, raw):
        try:
            sessions()[1].open(raw)
        except (CryptoError, DecodeError):
            pass


class ReplayWindowTests(SynchronousTestCase):
    def accept(self, window, counter):
        if not window.is_fresh(counter):
            return False
        window.commit(counter)
        return True

    def test_in_order(self):
        window = ReplayWindow()
        for counter in range(1, 1000):
            self.assertTrue(self.accept(window, counter))

    def test_out_of_order_within_window(self):
        window = ReplayWindow()
        self.assertTrue(self.accept(window, 300))
        for counter in range(299, 300 - REPLAY_WINDOW, -1):
            self.assertTrue(self.accept(window, counter), counter)
        self.assertFalse(self.accept(window, 300 - REPLAY_WINDOW))

    def test_duplicates(self):
        window = ReplayWindow()
        for counter in (5, 3, 9):
            self.assertTrue(self.accept(window, counter))
        for counter in (5, 3, 9):
            self.assertFalse(self.accept(window, counter))

    def test_too_old(self):
        window = ReplayWindow()
        self.accept(window, 1000)
        self.assertFalse(window.is_fresh(1000 - REPLAY_WINDOW))
        self.assertTrue(window.is_fresh(1000 - REPLAY_WINDOW + 1))

    def test_huge_jump_clears_history(self):
        window = ReplayWindow()
        self.accept(window, 10)
        self.assertTrue(self.accept(window, 10 + 10 ** 12))
        self.assertFalse(window.is_fresh(10))
        self.assertTrue(self.accept(window, 10 ** 12))
        self.assertEqual(window.seen.bit_length() <= REPLAY_WINDOW, True)

    def test_counter_zero_is_never_valid(self):
        self.assertFalse(ReplayWindow().is_fresh(0))

    def test_forged_huge_counter_does_not_move_the_window(self):
        sender, receiver = sessions()
        frames = [sender.seal(b"%d" % i) for i in range(5)]
        receiver.open(frames[0])
        forged = bytearray(frames[1])
        forged[12:20] = (2 ** 63).to_bytes(8, "big")
        self.assertRaises(CryptoError, receiver.open, bytes(forged))
        self.assertEqual(receiver.replay.highest, 1)
        for frame in frames[1:]:
            receiver.open(frame)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(1, 2000), max_size=300))
    def test_matches_a_set_model(self, counters):
        window = ReplayWindow()
        accepted = set()
        highest = 0
        for counter in counters:
            expected = counter not in accepted and counter > highest - REPLAY_WINDOW
            self.assertEqual(self.accept(window, counter), expected)
            if expected:
                accepted.add(counter)
                highest = max(highest, counter)


class RekeyTests(SynchronousTestCase):
    """The peer dropped its state for us and keyed again with the same key: a fresh prefix, counter 1."""

    def rekeyed(self, sender, prefix=b"\x0b\x0b\x0b\x0b"):
        return TunnelSession.with_peer(NODE1_KEYS, 1, NODE2_KEYS.public_key, prefix=prefix)

    def test_the_new_session_is_heard_although_its_counter_restarted(self):
        sender, receiver = sessions()
        old = [sender.seal(b"old %d" % i) for i in range(300)]
        for frame in old:
            receiver.open(frame)
        fresh = self.rekeyed(sender)
        self.assertEqual(receiver.open(fresh.seal(b"hello again")), b"hello again")
        self.assertEqual(receiver.open(fresh.seal(b"and again")), b"and again")

    def test_frames_of_the_replaced_session_stay_refused(self):
        sender, receiver = sessions()
        old = [sender.seal(b"old %d" % i) for i in range(3)]
        receiver.open(old[0])
        receiver.open(self.rekeyed(sender).seal(b"new"))
        for frame in old:  # even one never seen: that session is over
            self.assertRaises(ReplayedFrame, receiver.open, frame)

    def test_replays_under_the_new_prefix_are_refused(self):
        sender, receiver = sessions()
        receiver.open(sender.seal(b"old"))
        fresh = self.rekeyed(sender)
        frame = fresh.seal(b"new")
        receiver.open(frame)
        self.assertRaises(ReplayedFrame, receiver.open, frame)

    def test_a_forged_frame_under_a_new_prefix_changes_nothing(self):
        sender, receiver = sessions()
        receiver.open(sender.seal(b"one"))
        forged = bytearray(self.rekeyed(sender).seal(b"x"))
        forged[-1] ^= 1
        self.assertRaises(CryptoError, receiver.open, bytes(forged))
        self.assertEqual(receiver.open(sender.seal(b"two")), b"two")


class AuthKeyOfferTests(SynchronousTestCase):
    def setUp(self):
        self.identity = Identity.from_seed(bytes([1]) * 32)
        self.offer = build_auth_key_offer(self.identity, 1, NODE1_KEYS)

    def test_vector(self):
        self.assertEqual(self.offer.encode().hex(), by_id("tunnel.pila.136")["output_hex"])
        check_auth_key_offer(self.offer, self.identity.public_key)

    def test_go_reply_verifies(self):
        reply = decode_auth_key_offer(bytes.fromhex(by_id("tunnel.pila.node2_reply_captured")["output_hex"]))
        check_auth_key_offer(reply, Identity.from_seed(bytes([2]) * 32).public_key)

    def test_every_single_bit_flip_in_the_signed_frame_is_rejected(self):
        raw = self.offer.encode()
        for bit in range(32, 136 * 8):  # every bit after the magic
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            offer = decode_auth_key_offer(bytes(flipped))
            self.assertRaises(CryptoError, check_auth_key_offer, offer, self.identity.public_key)

    def test_wrong_registry_key(self):
        other = Identity.from_seed(bytes([2]) * 32)
        self.assertRaises(CryptoError, check_auth_key_offer, self.offer, other.public_key)
        resigned = AuthKeyOffer(1, NODE1_KEYS.public_key, other.public_key, self.offer.signature)
        self.assertRaises(CryptoError, check_auth_key_offer, resigned, other.public_key)
