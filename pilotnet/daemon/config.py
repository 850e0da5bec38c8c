"""The daemon's settings: command-line flags over ``<home>/config.json`` over defaults.

The home directory (``~/.pilot``, or ``$PILOT_HOME``, or ``--home``) holds
everything a node keeps: identity, trust, config, log, pid file and by default
the control socket.  Defaults point at a registry and beacon on 127.0.0.1,
never at anybody's public servers.
"""

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from pilotnet.errors import INVALID_ARGUMENT, PilotError

DEFAULT_REGISTRY = "127.0.0.1:9000"
DEFAULT_BEACON = "127.0.0.1:9001"
DEFAULT_LISTEN = "0.0.0.0:0"


class ConfigError(PilotError):
    code = INVALID_ARGUMENT


def default_home():
    return Path(os.environ.get("PILOT_HOME") or Path.home() / ".pilot")


@dataclass
class DaemonConfig:
    home: Path = field(default_factory=default_home)
    registry: str = DEFAULT_REGISTRY
    #: Hex SHA-256 of the registry's TLS certificate: when set, the registry is reached over
    #: TLS pinned to it (the fingerprint the registry logs at start).
    registry_fingerprint: str = ""
    beacon: str = DEFAULT_BEACON
    listen: str = DEFAULT_LISTEN
    socket: str = ""
    endpoint: str = ""
    identity: str = ""
    hostname: str = ""
    owner: str = ""
    public: bool = False
    trust_auto_approve: bool = False
    encrypt: bool = True
    echo: bool = True
    dataexchange: bool = True
    eventstream: bool = True
    tasksubmit: bool = True
    nameserver: bool = True
    keepalive: float = 60.0
    idle_timeout: float = 120.0
    close_timeout: float = 60.0
    mss: int = 1024
    #: Segment size for peers on this host (0: use ``mss`` for them too); see pilotnet.daemon.paths.
    local_mss: int = 32768
    max_conns_per_port: int = 1024
    max_conns_total: int = 65536
    syn_rate_limit: int = 100
    #: Key exchanges (PILA checks, key replies) per second from one source address / from all.
    handshake_rate_per_source: float = 10.0
    handshake_rate: float = 200.0
    # What the services keep for peers (pilotnet.services.storage): memory, then disk.
    inflight_max_bytes: int = 32 * 1024 * 1024
    message_max_bytes: int = 4 * 1024 * 1024
    received_max_bytes: int = 256 * 1024 * 1024
    received_max_files: int = 1000
    inbox_max_bytes: int = 64 * 1024 * 1024
    inbox_max_messages: int = 1000
    task_queue_max: int = 100
    log_format: str = "text"
    #: URL the node's events are POSTed to ("" = none); see docs/webhooks.md.
    webhook: str = ""
    webhook_allow_private: bool = False
    #: Networks to join at start-up, comma-separated IDs ("" = none); see docs/networks.md.
    networks: str = ""
    #: Seconds between refreshes of the networks we are in (members, allowed ports).
    network_sync: float = 30.0

    @property
    def network_ids(self):
        """:attr:`networks` as a list of IDs (``invalid_argument`` for anything but IDs 1-65535)."""
        ids = []
        for part in filter(None, (text.strip() for text in self.networks.split(","))):
            if not part.isdigit() or not 0 < int(part) <= 0xFFFF:
                raise ConfigError(f"networks: {part!r} is not a network ID (1-65535)")
            ids.append(int(part))
        return ids

    @property
    def socket_path(self):
        return Path(self.socket) if self.socket else self.home / "pilot.sock"

    @property
    def identity_path(self):
        return Path(self.identity) if self.identity else self.home / "identity.json"

    @property
    def config_path(self):
        return self.home / "config.json"

    @classmethod
    def build(cls, flags, config_file=None):
        """Flags (a dict; ``None`` = not given) over the config file over defaults."""
        home = Path(flags.get("home") or default_home()).expanduser()
        path = Path(config_file).expanduser() if config_file else home / "config.json"
        settings = {"home": home}
        settings.update(_read_config_file(path, required=bool(config_file)))
        settings.update({key: value for key, value in flags.items() if value is not None})
        settings["home"] = home
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in settings.items():
            key = key.replace("-", "_")
            if key not in known:
                continue  # config.json also holds pilotctl's keys
            values[key] = _coerce(key, value, known[key].type)
        return cls(**values)


def _read_config_file(path, *, required):
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"config file {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return document


def _coerce(key, value, kind):
    if kind in (bool, "bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", ""):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind in (int, "int", float, "float"):
        number_type = int if kind in (int, "int") else float
        try:
            number = number_type(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if number < 0:
            raise ConfigError(f"{key}: must not be negative")
        return number
    if kind in (Path, "Path"):
        return Path(value).expanduser()
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected text, got {value!r}")
    return value
