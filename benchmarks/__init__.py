"""Benchmarks: each module prints figures measured next to a baseline taken in the same run."""
