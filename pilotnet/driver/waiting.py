"""Deferred-based waiting: a one-time event and a queue with waiting readers."""

from collections import deque

from twisted.internet.defer import Deferred, fail, succeed


class OneShot:
    """An event that happens once, with a fresh Deferred for every waiter."""

    def __init__(self):
        self._waiters = []
        self.happened = False
        self.value = None

    def wait(self):
        if self.happened:
            return succeed(self.value)
        waiter = Deferred()
        self._waiters.append(waiter)
        return waiter

    def fire(self, value=None):
        if self.happened:
            return
        self.happened, self.value = True, value
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(value)


class WaitQueue:
    """Items waiting for readers; ``fail`` ends it, so waiting readers get the error."""

    def __init__(self, limit=None):
        self._items = deque()
        self._getters = deque()
        self._limit = limit
        self.error = None

    def put(self, item):
        """Hand ``item`` to a waiting reader or keep it; False if the queue is full or ended."""
        if self.error is not None:
            return False
        if self._getters:
            self._getters.popleft().callback(item)
            return True
        if self._limit is not None and len(self._items) >= self._limit:
            return False
        self._items.append(item)
        return True

    def get(self):
        if self._items:
            return succeed(self._items.popleft())
        if self.error is not None:
            return fail(self.error)
        getter = Deferred(lambda d: self._getters.remove(d))
        self._getters.append(getter)
        return getter

    def fail(self, error):
        """End the queue; returns the items nobody took."""
        self.error = error
        getters, self._getters = self._getters, deque()
        for getter in getters:
            getter.errback(error)
        left, self._items = list(self._items), deque()
        return left
