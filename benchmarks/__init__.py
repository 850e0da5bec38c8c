"""Benchmarks: each module prints figures measured next to a baseline taken in the same run."""

import argparse


def positive_int(text):
    """An argparse type for counts and sizes: a zero or negative one would measure nothing."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
