"""Segment sizes by path: peers on this host get segments far larger than an Ethernet frame.

Every stream segment is one sealed UDP datagram, and in Python the cost of a
segment (engine, packet codec, seal, one ``sendto`` and one ``recvfrom``) is
nearly the same at 1 KiB as at 32 KiB.  Across a network we keep the
configured MSS (1024 by default, what the reference uses so that no path
fragments), because the first hop's MTU says nothing about the rest of the path.
A peer whose endpoint the kernel routes over the loopback device (its MTU is
64 KiB, and nothing lies beyond it) is different: several daemons on one
machine, or containers sharing the host's network, lose nothing by sending
large segments.  Every Go receiver accepts segments up to 65 535 bytes.

The kernel answers "which route, which MTU" for a connected UDP socket
(``IP_MTU``); connecting sends nothing.
"""

import ipaddress
import socket
from dataclasses import replace

# Linux's values; the socket module does not export them.
IP_MTU = 14
IPV6_MTU = 24
#: A route with at least this MTU never leaves the host: the loopback device's
#: MTU is 65536, which IPv4 reports clamped to the largest datagram, 65535.
LOOPBACK_MTU = 65535
#: Hosts remembered; a daemon's peers are far fewer, so the cache is simply cleared when full.
MAX_REMEMBERED = 4096


def route_mtu(host):
    """The MTU of the kernel's route to ``host``, or None when the kernel cannot say."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    level, option = (socket.IPPROTO_IPV6, IPV6_MTU) if family == socket.AF_INET6 else (socket.IPPROTO_IP, IP_MTU)
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
            return probe.getsockopt(level, option)
        except OSError:
            return None


def is_on_this_host(host):
    """Whether datagrams to ``host`` (an IP literal: never a name, which would block on DNS) stay here."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mtu = route_mtu(str(address))
    return address.is_loopback if mtu is None else mtu >= LOOPBACK_MTU


class SegmentSizes:
    """The stream configuration for each peer: the daemon's own, or the same-host one.

    ``peer_endpoint(node)`` returns the (host, port) the tunnel sends to
    directly, or None (unknown, or relayed through the beacon, whose far side
    may be anywhere).
    """

    def __init__(self, config, local_mss, peer_endpoint, on_this_host=is_on_this_host):
        self.config = config
        self.local_config = (replace(config, mss=local_mss, receive_buffer=max(config.receive_buffer, 16 * local_mss))
                             if local_mss > config.mss else None)
        self._peer_endpoint = peer_endpoint
        self._on_this_host = on_this_host
        self._hosts = {}

    def config_for(self, remote):
        if self.local_config is None:
            return self.config
        endpoint = self._peer_endpoint(remote.node)
        if endpoint is None:
            return self.config
        host = endpoint[0]
        local = self._hosts.get(host)
        if local is None:
            if len(self._hosts) >= MAX_REMEMBERED:
                self._hosts.clear()
            local = self._hosts[host] = self._on_this_host(host)
        return self.local_config if local else self.config
