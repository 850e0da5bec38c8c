"""The gateway's DNS front: ``<agent>.pilot`` answers with the agent's gateway IP (twisted.names).

It listens on 127.0.0.1 only (UDP and TCP, one port).  An ``A`` query for
``agent-alpha.pilot`` resolves ``agent-alpha`` through the daemon (the
registry's hostnames, subject to visibility and trust) and maps it on demand,
so ``curl http://agent-alpha.pilot/`` reaches the agent through the gateway.
A node ID works too (``4.pilot``).  Other record types of a ``.pilot`` name
have no data; names outside ``.pilot`` and agents that do not resolve are
NXDOMAIN, so the front is meant as the resolver of the ``pilot`` domain only
(see docs/gateway.md for systemd-resolved and dnsmasq).
"""

from typing import List

from twisted.internet.defer import Deferred, fail, succeed
from twisted.names import dns, error, server
from twisted.names.common import ResolverBase

from pilotnet.errors import INVALID_ARGUMENT, NOT_FOUND, PilotError

DOMAIN = "pilot"
#: Seconds resolvers may cache an answer (a mapping lasts until it is unmapped).
TTL = 60
INTERFACE = "127.0.0.1"


def agent_name(name: str):
    """The agent a query name asks for (``agent-alpha`` of ``agent-alpha.pilot.``), or ``None``."""
    labels = name.lower().rstrip(".").split(".")
    if len(labels) != 2 or labels[1] != DOMAIN or not labels[0]:
        return None
    return labels[0]


class PilotNames(ResolverBase):
    """Answers for the ``pilot`` domain from the gateway's mappings, mapping agents on demand."""

    def __init__(self, gateway):
        super().__init__()
        self.gateway = gateway

    def _lookup(self, name, cls, type, timeout=None):
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        agent = agent_name(text)
        if agent is None or cls != dns.IN:
            return fail(error.DomainError(text))
        if type not in (dns.A, dns.ALL_RECORDS):
            return succeed(([], [], []))
        return Deferred.fromCoroutine(self._answer(name, text, agent))

    async def _answer(self, name, text, agent):
        try:
            mapping = await self.gateway.map(agent)
        except PilotError as failure:
            if failure.code in (NOT_FOUND, INVALID_ARGUMENT):
                raise error.DomainError(text) from None
            raise error.DNSServerError(text) from None
        record = dns.Record_A(mapping.local_ip, TTL)
        return [dns.RRHeader(name, dns.A, dns.IN, TTL, record, auth=True)], [], []


def listen_dns(reactor, gateway, port: int) -> List:
    """UDP and TCP listeners on 127.0.0.1:``port`` (0: any free port, the same for both)."""
    factory = server.DNSServerFactory(authorities=[PilotNames(gateway)])
    udp = reactor.listenUDP(port, dns.DNSDatagramProtocol(factory), interface=INTERFACE)
    try:
        tcp = reactor.listenTCP(udp.getHost().port, factory, interface=INTERFACE)
    except Exception:
        udp.stopListening()
        raise
    return [udp, tcp]
