"""The garbage collector while ``twistd pilot-daemon`` builds the node: paused, then frozen.

Building the node imports most of pilotnet and much of Twisted: tens of
thousands of objects (modules, classes, functions, constants) that live as
long as the daemon, and next to no garbage (about a hundred unreachable
objects).  With the collector on, that import storm triggers collections that
walk the same long-lived objects again and again, a full one among them:
measured, about a tenth of the CPU time of a daemon's start to ready.

So :func:`paused_then_frozen` turns the collector off while the node is
built, and then ``gc.freeze()`` moves everything alive into the permanent
generation before turning it back on.  Later collections, full ones
included, skip those objects for good, which also keeps the collector's
pauses short on a busy daemon.  The price: the few cyclic objects that
were already garbage at the freeze are never freed.  The registry's plugins
freeze what they load the same way (:mod:`pilotnet.registry.collection`).

Only the twistd entry point (:func:`pilotnet.daemon.tap.makeService`) calls
it, once per process: library code and tests must not freeze their process.
"""

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def paused_then_frozen() -> Iterator[None]:
    """No automatic collections inside; then freeze what is alive and turn it back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
