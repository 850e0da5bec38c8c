"""Server-Sent Events: tell every open page that the directory changed.

A burst of registrations becomes one ``change`` event per ``debounce``
seconds (the page then fetches what it shows, once).  A comment line every
``keepalive`` seconds keeps proxies from closing an idle stream; ``retry``
tells the browser how soon to reconnect after the registry restarts.
"""

import json

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

DEBOUNCE = 1.0
KEEPALIVE = 15.0
RETRY_MS = 2000


def event(name, data):
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode("utf-8")


class LiveFeed:
    def __init__(self, clock, summary, debounce=DEBOUNCE, keepalive=KEEPALIVE):
        self._clock = clock
        self._summary = summary
        self._debounce = debounce
        self._streams = {}
        self._pending = None
        self._keepalive = LoopingCall(self._write, b": keepalive\n\n")
        self._keepalive.clock = clock
        self._keepalive_interval = keepalive

    def start(self):
        self._keepalive.start(self._keepalive_interval, now=False)

    def stop(self):
        """Cancel the timers and end every open stream (the process is stopping)."""
        if self._keepalive.running:
            self._keepalive.stop()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        streams, self._streams = self._streams, {}
        for done in streams.values():
            done.callback(None)

    def subscribe(self, request):
        """Open a stream on ``request``; the Deferred fires when the feed ends it."""
        request.setHeader("X-Accel-Buffering", "no")
        request.write(f"retry: {RETRY_MS}\n\n".encode("ascii") + event("hello", self._summary()))
        done = Deferred(lambda _: self._streams.pop(request, None))
        self._streams[request] = done
        return done

    @property
    def listeners(self):
        return len(self._streams)

    def changed(self):
        """The directory changed: one ``change`` event after ``debounce`` seconds."""
        if self._pending is None or not self._pending.active():
            self._pending = self._clock.callLater(self._debounce, self._broadcast)

    def _broadcast(self):
        self._write(event("change", self._summary()))

    def _write(self, data):
        for request in list(self._streams):
            request.write(data)
