"""Sequence-number arithmetic: 32-bit numbers on the wire, unbounded integers inside.

The engine keeps every sequence number as an unbounded Python integer (an
absolute byte position), so that comparisons and lengths inside the engine are
plain integer arithmetic and wrap-around can never confuse them.  Numbers only
become 32-bit at the edge: :func:`to_wire` when a packet is built and
:func:`unwrap` when one arrives.  ``unwrap`` is RFC 1982 serial-number
arithmetic: a wire value is read as the position nearest to a reference the
engine already trusts (the next expected byte, the oldest unacknowledged byte),
i.e. at most 2**31 - 1 ahead of it or 2**31 behind it.
"""

SEQ_BITS = 32
SEQ_MOD = 1 << SEQ_BITS
SEQ_MASK = SEQ_MOD - 1
SEQ_HALF = 1 << (SEQ_BITS - 1)


def to_wire(position: int) -> int:
    """The 32-bit wire form of an absolute position."""
    return position & SEQ_MASK


def serial_diff(a: int, b: int) -> int:
    """``a - b`` as a signed distance in serial-number space, in [-2**31, 2**31)."""
    return ((a - b + SEQ_HALF) & SEQ_MASK) - SEQ_HALF


def serial_after(a: int, b: int) -> bool:
    """True when wire value ``a`` comes after ``b`` (RFC 1982 ``a > b``)."""
    return serial_diff(a, b) > 0


def unwrap(wire_value: int, reference: int) -> int:
    """The absolute position nearest to ``reference`` whose wire form is ``wire_value``.

    The connection hot path inlines this expression; this function is its
    named, tested form.
    """
    return reference + (((wire_value - reference + SEQ_HALF) & SEQ_MASK) - SEQ_HALF)
