"""Options and start-up plumbing shared by the ``pilot-*`` twistd plugins.

``--log-format json`` swaps twistd's log observer for JSON lines (one
``twisted.logger`` event per line, fields intact), and ``--ports-file``
records the addresses actually bound, which is how anything that started a
server on port 0 (tests, scripts) learns where it listens.
"""

import json
import os
import sys

from twisted.application.service import Service
from twisted.python.failure import Failure
from twisted.logger import jsonFileLogObserver
from twisted.python import usage


def json_log_observer():
    """twistd ``logger`` factory: JSON lines on standard output."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


class LogFormatOptions(usage.Options):
    """Base of every plugin's options: ``--log-format``.

    Its default is None (meaning text) rather than "text" so that a plugin with a config file
    (the daemon) can tell a flag that was given from one that was not.
    """

    optParameters = [
        ["log-format", None, None, "Log output format: text or json (JSON lines) [text]."],
    ]

    def postOptions(self):
        self.use_log_format(self["log-format"] or "text")

    def use_log_format(self, log_format: str) -> None:
        """Check ``log_format`` and, for json, have twistd log through :func:`json_log_observer`."""
        if log_format not in ("text", "json"):
            raise usage.UsageError("--log-format must be text or json")
        if log_format == "json" and self.parent is not None:
            # twistd builds its logger from its own options after parsing ours.
            self.parent["logger"] = f"{__name__}.json_log_observer"


class ServerOptions(LogFormatOptions):
    """Base of the servers' options: ``--log-format`` and the ports file."""

    optParameters = [
        ["ports-file", None, None,
         "Write the bound addresses to this JSON file once listening (useful with port 0)."],
    ]

    @staticmethod
    def positive_number(text, name):
        try:
            value = float(text)
        except ValueError:
            raise usage.UsageError(f"--{name} must be a number of seconds") from None
        if value <= 0:
            raise usage.UsageError(f"--{name} must be positive")
        return value


class PortsFile:
    """Writes ``{"name": {"host": ..., "port": ...}}`` once every named listener is up."""

    def __init__(self, path, names):
        self._path = path
        self._waiting = set(names)
        self._bound = {}

    def listening(self, name, address):
        self._bound[name] = {"host": address.host, "port": address.port}
        self._waiting.discard(name)
        if self._path and not self._waiting:
            temporary = f"{self._path}.tmp"
            with open(temporary, "w") as handle:
                json.dump(self._bound, handle)
            os.replace(temporary, self._path)

    def reporter(self, name):
        return lambda address: self.listening(name, address)


class ListeningService(Service):
    """A service that holds one listening port (set by ``startService``); stopping it stops listening."""

    port = None

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None


class StreamListener(ListeningService):
    """Listens on a server endpoint; a bind failure stops start-up with its reason."""

    def __init__(self, endpoint, factory, on_listening):
        self._endpoint = endpoint
        self._factory = factory
        self._on_listening = on_listening

    def startService(self):
        super().startService()
        outcome = []
        self._endpoint.listen(self._factory).addBoth(outcome.append)
        if outcome and isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self.port = outcome[0]
        self._on_listening(self.port.getHost())
