"""The nameserver on port 53: A, N and S records over the reference's text protocol.

The record protocol is :mod:`pilotnet.wire.nameserver`.  Two things the
reference meant to have and does not (its caller check never runs): a node
registers only its own address (A and S records name the caller's node), and
a name belongs to the node that registered it until the record expires, so a
peer cannot take over another's name.  Records expire
:data:`RECORD_TTL` seconds after they were (re-)registered, as the reference's
do; every count is bounded.

:class:`Records` is the store and its rules, fed ``now``; :class:`NameserverService`
is the stream owner that reads one request per stream, answers and closes.
"""

from typing import Any, Dict, Generic, NamedTuple, Tuple, TypeVar

from twisted.logger import Logger
from zope.interface import implementer

from pilotnet.interfaces import IStreamOwner
from pilotnet.errors import DecodeError, PilotError
from pilotnet.wire import nameserver as wire
from pilotnet.wire.address import Addr

log = Logger()

PORT_NAMESERVER = 53
RECORD_TTL = 300.0
#: Records of all kinds the store holds; registrations beyond it are refused.
MAX_RECORDS = 10_000
#: Records one node may hold.
MAX_RECORDS_PER_NODE = 64
#: At most this many S rows in one reply (a reply stays well within one stream write).
MAX_SERVICES_REPLY = 256
#: Seconds between two log lines about refused requests (they are counted in between).
REFUSAL_LOG_INTERVAL = 60.0


class RecordRefused(PilotError):
    """A registration the rules refuse; its message is the ``ERR`` reply's."""


#: What a record holds: Addr for A, network id for N, name for S.
V = TypeVar("V")


class _Record(NamedTuple, Generic[V]):
    value: V
    owner: int     # node ID of the registering node
    expires: float


class Records:
    """The three record tables, their ownership and expiry; every method takes ``now``."""

    def __init__(self, ttl: float = RECORD_TTL):
        self.ttl = ttl
        self.a: Dict[str, _Record[Addr]] = {}
        self.n: Dict[str, _Record[int]] = {}
        #: (network, port, address) -> name, so one service per address and port, refreshed in place.
        self.s: Dict[Tuple[int, int, Addr], _Record[str]] = {}

    def __len__(self):
        return len(self.a) + len(self.n) + len(self.s)

    def expire(self, now: float) -> int:
        """Drop what has expired; how many records went."""
        dropped = 0
        tables: Tuple[Dict[Any, _Record[Any]], ...] = (self.a, self.n, self.s)
        for table in tables:
            for key in [key for key, record in table.items() if record.expires <= now]:
                del table[key]
                dropped += 1
        return dropped

    def _held_by(self, owner: int) -> int:
        return sum(1 for table in (self.a, self.n, self.s) for record in table.values() if record.owner == owner)

    def _admit(self, table, key, owner: int, now: float) -> None:
        existing = table.get(key)
        if existing is not None and existing.expires > now:
            if existing.owner != owner:
                raise RecordRefused(f'name "{key}" is registered by another node')
            return  # a refresh takes no new room
        if len(self) >= MAX_RECORDS:
            raise RecordRefused("nameserver is full")
        if self._held_by(owner) >= MAX_RECORDS_PER_NODE:
            raise RecordRefused(f"too many records for this node (at most {MAX_RECORDS_PER_NODE})")

    def register(self, request: wire.Register, caller: Addr, now: float) -> None:
        """Store ``request`` for ``caller``; :class:`RecordRefused` with the reason otherwise."""
        self.expire(now)
        owner = caller.node
        if request.kind in ("A", "S") and request.address.node != owner:
            raise RecordRefused("cannot register address for another node")
        expires = now + self.ttl
        if request.kind == "A":
            self._admit(self.a, request.name, owner, now)
            self.a[request.name] = _Record(request.address, owner, expires)
        elif request.kind == "N":
            self._admit(self.n, request.name, owner, now)
            self.n[request.name] = _Record(request.network, owner, expires)
        else:
            key = (request.network, request.port, request.address)
            if key not in self.s:
                self._admit(self.s, key, owner, now)
            self.s[key] = _Record(request.name, owner, expires)

    def query(self, request: wire.Query, now: float) -> bytes:
        """The reply to a query (a record, the services, or the reference's ``not found`` error)."""
        self.expire(now)
        if request.kind == "A":
            record = self.a.get(request.name)
            if record is None:
                return wire.error_reply(f'name "{request.name}" not found')
            return wire.a_reply(request.name, record.value)
        if request.kind == "N":
            network = self.n.get(request.name)
            if network is None:
                return wire.error_reply(f'network "{request.name}" not found')
            return wire.n_reply(request.name, network.value)
        rows = sorted((record.value, address, port) for (network, port, address), record in self.s.items()
                      if network == request.network and port == request.port)
        return wire.s_reply(rows[:MAX_SERVICES_REPLY])

    def answer(self, data: bytes, caller: Addr, now: float) -> bytes:
        """The reply to one request's bytes from ``caller``; malformed requests get ``ERR``."""
        request = wire.parse_request(data)
        if isinstance(request, wire.Query):
            return self.query(request, now)
        self.register(request, caller, now)
        return wire.OK


@implementer(IStreamOwner)
class NameserverService:
    """Port 53 of the daemon: one request per stream (its first chunk), one reply, then close."""

    def __init__(self, streams, clock, port: int = PORT_NAMESERVER):
        self.streams = streams
        self.clock = clock
        self.records = Records()
        self._remotes: Dict[int, Addr] = {}
        self.refused = 0
        self._refusals_logged_at = None
        streams.bind(port, self)

    def stream_accepted(self, port, stream):
        self._remotes[stream.conn_id] = stream.remote

    def stream_data(self, conn_id, data):
        caller = self._remotes.pop(conn_id, None)
        if caller is None:
            return None  # one request per stream: what follows it is not read
        now = self.clock.seconds()
        try:
            reply = self.records.answer(data, caller, now)
        except (DecodeError, RecordRefused) as error:
            self._count_refusal(error, now)
            reply = wire.error_reply(error.message)
        try:
            self.streams.write(conn_id, reply, self)
            self.streams.close(conn_id)
        except PilotError:
            pass  # the caller went away first
        return None

    def _count_refusal(self, error, now):
        self.refused += 1
        if self._refusals_logged_at is None or now - self._refusals_logged_at >= REFUSAL_LOG_INTERVAL:
            self._refusals_logged_at = now
            log.info("nameserver refused a request ({count} so far): {reason}", count=self.refused,
                     reason=error.message)

    def stream_closed(self, conn_id, code, message):
        self._remotes.pop(conn_id, None)

    def datagram(self, src, src_port, dst_port, data):
        pass

    def housekeeping(self):
        """Drop expired records (the reference reaps every minute; lookups also skip them)."""
        self.records.expire(self.clock.seconds())
