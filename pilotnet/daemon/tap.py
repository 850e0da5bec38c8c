"""``twistd pilot-daemon``: options and service construction."""

import os

from twisted.python import usage

from pilotnet.daemon.config import DaemonConfig
from pilotnet.errors import PilotError
from pilotnet.plugin_options import LogFormatOptions
from pilotnet.webhooks.targets import check_url

# sun_path holds 108 bytes including the terminating NUL.
MAX_UNIX_PATH = 107
# A segment plus packet header and sealing (70 bytes) and a relay envelope (9) must fit one UDP datagram.
MIN_MSS, MAX_MSS = 64, 65_000


# Each on/off flag and the setting it gives: (name in DaemonConfig, value when the flag is present).
SWITCHES = {
    "public": ("public", True),
    "trust-auto-approve": ("trust_auto_approve", True),
    "no-encrypt": ("encrypt", False),
    "no-echo": ("echo", False),
    "no-dataexchange": ("dataexchange", False),
    "no-eventstream": ("eventstream", False),
    "no-tasksubmit": ("tasksubmit", False),
    "no-nameserver": ("nameserver", False),
    "webhook-allow-private": ("webhook_allow_private", True),
}


class Options(LogFormatOptions):
    synopsis = "[options]"
    longdesc = (
        "Run a Pilot node: register with the registry, keep encrypted tunnels to peers, carry "
        "streams and datagrams, and serve pilotctl and the SDK on a local control socket. "
        "Flags override <home>/config.json, which overrides the defaults."
    )

    optFlags = [
        ["public", None, "make this node's endpoint visible to every node"],
        ["no-encrypt", None, "send tunnel frames in clear (for debugging only)"],
        ["no-echo", None, "do not run the echo service on port 7"],
        ["no-dataexchange", None, "do not run the data exchange service on port 1001"],
        ["no-eventstream", None, "do not run the event stream broker on port 1002"],
        ["no-tasksubmit", None, "do not run the task submission service on port 1003"],
        ["no-nameserver", None, "do not run the nameserver (A, N and S records) on port 53"],
        ["trust-auto-approve", None, "approve every valid handshake request without asking the operator"],
        ["webhook-allow-private", None, "let webhooks reach loopback and private addresses (docs/webhooks.md)"],
    ]
    optParameters = [
        ["home", None, None, "directory for identity, config, log and socket [~/.pilot or $PILOT_HOME]"],
        ["config", None, None, "config file [<home>/config.json]"],
        ["registry", None, None,
         "registry host:port [127.0.0.1:9000]; several, comma-separated, to fail over between "
         "registries sharing one database"],
        ["registry-fingerprint", None, None,
         "reach the registry over TLS pinned to this certificate SHA-256 (the registry logs it)"],
        ["beacon", None, None, "beacon host:port [127.0.0.1:9001]"],
        ["listen", None, None, "UDP host:port for tunnels [0.0.0.0:0]"],
        ["socket", None, None, "control socket path [<home>/pilot.sock]"],
        ["endpoint", None, None, "public host:port to register instead of asking the beacon"],
        ["identity", None, None, "identity file [<home>/identity.json]"],
        ["hostname", None, None, "hostname to register"],
        ["owner", None, None, "owner (email) recorded with the registration"],
        ["keepalive", None, None, "seconds between heartbeats and keepalive probes [60]"],
        ["idle-timeout", None, None, "seconds before an idle stream is closed [120]"],
        ["close-timeout", None, None, "seconds without progress before a stream we closed is reset [60]"],
        ["mss", None, None, "largest stream segment payload in bytes; every Go peer accepts 1024 [1024]"],
        ["local-mss", None, None, "segment payload for peers on this host, whose path never leaves it; 0 uses --mss [32768]"],
        ["max-conns-per-port", None, None, "stream limit per port [1024]"],
        ["max-conns-total", None, None, "stream limit in all [65536]"],
        ["syn-rate-limit", None, None, "new streams accepted per second [100]"],
        ["handshake-rate-per-source", None, None,
         "unauthenticated key exchanges handled per second from one source address [10]"],
        ["handshake-rate", None, None, "unauthenticated key exchanges handled per second in all [200]"],
        ["inflight-max-bytes", None, None, "bytes of unfinished service frames held in memory, all peers [33554432]"],
        ["message-max-bytes", None, None, "largest data exchange message taken into memory [4194304]"],
        ["received-max-bytes", None, None, "bytes of received files kept in <home>/received [268435456]"],
        ["received-max-files", None, None, "received files kept in <home>/received [1000]"],
        ["inbox-max-bytes", None, None, "bytes of messages kept in <home>/inbox [67108864]"],
        ["inbox-max-messages", None, None, "messages kept in <home>/inbox [1000]"],
        ["task-queue-max", None, None, "tasks waiting in the queue before new ones are refused [100]"],
        ["webhook", None, None, "http(s) URL to POST this node's events to (docs/webhooks.md)"],
        ["networks", None, None, "network IDs to join at start-up, comma-separated (docs/networks.md)"],
        ["network-sync", None, None, "seconds between refreshes of our networks' members and allowed ports [30]"],
    ]

    def postOptions(self):
        flags = {
            key.replace("-", "_"): value
            for key, value in self.items()
            if key != "config" and key not in SWITCHES and value is not None
        }
        for switch, (setting, value) in SWITCHES.items():
            if self[switch]:
                flags[setting] = value
        if flags.get("log_format") is not None:
            self.use_log_format(flags["log_format"])
        try:
            self.config = DaemonConfig.build(flags, self["config"])
        except PilotError as error:
            raise usage.UsageError(str(error)) from None
        if self.config.registry_fingerprint:
            from pilotnet.registry.tls import normalize_fingerprint
            try:
                normalize_fingerprint(self.config.registry_fingerprint)
            except ValueError as error:
                raise usage.UsageError(f"--registry-fingerprint: {error}") from None
        if not MIN_MSS <= self.config.mss <= MAX_MSS:
            raise usage.UsageError(f"--mss must be between {MIN_MSS} and {MAX_MSS} bytes")
        if self.config.local_mss and not MIN_MSS <= self.config.local_mss <= MAX_MSS:
            raise usage.UsageError(f"--local-mss must be 0 or between {MIN_MSS} and {MAX_MSS} bytes")
        try:
            self.config.network_ids
        except PilotError as error:
            raise usage.UsageError(f"--networks: {error.message}") from None
        if self.config.network_sync <= 0:
            raise usage.UsageError("--network-sync must be above 0 seconds")
        if self.config.webhook:
            try:
                check_url(self.config.webhook, allow_private=self.config.webhook_allow_private)
            except PilotError as error:
                raise usage.UsageError(f"--webhook: {error}") from None
        if len(os.fsencode(self.config.socket_path)) > MAX_UNIX_PATH:
            raise usage.UsageError(
                f"control socket path {self.config.socket_path} is longer than {MAX_UNIX_PATH} bytes, "
                "which Unix sockets cannot use; choose a shorter one with --socket")
        from pilotnet.daemon.control import check_socket_path
        try:
            check_socket_path(self.config.socket_path)
        except PilotError as error:
            raise usage.UsageError(str(error)) from None
        if self.config.log_format == "json":  # from the flag (checked above) or the config file
            self.use_log_format("json")


def makeService(options):
    from twisted.internet import reactor

    from pilotnet.daemon.start_collection import paused_then_frozen
    with paused_then_frozen():
        from pilotnet.daemon.node import NodeService
        return NodeService(options.config, reactor)
