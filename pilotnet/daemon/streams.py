"""Ports and streams: the stream engine on real timers, owned by local clients.

:class:`Streams` is the Twisted shell around :mod:`pilotnet.transport`.  Each
connection gets exactly one reactor timer, moved only when the engine's next
deadline moves earlier (a later deadline lets the timer fire early and re-arm),
so a busy stream costs no timer work per packet.

Every bound port and every stream belongs to an :class:`~pilotnet.interfaces.IStreamOwner` (a
control-socket client).  Owners hear about accepted streams, data, closes and
datagrams for their ports; when an owner goes away its ports are unbound and
its streams closed.

Flow control both ways: a ``write`` is answered once the stream's unsent and
unacknowledged bytes drop below :data:`SEND_HIGH_WATER`; received bytes count
against the advertised window until the owner has acknowledged the push that
carried them.
"""

from twisted.internet import defer
from twisted.logger import Logger

from pilotnet.control.schema import MAX_CHUNK
from pilotnet.errors import ALREADY_EXISTS, CONNECTION_FAILED, NOT_FOUND, PilotError
from pilotnet.interfaces import NO_EVENTS
from pilotnet.ratelimit import TokenBucket
from pilotnet.transport.connection import StreamConnection
from pilotnet.transport.errors import ConnectionReset, PeerUnresponsive
from pilotnet.transport.events import StreamEvent
from pilotnet.transport.states import State
from pilotnet.transport.table import ConnectionTable
from pilotnet.wire.address import EPHEMERAL_PORT_MIN, MAX_PORT
from pilotnet.wire.packet import FLAG_ACK, FLAG_RST, FLAG_SYN

log = Logger()

SEND_HIGH_WATER = 1024 * 1024
# Tracked SYN sources for per-source rate limiting; beyond this new sources wait.
MAX_SYN_SOURCES = 4096
PER_SOURCE_SYN_RATE = 10.0


class Stream:
    """The daemon's handle on one connection: its owner, timer, and pending work."""

    __slots__ = (
        "conn_id", "conn", "owner", "timer", "timer_at", "dialing", "announced", "writers",
        "closed_told", "delivery_due", "in_burst",
    )

    def __init__(self, conn_id, conn, owner):
        self.conn_id = conn_id
        self.conn = conn
        self.owner = owner
        self.timer = None
        self.timer_at = None
        self.dialing = None
        self.announced = False
        self.writers = []
        self.closed_told = False
        self.delivery_due = False
        self.in_burst = False

    @property
    def local_port(self):
        return self.conn.local_port

    @property
    def remote(self):
        return self.conn.remote

    @property
    def remote_port(self):
        return self.conn.remote_port


