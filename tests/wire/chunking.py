"""Hypothesis helpers for feeding incremental decoders in arbitrary pieces."""

from hypothesis import strategies as st

chunk_sizes = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=12)


def split(data, sizes):
    """``data`` cut into pieces of the given sizes, cycling through them."""
    pieces, offset, index = [], 0, 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        pieces.append(data[offset:offset + size])
        offset += size
        index += 1
    return pieces


def feed_all(decoder, data, sizes):
    """Everything ``decoder.feed`` returned for ``data`` fed in pieces."""
    out = []
    for piece in split(data, sizes):
        out.extend(decoder.feed(piece))
    return out
