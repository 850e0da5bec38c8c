"""Where the node lives: its home directory and the daemon's control socket.

Kept apart from the SDK so that ``pilotctl`` commands that only need paths
(``config``, ``init``, ``context``) do not import Twisted.
"""

import json
import os
from pathlib import Path


def pilot_home(environ=None):
    """The node's home directory: ``$PILOT_HOME`` or ``~/.pilot``."""
    environ = os.environ if environ is None else environ
    home = environ.get("PILOT_HOME")
    return Path(home).expanduser() if home else Path.home() / ".pilot"


def default_socket_path(environ=None, home=None):
    """Where the daemon listens: ``$PILOT_SOCKET``, else ``socket`` in config.json, else ``<home>/pilot.sock``.

    The same precedence as the reference's ``pilotctl`` (environment over
    configuration over default), so the SDK finds the daemon pilotctl finds.
    """
    environ = os.environ if environ is None else environ
    if environ.get("PILOT_SOCKET"):
        return environ["PILOT_SOCKET"]
    home = pilot_home(environ) if home is None else Path(home)
    try:
        configured = json.loads((home / "config.json").read_text()).get("socket")
    except (OSError, ValueError, AttributeError):
        configured = None
    if isinstance(configured, str) and configured:
        return configured
    return str(home / "pilot.sock")
