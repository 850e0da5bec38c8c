"""``twistd pilot-beacon``: the beacon on its own.

    twistd -n pilot-beacon --beacon 127.0.0.1:9001 --announce-to tcp:127.0.0.1:9000
"""

import secrets

from twisted.python import usage

from pilotnet.beacon.core import BeaconCore, MAX_NODES
from pilotnet.beacon.server import BeaconService, parse_udp_address
from pilotnet.errors import PilotError
from pilotnet.plugin_options import PortsFile, ServerOptions

DEFAULT_ADDRESS = "127.0.0.1:9001"


class BeaconOptions(ServerOptions):
    optParameters = [
        ["beacon", None, DEFAULT_ADDRESS, "UDP listen address, IP:port or [IPv6]:port."],
        ["beacon-id", None, None, "This beacon's ID among peer beacons (random if unset)."],
        ["advertise", None, None, "Address other beacons reach this one at (default: bound)."],
        ["max-nodes", None, str(MAX_NODES), "Node endpoints tracked at most."],
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
        except ValueError:
            raise usage.UsageError("--beacon-id and --max-nodes must be integers") from None
        if not 0 < self["beacon-id"] <= 0xFFFFFFFF:
            raise usage.UsageError("--beacon-id must be 1..4294967295")


def make_beacon_service(reactor, options, registry=None, on_listening=None):
    host, port = options["beacon"]
    core = BeaconCore(options["beacon-id"], max_nodes=options["max-nodes"])
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