class Streams:
    """Listeners, connections, datagram delivery and port allocation for one node."""

    emitter = NO_EVENTS

    def __init__(self, *, clock, transmit, config, max_per_port, max_connections, syn_rate,
                 on_relay_hint=None, admit=None, config_for=None, transmit_burst=None):
        self.clock = clock
        self.transmit = transmit
        #: Sends several packets of one connection at once (to one node); by default one by one.
        self.transmit_burst = transmit_burst or self._transmit_each
        self.config = config
        self.table = ConnectionTable(config, max_per_port=max_per_port, max_connections=max_connections,
                                     config_for=config_for)
        self.on_relay_hint = on_relay_hint
        self.admit = admit
        self._owners = {}
        self._streams = {}
        self._by_conn = {}
        self._next_id = 1
        self._next_ephemeral = EPHEMERAL_PORT_MIN
        self._syn_bucket = TokenBucket(syn_rate, syn_rate)
        self._to_deliver = []
        self._delivery_scheduled = False
        self._bursting = False
        #: Streams that received packets in the current burst, serviced once at its end.
        self._in_burst = []
        self._syn_sources = {}
        self.refused_syns = 0
        #: Stream bytes written by owners and delivered to them, ever (to tell a busy daemon from an idle one).
        self.bytes_moved = 0

    def _transmit_each(self, packets):
        for packet in packets:
            self.transmit(packet)

    # -- ports -----------------------------------------------------------------

    def bind(self, port, owner):
        holder = self._owners.get(port)
        if holder is not None and holder is not owner:
            raise PilotError(f"port {port} already bound", code=ALREADY_EXISTS)
        self._owners[port] = owner
        self.table.listen(port)

    def unbind(self, port, owner):
        if self._owners.get(port) is not owner:
            raise PilotError(f"port {port} is not bound by this client", code=NOT_FOUND)
        del self._owners[port]
        self.table.unlisten(port)

    def bound_ports(self):
        return sorted(self._owners)

    def release(self, owner):
        """The owner went away: unbind its ports and close its streams."""
        for port in [p for p, o in self._owners.items() if o is owner]:
            self.unbind(port, owner)
        for stream in [s for s in self._streams.values() if s.owner is owner]:
            stream.owner = None
            stream.conn.close(self.clock.seconds())
            self._service(stream)

    def allocate_port(self):
        """The next free ephemeral port (TIME_WAIT connections do not hold theirs)."""
        in_use = {conn.local_port for conn in self.table if conn.state not in (State.CLOSED, State.TIME_WAIT)}
        in_use.update(self._owners)
        for _ in range(MAX_PORT - EPHEMERAL_PORT_MIN + 1):
            port = self._next_ephemeral
            self._next_ephemeral = EPHEMERAL_PORT_MIN if port >= MAX_PORT else port + 1
            if port not in in_use:
                return port
        raise PilotError("no free ephemeral port", code=CONNECTION_FAILED)

    # -- streams: application side ------------------------------------------------

    def _register(self, conn, owner):
        conn.batch_acks = True
        stream = Stream(self._next_id, conn, owner)
        self._next_id += 1
        self._streams[stream.conn_id] = stream
        self._by_conn[conn] = stream
        return stream

    def dial(self, local, remote, remote_port, owner):
        """Open a stream; Deferred firing with the :class:`Stream` once established."""
        if len(self.table) >= self.table.max_connections:
            raise PilotError("too many connections", code=CONNECTION_FAILED)
        conn = StreamConnection(local, self.allocate_port(), remote, remote_port, self.table.config_for(remote))
        self.table.add(conn)
        stream = self._register(conn, owner)
        stream.dialing = defer.Deferred(canceller=lambda _: self._abandon_dial(stream))
        conn.open(self.clock.seconds())
        dialing = stream.dialing
        self._service(stream)
        return dialing

    def _abandon_dial(self, stream):
        """A dial given up on (timed out, or diagnosed): reset it rather than leave its SYN retrying."""
        stream.dialing = None
        stream.conn.abort(self.clock.seconds())
        self._service(stream)

    def _stream(self, conn_id, owner):
        stream = self._streams.get(conn_id)
        if stream is None or stream.owner is not owner:
            raise PilotError(f"connection {conn_id} not found", code=NOT_FOUND)
        return stream

    def owns(self, conn_id, owner):
        """Whether stream ``conn_id`` exists and belongs to ``owner``."""
        stream = self._streams.get(conn_id)
        return stream is not None and stream.owner is owner

    def write(self, conn_id, data, owner):
        stream = self._stream(conn_id, owner)
        conn = stream.conn
        self.bytes_moved += len(data)
        conn.send(data, self.clock.seconds())
        self._service(stream)
        if conn.send_buffered < SEND_HIGH_WATER:
            return defer.succeed(None)
        waiting = defer.Deferred()
        stream.writers.append(waiting)
        return waiting

    def reset(self, conn_id, owner, error):
        """Reset one of ``owner``'s streams (an RST to the peer); the owner hears ``error``."""
        stream = self._stream(conn_id, owner)
        stream.conn.abort(self.clock.seconds())
        self._tell_closed(stream, error.code, error.message)
        self._service(stream)

    def close(self, conn_id):
        """Close any connection by id: ``pilotctl disconnect`` closes streams other clients opened."""
        stream = self._streams.get(conn_id)
        if stream is None:
            raise PilotError(f"connection {conn_id} not found", code=NOT_FOUND)
        stream.conn.close(self.clock.seconds())
        self._service(stream)

    def abort_peer(self, node):
        """Trust in ``node`` ended: reset every stream with it now (its owners hear of the reset)."""
        now = self.clock.seconds()
        for stream in [s for s in self._streams.values() if s.conn.remote.node == node]:
            stream.conn.abort(now)
            self._service(stream)

    def abort_all(self):
        """Daemon shutdown: tell every peer (RST) and drop everything."""
        now = self.clock.seconds()
        for stream in list(self._streams.values()):
            stream.conn.abort(now)
            self._service(stream)

    # -- packets from the network ----------------------------------------------------

    def stream_packet(self, packet):
        now = self.clock.seconds()
        flags = packet.flags
        if flags & FLAG_SYN and not flags & (FLAG_ACK | FLAG_RST):
            if self.table.find(packet.dst_port, packet.src, packet.src_port) is None:
                if not self._admit_syn(packet, now):
                    return
        routed = self.table.route(packet, now)
        if routed.reply is not None:
            self.transmit(routed.reply)
            return
        conn = routed.connection
        if conn is None:
            return
        stream = self._by_conn.get(conn)
        if stream is None:
            stream = self._register(conn, self._owners.get(conn.local_port))
            self.emitter.emit("conn.syn_received", src_addr=conn.remote, src_port=conn.remote_port,
                              dst_port=conn.local_port, conn_id=stream.conn_id)
        if self._bursting:
            if not stream.in_burst:
                stream.in_burst = True
                self._in_burst.append(stream)
            return
        conn.flush_acks()
        self._service(stream)

    def _admit_syn(self, packet, now):
        """Rate limits and the trust gate; a refused SYN is dropped silently, as the reference does."""
        if self.admit is not None and not self.admit(packet):
            self.refused_syns += 1
            return False
        source = packet.src.node
        bucket = self._syn_sources.get(source)
        if bucket is None:
            if len(self._syn_sources) >= MAX_SYN_SOURCES:
                self._forget_idle_sources(now)
            if len(self._syn_sources) >= MAX_SYN_SOURCES:
                self.refused_syns += 1
                return False
            bucket = self._syn_sources[source] = TokenBucket(PER_SOURCE_SYN_RATE, PER_SOURCE_SYN_RATE)
        if not (bucket.take(1, now) and self._syn_bucket.take(1, now)):
            self.refused_syns += 1
            self.emitter.emit("security.syn_rate_limited", src_addr=packet.src, src_port=packet.src_port)
            return False
        return True

    def _forget_idle_sources(self, now):
        for source in [s for s, b in self._syn_sources.items() if now - b.last > 10.0]:
            del self._syn_sources[source]

    def datagram_packet(self, packet):
        """Deliver a datagram to the client that bound its port (nobody else sees it), if the gate admits it."""
        if self.admit is not None and not self.admit(packet):
            return
        owner = self._owners.get(packet.dst_port)
        if owner is not None and packet.payload:
            owner.datagram(packet.src, packet.src_port, packet.dst_port, packet.payload)
            if self.emitter.active:  # per datagram: build the event only when someone listens
                self.emitter.emit("data.datagram", src_addr=packet.src, src_port=packet.src_port,
                                  dst_port=packet.dst_port, size=len(packet.payload))

    def peer_alive(self, node):
        """Any authenticated frame from ``node``: its connections need no keepalive verdict yet."""
        now = self.clock.seconds()
        for stream in self._streams.values():
            if stream.conn.remote.node == node:
                stream.conn.note_peer_alive(now)

    # -- the engine's outputs ----------------------------------------------------------

    def _service(self, stream):
        conn = stream.conn
        if conn.events:
            self._handle_events(stream, conn.take_events())
        if conn.outbox:
            packets = conn.take_packets()
            if len(packets) == 1:
                self.transmit(packets[0])
            else:
                self.transmit_burst(packets)
        if conn.has_delivered and not stream.delivery_due:
            self._schedule_delivery(stream)
        if stream.writers and conn.send_buffered < SEND_HIGH_WATER:
            writers, stream.writers = stream.writers, []
            for waiting in writers:
                waiting.callback(None)
        if conn.state is State.CLOSED:
            self._forget(stream)
        else:
            self._arm(stream)

    def _schedule_delivery(self, stream):
        """Deliver once this burst of datagrams is read: every segment in it then goes in one push.

        Pushing each segment to the client as its own AMP message would cost
        a message per segment.  Inside a burst (see
        :class:`~pilotnet.daemon.udp_batch.BurstPort`) delivery waits for
        :meth:`burst_ended`; data arriving any other way waits for the next
        reactor iteration.
        """
        stream.delivery_due = True
        self._to_deliver.append(stream)
        if not self._delivery_scheduled and not self._bursting:
            self._delivery_scheduled = True
            self.clock.callLater(0, self._deliver_pending)

    def burst_started(self):
        self._bursting = True

    def burst_ended(self):
        """Each connection the burst touched: one acknowledgment, one service, then the data to the owners.

        Servicing (events, packets out, re-arming the timer) once per
        connection per burst rather than once per packet is most of what a
        received segment costs beyond the engine itself.
        """
        touched, self._in_burst = self._in_burst, []
        for stream in touched:
            stream.in_burst = False
            stream.conn.flush_acks()
            self._service(stream)
        self._bursting = False
        if self._to_deliver and not self._delivery_scheduled:
            self._deliver_pending()

    def _deliver_pending(self):
        self._delivery_scheduled = False
        pending, self._to_deliver = self._to_deliver, []
        for stream in pending:
            stream.delivery_due = False
            self._deliver(stream)
            conn = stream.conn
            if conn.outbox or conn.events:
                self._service(stream)

    def _deliver(self, stream):
        conn = stream.conn
        chunks = conn.take_delivered(consume=stream.owner is None)
        if not chunks or stream.owner is None:
            return
        data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        self.bytes_moved += len(data)
        for start in range(0, len(data), MAX_CHUNK):
            piece = data[start:start + MAX_CHUNK]
            try:
                pushed = stream.owner.stream_data(stream.conn_id, piece)
            except Exception:
                log.failure("stream owner failed to take data")
                pushed = None
            # Most pushes are taken at once (a data socket, the echo service): those are answered
            # here, without the Deferred and callback a round trip would pay for at each daemon.
            if pushed is None:
                self._pushed(None, stream, len(piece))
            else:
                pushed.addBoth(self._pushed, stream, len(piece))

    def _pushed(self, result, stream, size):
        """The owner took ``size`` bytes: they leave the receive window, which may reopen it."""
        conn = stream.conn
        if conn.state is not State.CLOSED:
            conn.consumed(size)
            if conn.outbox:  # the window update consumed() sent; nothing else about the stream moved
                self._service(stream)

    def _handle_events(self, stream, events):
        """The owner hears of a stream before its data, and of the data before its end.

        Events and data can pile up together (a read burst is serviced once
        at its end): an accepted stream is announced first, and data that
        came before a close is delivered just before the close.
        """
        for event in events:
            if event is not StreamEvent.ESTABLISHED and event is not StreamEvent.RELAY_HINT:
                if stream.conn.has_delivered:
                    self._deliver(stream)
            if event is StreamEvent.ESTABLISHED:
                if stream.dialing is not None:
                    dialing, stream.dialing = stream.dialing, None
                    stream.announced = True
                    dialing.callback(stream)
                elif stream.owner is not None and not stream.announced:
                    stream.announced = True
                    stream.owner.stream_accepted(stream.local_port, stream)
                    self._emit_conn("conn.established", stream, inbound=True)
            elif event is StreamEvent.RELAY_HINT:
                if self.on_relay_hint is not None:
                    self.on_relay_hint(stream.remote.node)
            elif event is StreamEvent.PEER_CLOSED:
                self._emit_conn("conn.fin", stream)
                self._tell_closed(stream, "", "")
            elif event is StreamEvent.IDLE_TIMEOUT:
                self._emit_conn("conn.idle_timeout", stream)
            elif event is StreamEvent.RESET or event is StreamEvent.TIMED_OUT:
                if isinstance(stream.conn.error, ConnectionReset):
                    self._emit_conn("conn.rst", stream)
                elif isinstance(stream.conn.error, PeerUnresponsive):
                    self._emit_conn("conn.dead_peer", stream)
            elif event is StreamEvent.CLOSED:
                error = stream.conn.error
                if stream.dialing is not None:
                    dialing, stream.dialing = stream.dialing, None
                    dialing.errback(error or PilotError("connection closed while dialing",
                                                        code=CONNECTION_FAILED))
                    stream.owner = None
                elif error is not None:
                    self._tell_closed(stream, error.code, error.message)
                else:
                    self._tell_closed(stream, "", "")
                failure = error or PilotError(f"connection {stream.conn_id} is closed", code=CONNECTION_FAILED)
                writers, stream.writers = stream.writers, []
                for waiting in writers:
                    waiting.errback(failure)

    def _emit_conn(self, event, stream, inbound=False):
        """A connection event; an inbound one names the peer as its source (the reference's fields)."""
        conn = stream.conn
        if inbound:
            self.emitter.emit(event, src_addr=conn.remote, src_port=conn.remote_port, dst_port=conn.local_port,
                              conn_id=stream.conn_id)
        else:
            self.emitter.emit(event, remote_addr=conn.remote, remote_port=conn.remote_port,
                              local_port=conn.local_port, conn_id=stream.conn_id)

    def _tell_closed(self, stream, code, message):
        """Tell the owner once, and only about a stream it knows (dialed, or accepted and announced)."""
        if stream.announced and not stream.closed_told and stream.owner is not None:
            stream.closed_told = True
            stream.owner.stream_closed(stream.conn_id, code, message)

    def _arm(self, stream):
        deadline = stream.conn.next_deadline()
        if deadline is None:
            if stream.timer is not None and stream.timer.active():
                stream.timer.cancel()
            stream.timer = None
            return
        timer = stream.timer
        if timer is not None and timer.active() and stream.timer_at <= deadline:
            return  # fires early at worst, and re-arms then
        if timer is not None and timer.active():
            timer.cancel()
        stream.timer_at = deadline
        stream.timer = self.clock.callLater(max(0.0, deadline - self.clock.seconds()), self._fire, stream)

    def _fire(self, stream):
        stream.timer = None
        conn = stream.conn
        conn.tick(self.clock.seconds())
        self._service(stream)

    def _forget(self, stream):
        if stream.timer is not None and stream.timer.active():
            stream.timer.cancel()
        stream.timer = None
        self.table.remove(stream.conn)
        self._streams.pop(stream.conn_id, None)
        self._by_conn.pop(stream.conn, None)

    # -- observation ---------------------------------------------------------------------

    def __len__(self):
        return len(self._streams)

    def describe(self):
        """Every connection as ``pilotctl connections`` shows it (the reference's field names)."""
        return [connection_row(stream) for stream in self._streams.values()]


