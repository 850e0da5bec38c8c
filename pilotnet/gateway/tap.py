"""``twistd pilot-gateway``: options and service construction.

``twistd -n pilot-gateway [--subnet 10.4.0.0/16] [--ports 80,443] [<address|hostname> [<ip>]]...``
maps each target (at the IP that follows it, or the next free one) and runs
until stopped; ``pilotctl gateway start`` runs this in the background.
"""

import ipaddress
import os

from twisted.python import usage

from pilotnet.driver.paths import default_socket_path, pilot_home
from pilotnet.errors import PilotError
from pilotnet.gateway.mappings import DEFAULT_PORTS, DEFAULT_SUBNET, parse_ports, parse_subnet
from pilotnet.plugin_options import ServerOptions


def pair_targets(arguments):
    """``[target [ip]]...`` as (target, ip or None) pairs: an IPv4 address belongs to the target before it."""
    pairs = []
    for argument in arguments:
        try:
            ipaddress.IPv4Address(argument)
        except ValueError:
            pairs.append((argument, None))
            continue
        if not pairs or pairs[-1][1] is not None:
            raise usage.UsageError(f"IP {argument} does not follow an address or hostname")
        pairs[-1] = (pairs[-1][0], argument)
    return pairs


class Options(ServerOptions):
    synopsis = "[options] [<address|hostname> [<ip>]]..."
    longdesc = (
        "Give agents local IP addresses: each mapping adds a loopback alias and a TCP listener per port, "
        "and every TCP connection is bridged to a Pilot stream to the same port of the agent. "
        "Needs root (aliases, ports below 1024), except on a subnet inside 127.0.0.0/8 with ports from 1024 up."
    )
    optParameters = [
        ["home", None, None, "the node's home directory [~/.pilot or $PILOT_HOME]"],
        ["socket", None, None, "the daemon's control socket [$PILOT_SOCKET or <home>/pilot.sock]"],
        ["subnet", None, DEFAULT_SUBNET, "the IPv4 subnet mapped IPs come from"],
        ["ports", None, ",".join(map(str, DEFAULT_PORTS)), "TCP ports to listen on for every mapping"],
        ["dns-port", None, None,
         "also answer <agent>.pilot DNS queries on 127.0.0.1 at this port (its address goes to --ports-file)"],
    ]

    def parseArgs(self, *targets):
        self["targets"] = pair_targets(targets)

    def postOptions(self):
        super().postOptions()
        home = os.path.expanduser(self["home"]) if self["home"] else str(pilot_home())
        self["home"] = home
        self["socket"] = self["socket"] or default_socket_path(home=home)
        try:
            self["subnet"] = parse_subnet(self["subnet"])
            self["ports"] = parse_ports(self["ports"])
        except PilotError as error:
            raise usage.UsageError(error.message) from None
        if self["dns-port"] is not None:
            if not self["dns-port"].isdigit() or int(self["dns-port"]) > 65535:
                raise usage.UsageError("--dns-port must be a port number (0 picks a free one)")
            self["dns-port"] = int(self["dns-port"])


def makeService(options):
    from twisted.internet import reactor

    from pilotnet.endpoints import DaemonLink
    from pilotnet.gateway.aliases import aliases_for, require_root
    from pilotnet.gateway.paths import control_path
    from pilotnet.gateway.mappings import MappingTable
    from pilotnet.gateway.service import Gateway
    from pilotnet.plugin_options import PortsFile

    try:
        require_root("pilot-gateway", options["subnet"], options["ports"])
    except PilotError as error:
        raise SystemExit(f"error: {error.message}\nhint:  {error.hint}") from None
    os.makedirs(options["home"], mode=0o700, exist_ok=True)
    return Gateway(
        reactor, DaemonLink(reactor, options["socket"], keep=True), MappingTable(options["subnet"]),
        options["ports"], aliases_for(options["subnet"]), control_path=control_path(options["socket"]),
        targets=options["targets"], dns_port=options["dns-port"],
        dns_bound=PortsFile(options["ports-file"], ["dns"]).reporter("dns") if options["ports-file"] else None,
    )
