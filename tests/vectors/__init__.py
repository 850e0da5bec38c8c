"""Known answers produced by the Go reference implementation's own encoders.

``go-reference.json`` is kept byte for byte as it was generated; see
docs/protocol.md for what each layer means.  Tests use :func:`vectors` to pick
the ones of a layer.
"""

import json
from functools import lru_cache
from pathlib import Path

_FILE = Path(__file__).with_name("go-reference.json")


@lru_cache(maxsize=None)
def _all():
    return tuple(json.loads(_FILE.read_text())["vectors"])


def vectors(layer=None, *, prefix=None, include_upstream=False):
    """The vectors of ``layer`` (and/or whose id starts with ``prefix``).

    Upstream-only variants (the Feb 2026 crypto) are left out unless asked
    for: the fork's variant is what we interoperate with.
    """
    return [
        v for v in _all()
        if (layer is None or v["layer"] == layer)
        and (prefix is None or v["id"].startswith(prefix))
        and (include_upstream or v["variant"] != "UP")
    ]


def by_id(vector_id):
    for v in _all():
        if v["id"] == vector_id:
            return v
    raise KeyError(vector_id)
