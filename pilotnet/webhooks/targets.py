"""Which URLs and addresses a webhook may be delivered to.

A webhook URL is set by whoever holds the control socket or the registry's
admin token, and the process that delivers to it sits inside a network the
setter may not be able to reach.  So a target is checked twice:

* when it is set (:func:`check_url`): the scheme must be http or https; a
  literal IP address must be allowed (:func:`check_address`); a host name
  known to serve cloud instance metadata is refused outright;
* before every connection (by :mod:`pilotnet.webhooks.http` and
  :mod:`pilotnet.webhooks.syslog`): the host name is resolved and *every*
  address it resolves to must be allowed, and the connection goes to that
  checked address, not to a second resolution, so a name that resolves to a
  public address at set time and to 169.254.169.254 later (DNS rebinding) is
  still refused.

Link-local addresses (where the cloud metadata services live) are refused
always; loopback, private (RFC 1918, unique-local fc00::/7), carrier-grade NAT
and unspecified addresses only when the operator allowed private targets.
Nothing here does I/O.
"""

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from urllib.parse import urlsplit

from pilotnet.errors import INVALID_ARGUMENT, PilotError

MAX_URL = 2048
SCHEMES = {"http": 80, "https": 443}

#: Cloud instance metadata: refused whatever the options.
METADATA_HOSTS = frozenset({
    "metadata.google.internal", "metadata.goog", "metadata", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.internal", "metadata.platformequinix.com",
})
METADATA_ADDRESSES = frozenset({
    ip_address("169.254.169.254"), ip_address("169.254.170.2"), ip_address("fd00:ec2::254"),
    ip_address("100.100.100.200"),
})
_ALWAYS_REFUSED = (ip_network("169.254.0.0/16"), ip_network("fe80::/10"), ip_network("224.0.0.0/4"),
                   ip_network("ff00::/8"), ip_network("255.255.255.255/32"))
_PRIVATE = (ip_network("127.0.0.0/8"), ip_network("::1/128"), ip_network("10.0.0.0/8"),
            ip_network("172.16.0.0/12"), ip_network("192.168.0.0/16"), ip_network("100.64.0.0/10"),
            ip_network("fc00::/7"), ip_network("0.0.0.0/8"), ip_network("::/128"))
_PRIVATE_HINT = "loopback and private addresses need the allow-private option (see docs/webhooks.md)"


class TargetRefused(PilotError):
    """A webhook target that is not allowed (a wrong scheme, a forbidden address)."""

    code = INVALID_ARGUMENT


@dataclass(frozen=True)
class Target:
    """A checked URL: its scheme, host (no brackets), port and the URL itself."""

    url: str
    scheme: str
    host: str
    port: int


def check_url(url: str, *, allow_private: bool = False, schemes=("http", "https")) -> Target:
    """The :class:`Target` of ``url``, or :class:`TargetRefused` saying why not."""
    if not isinstance(url, str) or not url:
        raise TargetRefused("webhook URL is empty")
    if len(url) > MAX_URL or not url.isprintable() or not url.isascii():
        raise TargetRefused(f"webhook URL must be printable ASCII of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TargetRefused(f"webhook URL is malformed: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise TargetRefused(f"webhook URL scheme must be {' or '.join(schemes)}, not {scheme or 'none'!r}")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise TargetRefused("webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("webhook URL must not carry credentials", hint="use the signature secret instead")
    if host in METADATA_HOSTS:
        raise TargetRefused(f"webhook host {host} serves cloud instance metadata")
    address = literal_address(host)
    if address is not None:
        check_address(address, allow_private=allow_private)
    return Target(url=url, scheme=scheme, host=host, port=port or SCHEMES.get(scheme, 0))


def literal_address(host: str) -> IPv4Address | IPv6Address | None:
    """The IP address ``host`` spells, or None for a name."""
    try:
        return ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def check_address(address, *, allow_private: bool = False) -> None:
    """Refuse an address a webhook must not reach (see the module docstring)."""
    if not isinstance(address, (IPv4Address, IPv6Address)):
        address = ip_address(address.split("%", 1)[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        raise TargetRefused(f"address {address} serves cloud instance metadata")
    if any(address in network for network in _ALWAYS_REFUSED):
        raise TargetRefused(f"address {address} is link-local or multicast")
    if not allow_private and any(address in network for network in _PRIVATE):
        raise TargetRefused(f"address {address} is loopback or private", hint=_PRIVATE_HINT)
