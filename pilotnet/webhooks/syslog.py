"""Syslog delivery: RFC 5424 messages over UDP (one per datagram) or TCP (RFC 6587 octet counting).

The senders are ``send`` functions of a :class:`~pilotnet.webhooks.queue.DeliveryQueue`,
so syslog gets the same bounded queue, retries and dead letters as HTTP.  The
host is resolved and checked before every message exactly as for HTTP
(:func:`pilotnet.webhooks.http.checked_address`).  Over TCP each message opens
a connection, writes its frame and closes: a message is delivered when the
receiver took the connection and the frame was written.  UDP gives no
acknowledgement at all: a datagram sent counts as delivered.
"""

from datetime import datetime, timezone

from twisted.internet import defer
from twisted.internet.udp import Port as UDPPort
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol

from pilotnet.webhooks.http import SEND_TIMEOUT, checked_address, resolve, tcp_endpoint

NIL = "-"
#: RFC 5424 facility 13, "log audit".
FACILITY_LOG_AUDIT = 13
SEVERITY_NOTICE = 5
TRANSPORTS = ("udp", "tcp")
DEFAULT_PORT = 514
#: Longest header field RFC 5424 allows (APP-NAME 48, HOSTNAME 255, MSGID 32).
_LIMITS = {"hostname": 255, "app_name": 48, "msgid": 32}


def _field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, NILVALUE when empty (RFC 5424 6.2)."""
    cleaned = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return cleaned or NIL


def rfc5424(message: str, *, timestamp: float, hostname: str, app_name: str, msgid: str = "",
            facility: int = FACILITY_LOG_AUDIT, severity: int = SEVERITY_NOTICE, procid: str = "") -> bytes:
    """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG``; MSG is UTF-8 with BOM."""
    stamp = datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    header = (f"<{facility * 8 + severity}>1 {stamp} {_field(hostname, _LIMITS['hostname'])} "
              f"{_field(app_name, _LIMITS['app_name'])} {_field(procid, 128)} {_field(msgid, _LIMITS['msgid'])} -")
    return header.encode("ascii") + b" \xef\xbb\xbf" + message.encode("utf-8")


def octet_counted(message: bytes) -> bytes:
    """The RFC 6587 TCP framing: ``<length> <message>``."""
    return b"%d %s" % (len(message), message)


class _Writer(Protocol):
    def __init__(self, frame: bytes):
        self.frame = frame

    def connectionMade(self):
        self.transport.write(self.frame)
        self.transport.loseConnection()


class SyslogSender:
    """Sends ``format(payload)`` (an RFC 5424 message) to ``host:port`` over ``transport``."""

    def __init__(self, reactor, host: str, port: int, transport: str, format, *, allow_private: bool = False,
                 timeout: float = SEND_TIMEOUT, resolver=resolve):
        if transport not in TRANSPORTS:
            raise ValueError(f"syslog transport must be udp or tcp, not {transport!r}")
        self._reactor = reactor
        self._host = host
        self._port = port
        self._transport = transport
        self._format = format
        self._allow_private = allow_private
        self._timeout = timeout
        self._resolver = resolver
        self._udp: UDPPort | None = None

    def __call__(self, payload: dict) -> defer.Deferred:
        return defer.ensureDeferred(self._send(payload))

    async def _send(self, payload: dict):
        message = self._format(payload)
        address = await checked_address(self._reactor, self._host, self._port, self._allow_private, self._resolver)
        if self._transport == "udp":
            if self._udp is None:
                self._udp = self._reactor.listenUDP(0, DatagramProtocol(), interface="::" if ":" in address else "")
            self._udp.write(message, (address, self._port))
            return
        endpoint = tcp_endpoint(self._reactor, address, self._port, self._timeout)
        await endpoint.connect(Factory.forProtocol(lambda: _Writer(octet_counted(message))))

    def close(self):
        """Release the UDP socket, if one was opened."""
        if self._udp is not None:
            udp, self._udp = self._udp, None
            return udp.stopListening()
        return None
