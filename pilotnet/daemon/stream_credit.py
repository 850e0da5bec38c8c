"""Credit for one client's stream data on the control socket, so data needs no AMP answers.

Writes: the client may have :data:`~pilotnet.control.schema.WRITE_CREDIT`
bytes of ``Write`` outstanding.  We return credit (a ``Written`` push) once
the stream's send buffer has taken the bytes below its high-water mark, in
batches of :data:`~pilotnet.control.schema.CREDIT_BATCH`, so a stream of
small writes costs one message per write, not two.

Reads: each ``Received`` push keeps its bytes counted against the stream's
receive window (the Deferred :meth:`pushed` returns, which
:class:`~pilotnet.daemon.streams.Streams` waits on) until the client's
``Consumed`` covers them.
"""

from collections import deque

from twisted.internet import defer

from pilotnet.control.schema import CREDIT_BATCH


class StreamCredit:
    __slots__ = ("uncredited", "_pushes", "_consumed")

    def __init__(self):
        #: Bytes written by the client and taken, not yet credited back.
        self.uncredited = 0
        #: (size, Deferred) of pushes the client has not returned yet, oldest first.
        self._pushes = deque()
        self._consumed = 0

    def took(self, size, below_high_water):
        """The stream took ``size`` written bytes: the credit to return now (0: not yet)."""
        self.uncredited += size
        if below_high_water and self.uncredited >= CREDIT_BATCH:
            return self.release()
        return 0

    def release(self):
        """All uncredited bytes, to return now (the send buffer drained below its mark)."""
        size, self.uncredited = self.uncredited, 0
        return size

    def pushed(self, size):
        """A push of ``size`` bytes went out: a Deferred firing once the client returns them."""
        taken = defer.Deferred()
        self._pushes.append((size, taken))
        return taken

    def consumed(self, size):
        """The client returned ``size`` bytes: fire every push they cover, in order."""
        self._consumed += size
        pushes = self._pushes
        while pushes and pushes[0][0] <= self._consumed:
            pushed, taken = pushes.popleft()
            self._consumed -= pushed
            taken.callback(None)
        if not pushes:
            self._consumed = 0
