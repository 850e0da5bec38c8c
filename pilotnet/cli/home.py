"""The node's home directory (``--home``, ``$PILOT_HOME`` or ``~/.pilot``) and its config.json.

``pilotctl`` keeps the same files there as the daemon: ``config.json``,
``pilot.pid``, ``pilot.log`` and, by default, the control socket
``pilot.sock``.  Settings follow the reference's precedence for ordinary
commands: environment over config.json over the built-in default.

The rules for the home and socket paths are the SDK's
(:mod:`pilotnet.driver.paths`, which imports no Twisted), so commands that need
only paths start without Twisted.
"""

import os

from pilotnet.driver.paths import default_socket_path, home_directory
from pilotnet.errors import INVALID_ARGUMENT, PilotError
from pilotnet.wire import cjson

# Defaults point at this machine, never at the reference's public servers.
DEFAULT_REGISTRY = "127.0.0.1:9000"
DEFAULT_BEACON = "127.0.0.1:9001"


class Home:
    def __init__(self, path, environ):
        self.environ = environ
        # The home directory as a string: what a fast command needs, without ``pathlib``
        # (and without ``functools.cached_property``, whose import costs a start ~3 ms).
        self.directory = os.path.expanduser(path) if path else home_directory(environ)
        self._path = None

    @property
    def path(self):
        if self._path is None:
            from pathlib import Path

            self._path = Path(self.directory)
        return self._path

    @property
    def config_path(self):
        return self.path / "config.json"

    @property
    def pid_path(self):
        return self.path / "pilot.pid"

    @property
    def log_path(self):
        return self.path / "pilot.log"

    def ensure(self):
        """Create the directory owner-only (0700) if it is missing."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def load_config(self):
        """config.json as a dict; ``{}`` when absent; ``invalid_argument`` when it is not a JSON object."""
        try:
            text = self.config_path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise PilotError(f"cannot read {self.config_path}: {error.strerror}", code=INVALID_ARGUMENT) from None
        try:
            config = cjson.loads(text)
        except ValueError:
            config = None
        if not isinstance(config, dict):
            raise PilotError(
                f"{self.config_path} is not a JSON object", code=INVALID_ARGUMENT,
                hint="fix or remove it: pilotctl init rewrites it",
            )
        return config

    def save_config(self, config):
        self.ensure()
        temporary = self.config_path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(cjson.dumps(config, indent=2, sort_keys=True))
            file.write("\n")
        os.replace(temporary, self.config_path)

    def remember(self, key, value):
        """Keep ``value`` under ``key`` in config.json (an empty value removes the key), so the
        next ``daemon start`` applies what a command just changed."""
        config = self.load_config()
        if value:
            config[key] = value
        else:
            config.pop(key, None)
        self.save_config(config)

    def socket_path(self):
        return default_socket_path(self.environ, self.directory)

    def setting(self, key, environment_variable, default):
        """``$ENVIRONMENT_VARIABLE``, else config.json's ``key``, else ``default``."""
        if self.environ.get(environment_variable):
            return self.environ[environment_variable]
        value = self.load_config().get(key)
        return value if isinstance(value, str) and value else default

    def registry(self):
        return self.setting("registry", "PILOT_REGISTRY", DEFAULT_REGISTRY)

    def beacon(self):
        return self.setting("beacon", "PILOT_BEACON", DEFAULT_BEACON)