def _milliseconds(seconds):
    return None if seconds is None else round(seconds * 1000, 3)


def connection_row(stream):
    conn = stream.conn
    stats = conn.stats()
    return {
        "id": stream.conn_id,
        "local_port": conn.local_port,
        "remote_addr": str(conn.remote),
        "remote_port": conn.remote_port,
        "state": stats["state"],
        "mss": stats["mss"],
        "cong_win": stats["cwnd"],
        "ssthresh": stats["ssthresh"],
        "in_flight": stats["flight"],
        "unacked": stats["send_buffered"],
        "srtt_ms": _milliseconds(stats["srtt"]),
        "rttvar_ms": _milliseconds(stats["rttvar"]),
        "rto_ms": _milliseconds(stats["rto"]),
        "ooo_buf": stats["out_of_order"],
        "peer_recv_win": stats["peer_window"],
        "recv_win": stats["receive_window"],
        "bytes_sent": stats["bytes_sent"],
        "bytes_recv": stats["bytes_received"],
        "segs_sent": stats["segments_sent"],
        "segs_recv": stats["segments_received"],
        "retransmits": stats["retransmissions"],
        "fast_retx": stats["fast_retransmits"],
        "timeouts": stats["timeouts"],
        "sacked_bytes": stats["sacked_bytes"],
        "dup_acks": stats["duplicate_acks"],
        "window_probes": stats["window_probes"],
        "keepalives_sent": stats["keepalives_sent"],
        "dropped": stats["dropped"],
    }
