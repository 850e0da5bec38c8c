"""Run ``twistd -n pilot-rendezvous`` as a real process for integration tests."""

import json
import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

_TWISTD = "from twisted.scripts.twistd import run; run()"


class _Output(ProcessProtocol):
    def __init__(self):
        self.output = b""
        self.ended = Deferred()

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)


def _pause(seconds):
    waiting = Deferred()
    reactor.callLater(seconds, waiting.callback, None)
    return waiting


class RendezvousProcess:
    """One server process on 127.0.0.1 port 0; its bound ports are read from a ports file."""

    def __init__(self, test, directory, *extra):
        self.directory = os.path.abspath(directory)
        self.ports_file = os.path.join(self.directory, "ports.json")
        self.extra = extra
        self.test = test
        self.ports = None
        self._process = None
        self._output = None

    async def start(self):
        os.makedirs(self.directory, exist_ok=True)
        if os.path.exists(self.ports_file):
            os.remove(self.ports_file)
        self._output = _Output()
        args = [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", "pilot-rendezvous",
                "--registry", "tcp:0:interface=127.0.0.1", "--beacon", "127.0.0.1:0",
                "--ports-file", self.ports_file, *self.extra]
        self._process = reactor.spawnProcess(self._output, sys.executable, args,
                                             env=dict(os.environ), path=self.directory)
        self.test.addCleanup(self.kill)
        while not os.path.exists(self.ports_file):
            if self._output.ended.called:
                self.test.fail(f"pilot-rendezvous exited early:\n{self.output[-3000:]}")
            await _pause(0.02)
        with open(self.ports_file) as handle:
            self.ports = json.load(handle)
        return self

    @property
    def output(self):
        return self._output.output.decode("utf-8", "replace") if self._output else ""

    @property
    def registry_endpoint(self):
        return f"tcp:127.0.0.1:{self.ports['registry']['port']}"

    @property
    def beacon_address(self):
        return ("127.0.0.1", self.ports["beacon"]["port"])

    async def stop(self, signal="TERM"):
        """Send ``signal`` and wait for the exit; returns the exit reason."""
        if self._output.ended.called:
            return self._output.ended.result
        self._process.signalProcess(signal)
        return await self._output.ended

    def kill(self):
        if self._output is not None and not self._output.ended.called:
            self._process.signalProcess("KILL")
            return self._output.ended.addErrback(lambda failure: None)
        return None

