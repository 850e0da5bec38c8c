"""Where the node lives: its home directory and the daemon's control socket.

Kept apart from the SDK so that ``pilotctl`` commands that only need paths
(``config``, ``init``, ``context``) do not import Twisted; and in plain
``os.path`` terms, since ``pathlib`` alone costs a fast command's start-up
several milliseconds.
"""

import os

from pilotnet.wire import cjson


def home_directory(environ=None):
    """The node's home directory as a string: ``$PILOT_HOME`` or ``~/.pilot``."""
    environ = os.environ if environ is None else environ
    home = environ.get("PILOT_HOME")
    return os.path.expanduser(home) if home else os.path.join(os.path.expanduser("~"), ".pilot")


def pilot_home(environ=None):
    """The node's home directory: ``$PILOT_HOME`` or ``~/.pilot``."""
    from pathlib import Path

    return Path(home_directory(environ))


def default_socket_path(environ=None, home=None):
    """Where the daemon listens: ``$PILOT_SOCKET``, else ``socket`` in config.json, else ``<home>/pilot.sock``.

    The same precedence as the reference's ``pilotctl`` (environment over
    configuration over default), so the SDK finds the daemon pilotctl finds.
    """
    environ = os.environ if environ is None else environ
    if environ.get("PILOT_SOCKET"):
        return environ["PILOT_SOCKET"]
    home = home_directory(environ) if home is None else os.fspath(home)
    try:
        with open(os.path.join(home, "config.json"), "rb") as config:
            configured = cjson.loads(config.read().decode("utf-8")).get("socket")
    except (OSError, ValueError, AttributeError):
        configured = None
    if isinstance(configured, str) and configured:
        return configured
    return os.path.join(home, "pilot.sock")
