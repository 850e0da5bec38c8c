"""``twistd pilot-beacon``: the beacon on its own.

    twistd -n pilot-beacon --beacon 127.0.0.1:9001 --announce-to tcp:127.0.0.1:9000
"""

import os
import secrets
import stat

from twisted.logger import Logger
from twisted.python import usage

from pilotnet.beacon.core import BeaconCore, MAX_NODES, MAX_NODES_PER_IP
from pilotnet.beacon.peering import PeerAuth
from pilotnet.beacon.server import BeaconService, parse_udp_address
from pilotnet.errors import INVALID_ARGUMENT, PilotError
from pilotnet.plugin_options import PortsFile, ServerOptions

DEFAULT_ADDRESS = "127.0.0.1:9001"

log = Logger()


class BeaconOptions(ServerOptions):
    optParameters = [
        ["beacon", None, DEFAULT_ADDRESS, "UDP listen address, IP:port or [IPv6]:port."],
        ["beacon-id", None, None, "This beacon's ID among peer beacons (random if unset)."],
        ["advertise", None, None, "Address other beacons reach this one at (default: bound)."],
        ["max-nodes", None, str(MAX_NODES), "Node endpoints tracked at most."],
        ["max-nodes-per-ip", None, str(MAX_NODES_PER_IP), "Node endpoints tracked at most per source IP."],
        ["peer-secret-file", None, None,
         "File (mode 0600) holding a secret shared by every beacon: syncs are authenticated and the "
         "beacons the registry lists are synced with. Without it only --peer beacons are."],
    ]

    optFlags = [
        ["answer-short-discover", None,
         "Answer Discovers smaller than the reply (a Go daemon's 5 bytes) as the reference does. Unsafe: "
         "a forged source gets 8 bytes (20 for IPv6) for 5, up to the per-IP request rate."],
    ]

    def __init__(self):
        super().__init__()
        self["peers"] = []

    def opt_peer(self, address):
        """A peer beacon (IP:port) to sync with and forward relays to; repeatable."""
        self["peers"].append(self._address(address))

    def _address(self, text):
        try:
            return parse_udp_address(text)
        except PilotError as error:
            raise usage.UsageError(str(error)) from None

    def postOptions(self):
        super().postOptions()
        self["beacon"] = self._address(self["beacon"])
        if self["beacon-id"] is None:
            self["beacon-id"] = secrets.randbelow(0xFFFFFFFF) + 1
        try:
            self["beacon-id"] = int(self["beacon-id"])
            self["max-nodes"] = int(self["max-nodes"])
            self["max-nodes-per-ip"] = int(self["max-nodes-per-ip"])
        except ValueError:
            raise usage.UsageError("--beacon-id, --max-nodes and --max-nodes-per-ip must be integers") from None
        self["peer-auth"] = None
        if self["peer-secret-file"]:
            try:
                self["peer-auth"] = PeerAuth(read_secret(self["peer-secret-file"]))
            except PilotError as error:
                raise usage.UsageError(str(error)) from None
        if not 0 < self["beacon-id"] <= 0xFFFFFFFF:
            raise usage.UsageError("--beacon-id must be 1..4294967295")


def read_secret(path):
    """The secret in the file at ``path`` (surrounding whitespace dropped); it must be private to its owner."""
    try:
        with open(path, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            secret = handle.read().strip()
    except OSError as error:
        raise PilotError(f"cannot read the beacon peer secret {path}: {error.strerror}",
                         code=INVALID_ARGUMENT) from None
    if mode & 0o077:
        raise PilotError(f"the beacon peer secret {path} is readable by others",
                         code=INVALID_ARGUMENT, hint=f"chmod 600 {path}")
    return secret


def make_beacon_service(reactor, options, registry=None, on_listening=None):
    host, port = options["beacon"]
    core = BeaconCore(options["beacon-id"], max_nodes=options["max-nodes"],
                      max_nodes_per_ip=options["max-nodes-per-ip"], peer_auth=options["peer-auth"],
                      answer_short_discovers=bool(options["answer-short-discover"]))
    if core.answer_short_discovers:
        log.warn("beacon: --answer-short-discover is on (unsafe; see docs/security.md)")
    return BeaconService(reactor, core, host, port, peers=options["peers"], registry=registry,
                         advertise=options["advertise"], on_listening=on_listening)


class Options(BeaconOptions):
    optParameters = [
        ["announce-to", None, None,
         "Registry endpoint (e.g. tcp:127.0.0.1:9000) to announce this beacon to and "
         "learn peer beacons from."],
    ]


def makeService(options):
    from twisted.internet import reactor
    from pilotnet.registry.client import RegistryConnection
    registry = None
    if options["announce-to"]:
        registry = RegistryConnection(reactor, options["announce-to"]).request
    ports = PortsFile(options["ports-file"], ["beacon"])
    return make_beacon_service(reactor, options, registry, ports.reporter("beacon"))
