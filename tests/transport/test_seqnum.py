from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.transport.seqnum import SEQ_MOD, serial_after, serial_diff, to_wire, unwrap

positions = st.integers(min_value=0, max_value=1 << 40)
offsets = st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1)


class SerialArithmeticTests(SynchronousTestCase):
    def test_after_across_wrap(self):
        self.assertTrue(serial_after(5, SEQ_MOD - 5))
        self.assertFalse(serial_after(SEQ_MOD - 5, 5))
        self.assertFalse(serial_after(7, 7))

    def test_diff_is_signed(self):
        self.assertEqual(serial_diff(2, SEQ_MOD - 3), 5)
        self.assertEqual(serial_diff(SEQ_MOD - 3, 2), -5)

    @settings(max_examples=200)
    @given(positions, offsets)
    def test_unwrap_recovers_nearby_positions(self, reference, offset):
        position = reference + offset
        if position >= 0:
            self.assertEqual(unwrap(to_wire(position), reference), position)
