"""The gateway's mapping table: local IP <-> Pilot address, unique both ways (the reference's rules).

Pure: no sockets, no aliases; :class:`pilotnet.gateway.service.Gateway` does
the I/O for each change.  Automatic allocation hands out the subnet's hosts
in order (``10.4.0.1``, ``10.4.0.2`` ...), skipping used ones; an explicit IP
must lie in the subnet and be free; mapping an address already mapped gives
its existing IP.  Error texts are the reference's.
"""

import ipaddress
from typing import Dict, List, NamedTuple, Optional

from pilotnet.errors import ALREADY_EXISTS, CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, PilotError
from pilotnet.wire.address import Addr

DEFAULT_SUBNET = "10.4.0.0/16"
DEFAULT_PORTS = (80, 443, 1000, 1001, 1002, 7, 8080, 8443)
#: Mappings one gateway holds at most (each is an alias and a listener per port).
MAX_MAPPINGS = 1024
#: Ports one gateway listens on per mapping at most.
MAX_PORTS = 64


class Mapping(NamedTuple):
    local_ip: str
    pilot_addr: Addr
    hostname: str = ""

    def document(self) -> dict:
        """The JSON form (the reference's ``local_ip, pilot_addr``, plus the hostname when known)."""
        data = {"local_ip": self.local_ip, "pilot_addr": str(self.pilot_addr)}
        if self.hostname:
            data["hostname"] = self.hostname
        return data


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """An IPv4 subnet with room for at least one host; ``invalid_argument`` otherwise."""
    try:
        subnet = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise PilotError(f"invalid subnet {text!r}", code=INVALID_ARGUMENT,
                         hint="give an IPv4 subnet such as 10.4.0.0/16") from None
    if subnet.prefixlen > 30:
        raise PilotError(f"subnet {subnet} is too small (at most /30)", code=INVALID_ARGUMENT)
    return subnet


def parse_ports(text: str) -> List[int]:
    """``80,443`` as TCP ports, in order, without repeats."""
    ports: List[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= 65535:
            raise PilotError(f"invalid port {part!r} in --ports", code=INVALID_ARGUMENT,
                             hint="give TCP ports from 1 to 65535 separated by commas, e.g. 80,443")
        if int(part) not in ports:
            ports.append(int(part))
    if len(ports) > MAX_PORTS:
        raise PilotError(f"too many ports ({len(ports)}; at most {MAX_PORTS})", code=INVALID_ARGUMENT)
    return ports


class MappingTable:
    def __init__(self, subnet: ipaddress.IPv4Network):
        self.subnet = subnet
        self._by_ip: Dict[str, Mapping] = {}
        self._by_addr: Dict[Addr, Mapping] = {}

    def __len__(self):
        return len(self._by_ip)

    def mappings(self) -> List[Mapping]:
        return sorted(self._by_ip.values(), key=lambda mapping: ipaddress.IPv4Address(mapping.local_ip))

    def for_address(self, address: Addr) -> Optional[Mapping]:
        return self._by_addr.get(address)

    def for_ip(self, ip: str) -> Optional[Mapping]:
        return self._by_ip.get(ip)

    def plan(self, address: Addr, ip: Optional[str] = None, hostname: str = "") -> Mapping:
        """The mapping :meth:`add` would make (an existing one for a mapped address); raises if refused."""
        existing = self._by_addr.get(address)
        if existing is not None:
            return existing
        if len(self._by_ip) >= MAX_MAPPINGS:
            raise PilotError(f"too many mappings (at most {MAX_MAPPINGS})", code=CONNECTION_FAILED)
        if ip is None:
            return Mapping(self._allocate(), address, hostname)
        try:
            parsed = ipaddress.IPv4Address(ip)
        except ValueError:
            raise PilotError(f"invalid IP {ip!r}", code=INVALID_ARGUMENT) from None
        if parsed not in self.subnet:
            raise PilotError(f"IP {parsed} not in subnet {self.subnet}", code=INVALID_ARGUMENT)
        if str(parsed) in self._by_ip:
            raise PilotError(f"IP {parsed} already mapped", code=ALREADY_EXISTS)
        return Mapping(str(parsed), address, hostname)

    def _allocate(self) -> str:
        for host in self.subnet.hosts():
            if str(host) not in self._by_ip:
                return str(host)
        raise PilotError("subnet exhausted", code=CONNECTION_FAILED)

    def add(self, mapping: Mapping) -> None:
        self._by_ip[mapping.local_ip] = mapping
        self._by_addr[mapping.pilot_addr] = mapping

    def remove(self, ip: str) -> Mapping:
        mapping = self._by_ip.get(ip)
        if mapping is None:
            raise PilotError(f"no mapping for {ip}", code=NOT_FOUND)
        del self._by_ip[ip]
        del self._by_addr[mapping.pilot_addr]
        return mapping
