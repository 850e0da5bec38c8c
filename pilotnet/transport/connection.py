"""One stream connection: a sans-IO engine fed packets, writes and the time.

Inputs are method calls carrying ``now`` (float seconds on any monotonic
clock); outputs accumulate on the object for the owner to drain after each
call:

* ``outbox`` -- :class:`~pilotnet.wire.packet.Packet` objects to transmit, in order
  (:meth:`StreamConnection.take_packets`);
* delivered bytes (:meth:`StreamConnection.take_delivered`);
* ``events`` -- :class:`~pilotnet.transport.events.StreamEvent` values
  (:meth:`StreamConnection.take_events`); handle them before sending the outbox,
  so that a RELAY_HINT can move the path before the SYN it precedes goes out;
* :meth:`StreamConnection.next_deadline` -- when :meth:`StreamConnection.tick`
  must be called next, so the owner keeps one timer per connection.

The engine never raises for anything a peer sends: malformed or unexpected
packets are dropped and counted.  Sequence numbers are absolute integers inside
(see :mod:`pilotnet.transport.seqnum`); the unwrap expression is inlined on the
per-packet paths.
"""

from typing import Any, Self

from pilotnet.errors import TIMEOUT
from pilotnet.transport.config import DEFAULT_CONFIG, StreamConfig
from pilotnet.transport.congestion import CongestionControl
from pilotnet.transport.errors import (
    CloseTimeout, ConnectionClosed, ConnectionRefused, ConnectionReset, DialTimeout, PeerUnresponsive,
    RetransmissionTimeout, StreamError,
)
from pilotnet.transport.events import StreamEvent
from pilotnet.transport.receiver import IN_ORDER, NO_SPACE, OUT_OF_ORDER, ReceiveBuffer
from pilotnet.transport.rto import RtoEstimator
from pilotnet.transport.sender import Segment, SendQueue
from pilotnet.transport.seqnum import SEQ_HALF, SEQ_MASK
from pilotnet.transport.states import (
    CLOSING_STATES, RECEIVING, SYNCHRONIZED, WRITABLE, State, Trigger, transition,
)
from pilotnet.wire.address import Addr
from pilotnet.wire.packet import FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN, PROTO_STREAM, Packet
from pilotnet.wire.sack import MAGIC as SACK_MAGIC
from pilotnet.wire.sack import decode_sack, encode_sack, looks_like_sack

_CONTROL_FLAGS = FLAG_SYN | FLAG_FIN | FLAG_RST
# A peer window of 0 means "no limit" (reference rule).
_UNLIMITED = 1 << 62
_ESTABLISHED = State.ESTABLISHED


class StreamConnection:
    """A reliable, ordered, congestion-controlled byte stream to one remote port.

    Build a dialer with the constructor and call :meth:`open`; build an
    acceptor from a received SYN with :meth:`accept`.  Demultiplexing packets to
    connections, listeners and port limits belong to the owner (see
    :mod:`pilotnet.transport.table`).
    """

    def __init__(self, local: Addr, local_port: int, remote: Addr, remote_port: int,
                 config: StreamConfig = DEFAULT_CONFIG) -> None:
        self.local = local
        self.local_port = local_port
        self.remote = remote
        self.remote_port = remote_port
        self.config = config
        self.state = State.CLOSED
        #: The reason the connection failed (a StreamError), once it has.
        self.error: StreamError | None = None
        self.outbox: list[Packet] = []
        self.events: list[StreamEvent] = []

        self._mss = config.mss
        #: Send sub-MSS writes at once (Nagle off); owners of latency-bound streams set it.
        self.nodelay = config.nodelay
        #: Acknowledge in-order data once per batch of received packets instead of every
        #: second segment; an owner that sets it calls :meth:`flush_acks` after each batch.
        self.batch_acks = False
        self._isn = config.initial_sequence
        self._send = SendQueue(config.mss, self._isn + 1)
        self._recv = ReceiveBuffer(config)
        self._cc = CongestionControl(config)
        self._rtt = RtoEstimator(config)
        self._peer_isn = 0
        self._peer_window_field = 0
        self._peer_window = _UNLIMITED
        self._advertised = 0
        self._ack_owed = 0
        #: Batching: news of holes (out-of-order data) waits for the end of the batch (flush_acks).
        self._sack_owed = False
        self._dupacks = 0
        self._lost_pending = 0
        self._peer_fin_seq: int | None = None
        self._probe_interval = config.window_probe_initial
        self._syn_interval = config.syn_initial_rto
        self._syn_expiries = 0
        self._syn_retransmissions = 0
        self._heard_at = 0.0
        self._keepalive_sent_at = 0.0
        self._probes_missed = 0

        # Timers: absolute deadlines or None.
        self._rto_at: float | None = None
        self._ack_at: float | None = None
        self._nagle_at: float | None = None
        self._syn_at: float | None = None
        self._state_at: float | None = None
        self._fin_hold_at: float | None = None
        #: Loss detection between RTOs: the tail-loss probe, and RACK's re-check in recovery.
        self._loss_at: float | None = None
        #: Tail-loss probes sent since the last ACK that brought news: each doubles the wait for the next.
        self._unanswered_probes = 0

        # Counters (see stats()).
        self.bytes_sent = 0
        self.bytes_received = 0
        self.segments_sent = 0
        self.segments_received = 0
        self.retransmissions = 0
        self.fast_retransmits = 0
        self.tail_probes = 0
        self.timeouts = 0
        self.sacked_total = 0
        self.duplicate_acks = 0
        self.window_probes = 0
        self.keepalives_sent = 0
        self.dropped = 0

    # -- construction and the handshake ---------------------------------------------

    @classmethod
    def accept(cls, syn: Packet, now: float, config: StreamConfig = DEFAULT_CONFIG) -> Self:
        """An acceptor for ``syn`` (already admitted by the owner), with its SYN|ACK queued."""
        conn = cls(syn.dst, syn.dst_port, syn.src, syn.src_port, config)
        conn._set_state(Trigger.SYN)
        conn._peer_isn = syn.seq
        conn._recv.nxt = syn.seq + 1
        conn._take_window(syn.window)
        conn._heard_at = now
        conn._state_at = now + config.syn_received_timeout
        # Go acceptors rely on the dialer's SYN retransmission alone, but a
        # dialer that lost our SYN|ACK's answer may have nothing to send: we
        # repeat the SYN|ACK so its final ACK comes again (Go dialers ignore the extra).
        conn._syn_at = now + conn._syn_interval
        conn._send_syn_ack()
        return conn

    def open(self, now: float) -> None:
        """Dial: send the SYN and start its backoff timer."""
        self._set_state(Trigger.OPEN)
        self._heard_at = now
        self._syn_at = now + self._syn_interval
        self._send_syn()

    def _send_syn(self) -> None:
        self.outbox.append(self._packet(FLAG_SYN, self._isn, 0, self._recv.window()))

    def _send_syn_ack(self) -> None:
        ack = (self._peer_isn + 1) & SEQ_MASK
        self.outbox.append(self._packet(FLAG_SYN | FLAG_ACK, self._isn, ack, self._recv.window()))

    def _on_syn_ack(self, packet: Packet, now: float) -> None:
        if packet.ack != (self._isn + 1) & SEQ_MASK:
            self.dropped += 1
            return
        self._peer_isn = packet.seq
        self._recv.nxt = packet.seq + 1
        self._take_window(packet.window)
        self._syn_at = None
        self._establish(now)
        self._send_ack()
        self._push(now)

    def _establish(self, now: float) -> None:
        self._set_state(Trigger.SYN_ACK if self.state is State.SYN_SENT else Trigger.ACK)
        self._state_at = self._syn_at = None
        self._heard_at = now
        self.events.append(StreamEvent.ESTABLISHED)

    # -- application inputs ---------------------------------------------------------

    def send(self, data: bytes, now: float) -> int:
        """Queue ``data`` for sending; returns the byte count (always all of it).

        Writes made before the handshake completes are sent once it does.
        Backpressure is the owner's: watch :attr:`send_buffered`.
        """
        if self.state not in WRITABLE or self._send.fin_queued:
            raise ConnectionClosed(f"cannot write to a {self.state.name} connection",
                                   hint="the connection was closed or has failed")
        if data:
            self._send.write(data)
            if self.state is _ESTABLISHED or self.state is State.CLOSE_WAIT:
                self._push(now)
        return len(data)

    @property
    def send_buffered(self) -> int:
        """Bytes written and not yet acknowledged by the peer."""
        return self._send.buffered

    def close(self, now: float) -> None:
        """Finish sending: buffered data goes out, then our FIN.  Idempotent."""
        state = self.state
        if state is _ESTABLISHED or state is State.CLOSE_WAIT:
            self._set_state(Trigger.CLOSE)
            self._send.fin_queued = True
            self._state_at = now + self.config.close_timeout
            self._push(now)
        elif state is State.SYN_SENT or state is State.SYN_RECV:
            self.abort(now)

    def abort(self, now: float) -> None:
        """Drop the connection at once and tell the peer with an RST."""
        if self.state is State.CLOSED:
            return
        if self.state is not State.SYN_SENT:
            self._send_rst()
        self._finish(None)

    def take_delivered(self, consume: bool = True) -> list[bytes]:
        """The bytes received in order since the last call, as a list of chunks.

        With ``consume`` (the default) they count as consumed at once.  An owner
        that applies backpressure passes ``consume=False`` and reports progress
        with :meth:`consumed`, so that our advertised window reflects the bytes
        it still holds.
        """
        chunks = self._recv.take()
        if consume and chunks:
            self.consumed(sum(map(len, chunks)))
        return chunks

    @property
    def has_delivered(self) -> bool:
        """Bytes are waiting for :meth:`take_delivered`."""
        return bool(self._recv.delivered)

    def consumed(self, count: int) -> None:
        """The application has processed ``count`` delivered bytes."""
        recv = self._recv
        recv.consume(count)
        if self.state in RECEIVING and recv.window() - self._advertised >= (recv.limit // recv.unit) // 2:
            self._send_ack()

    def take_packets(self) -> list[Packet]:
        packets = self.outbox
        self.outbox = []
        return packets

    def take_events(self) -> list[StreamEvent]:
        events = self.events
        self.events = []
        return events

    def note_peer_alive(self, now: float) -> None:
        """Anything arrived from the peer's node: it is alive (resets dead-peer detection)."""
        self._heard_at = now
        self._probes_missed = 0

    # -- packets in -----------------------------------------------------------------

    def receive(self, packet: Packet, now: float) -> None:
        """Process one stream packet addressed to this connection."""
        flags = packet.flags
        if flags & _CONTROL_FLAGS:
            self._receive_control(packet, now)
            return
        state = self.state
        if not flags & FLAG_ACK:
            self.dropped += 1
            return
        if state is not _ESTABLISHED:
            if state is State.SYN_RECV:
                if not self._complete_accept(packet, now):
                    return
            elif state not in SYNCHRONIZED:
                self.dropped += 1
                return
        self._heard_at = now
        self._probes_missed = 0
        self.segments_received += 1
        payload = packet.payload
        if payload and payload.startswith(SACK_MAGIC) and looks_like_sack(payload):
            blocks = decode_sack(payload)
            if self._on_ack(packet.ack, packet.window, now, blocks) and blocks[0][0] == blocks[0][1]:
                # Our own keepalive probe (an empty SACK block, which no Go
                # version sends): answer it so the prober knows we live.
                self._send_ack()
        else:
            self._on_ack(packet.ack, packet.window, now, None, payload)
            if payload:
                self._on_data(packet.seq, payload, now)
        if self._send.unsent or self._send.fin_queued:
            self._push(now)

    def _complete_accept(self, packet: Packet, now: float) -> bool:
        isn = self._isn
        ack = isn + (((packet.ack - isn + SEQ_HALF) & SEQ_MASK) - SEQ_HALF)
        if ack <= isn:
            self.dropped += 1
            return False
        self._establish(now)
        return True

    def _receive_control(self, packet: Packet, now: float) -> None:
        flags = packet.flags
        state = self.state
        if flags & FLAG_RST:
            self._on_rst()
        elif flags & FLAG_SYN:
            self._heard_at = now
            if flags & FLAG_ACK:
                if state is State.SYN_SENT:
                    self._on_syn_ack(packet, now)
                elif state in SYNCHRONIZED:
                    self._send_ack()  # our final ACK was lost
            elif state is State.SYN_RECV or state in SYNCHRONIZED:
                self._send_syn_ack()  # the dialer missed our SYN|ACK
        elif flags & FLAG_FIN:
            if state is State.SYN_RECV and flags & FLAG_ACK and self._complete_accept(packet, now):
                state = self.state
            if state in SYNCHRONIZED:
                self._on_fin(packet, now)
            else:
                self.dropped += 1

    def _on_rst(self) -> None:
        state = self.state
        if state is State.CLOSED:
            return
        if state is State.SYN_SENT:
            self._finish(ConnectionRefused(f"{self.remote}:{self.remote_port} refused the connection",
                                           hint="is anything listening on that port?"))
        elif state is State.TIME_WAIT or state is State.LAST_ACK:
            self._finish(None)
        else:
            self._finish(ConnectionReset(f"{self.remote}:{self.remote_port} reset the connection"))

    def _on_fin(self, packet: Packet, now: float) -> None:
        self._heard_at = now
        self._probes_missed = 0
        if packet.flags & FLAG_ACK and packet.ack:
            # JF sends FIN|ACK replies; the ack may cover our own FIN.  The
            # window of a FIN is 0 by convention, not a real advertisement.
            self._on_ack(packet.ack, self._peer_window_field, now, None, b"FIN")
            if self.state is State.CLOSED:
                return
        state = self.state
        if state not in RECEIVING:
            # A FIN again while we are closing: acknowledge with a plain ACK and
            # never a FIN, which ends the FIN|ACK ping-pong of older Go peers.
            self._send_ack()
            self._linger(now)
            return
        recv = self._recv
        nxt = recv.nxt
        seq = nxt + (((packet.seq - nxt + SEQ_HALF) & SEQ_MASK) - SEQ_HALF)
        if seq <= nxt:
            self._accept_peer_fin(now)
        else:
            # The FIN overtook data: wait for the missing bytes, for a while
            # (a peer that never retransmits them would otherwise hang us).
            self._peer_fin_seq = seq
            if self._fin_hold_at is None:
                self._fin_hold_at = now + self.config.fin_reorder_wait
            self._send_ack()

    def _accept_peer_fin(self, now: float) -> None:
        self._recv.nxt += 1
        self._peer_fin_seq = None
        self._fin_hold_at = None
        self.events.append(StreamEvent.PEER_CLOSED)
        self._set_state(Trigger.PEER_FIN)
        self._send_ack()
        if self.state is State.CLOSING and self._send.fin_sent and self._send.una == self._send.nxt:
            self._on_fin_acked(now)

    def _on_fin_acked(self, now: float) -> None:
        state = self.state
        if state is State.CLOSING:
            self._set_state(Trigger.FIN_ACKED)
            self._enter_time_wait(now)
        elif state is State.LAST_ACK:
            self._set_state(Trigger.FIN_ACKED)
            self._finish(None, transitioned=True)

    def _linger(self, now: float) -> None:
        """The peer is still retransmitting to us in TIME_WAIT: our last ACK was lost.

        Stay until its next retransmission can reach us (its RTO may be as long
        as ``max_rto``), or it would retransmit into a closed connection and
        give up with an error after every byte was in fact delivered.
        """
        if self.state is State.TIME_WAIT:  # which set _state_at
            linger = now + max(self.config.time_wait, 2 * self.config.max_rto)
            self._state_at = max(self._state_at, linger)  # type: ignore[type-var]

    def _enter_time_wait(self, now: float) -> None:
        self._state_at = now + self.config.time_wait
        self._rto_at = self._loss_at = self._ack_at = self._nagle_at = self._fin_hold_at = None

    # -- acknowledgments ----------------------------------------------------------

    def _take_window(self, field: int) -> None:
        self._peer_window_field = field
        self._peer_window = field * self._mss if field else _UNLIMITED

    def _on_ack(self, wire_ack: int, window: int, now: float, sack_blocks: list[tuple[int, int]] | None,
                payload: bytes = b"") -> bool:
        """Process the ACK half of a packet; False if it acknowledges data never sent."""
        snd = self._send
        una = snd.una
        ack = una + (((wire_ack - una + SEQ_HALF) & SEQ_MASK) - SEQ_HALF)
        window_changed = window != self._peer_window_field
        if window_changed:
            self._take_window(window)
        cc = self._cc
        if ack > una:
            if ack > snd.nxt:
                self.dropped += 1
                return False
            self._on_new_ack(ack, now)
            if self.state is State.CLOSED:
                return True
        elif (ack == una and snd.nxt > una and not payload and not window_changed and sack_blocks is None
              and window > 1):
            # Window 1 is a full receiver answering our window probes and window
            # 0 a Go keepalive probe: neither is a loss signal.
            self.duplicate_acks += 1
            self._dupacks += 1
            if cc.in_recovery and not cc.after_timeout:
                cc.on_extra_dupack()
        newly = 0
        if sack_blocks is not None and snd.nxt > snd.una:
            blocks = [
                (una + (((left - una + SEQ_HALF) & SEQ_MASK) - SEQ_HALF),
                 una + (((right - una + SEQ_HALF) & SEQ_MASK) - SEQ_HALF))
                for left, right in sack_blocks
            ]
            newly = snd.apply_sack(blocks)
            if newly:
                self.sacked_total += newly
                if ack == una:
                    self._dupacks += 1
        if ack > una or newly:
            self._unanswered_probes = 0
            cc.on_delivered(snd.una + snd.sacked_bytes, snd.nxt, now)
        if cc.in_recovery:
            self._recover(now)
        elif snd.nxt > snd.una and (self._dupacks >= self.config.dupack_threshold
                                    or snd.sacked_bytes > (self.config.dupack_threshold - 1) * self._mss
                                    or self._head_overtaken(now)):
            # FlightSize when the loss was found: what was out before this ACK took its bytes
            # off (one ACK for a whole burst, as the daemon batches them, takes many).
            self._enter_fast_recovery(now, snd.nxt - una)
        self._arm_loss_timer(now)
        return True

    def _enter_fast_recovery(self, now: float, flight: int | None = None) -> None:
        snd = self._send
        self.fast_retransmits += 1
        # RFC 6675 halves FlightSize (all unacknowledged bytes), not the pipe: the
        # SACKed bytes left the network because of this very loss.
        self._cc.enter_fast_recovery(snd.nxt - snd.una if flight is None else flight, snd.nxt,
                                     self._rtt.min_rtt)
        self._recover(now, force_first=True)

    def _reorder_wait(self) -> float:
        """How long a segment overtaken by a later one may still be merely reordered: 5/4 SRTT."""
        srtt = self._rtt.srtt
        return 1.25 * srtt if srtt is not None else self._rtt.rto

    def _head_overtaken(self, now: float) -> bool:
        head = self._send.first_unacked()
        return head is not None and not head.sacked and self._send.overtaken(head, now, self._reorder_wait())

    def _arm_loss_timer(self, now: float) -> None:
        """Schedule the tail-loss probe (RFC 8985): twice the SRTT after the last ACK.

        Plus the delayed-ACK time when a single segment is out (its ACK may be
        held), at least ``tail_probe_min``, doubled for each probe still
        unanswered, and never later than the RTO would fire.  RFC 8985 sends
        one probe and then waits for the RTO; with the RTO's 200 ms floor (the
        reference's) against round trips of a millisecond, a lost probe or
        its lost ACK would stall the stream a hundred round trips, so probes
        repeat, backing off, until the RTO.
        """
        snd = self._send
        srtt = self._rtt.srtt
        if (srtt is None or snd.nxt <= snd.una or self.state is not _ESTABLISHED
                or self._peer_window_field == 1):  # a full receiver gets window probes instead
            self._loss_at = None
            return
        config = self.config
        timeout = 2 * srtt
        if snd.nxt - snd.una <= self._mss:
            timeout += config.delayed_ack_delay
        if timeout < config.tail_probe_min:
            timeout = config.tail_probe_min
        at = now + (timeout * (1 << self._unanswered_probes) if self._unanswered_probes else timeout)
        rto_at = self._rto_at
        self._loss_at = at if rto_at is None or at < rto_at else None

    def _on_loss_timer(self, now: float) -> None:
        """No ACK for a while: let RACK judge with the time that passed, or probe the tail."""
        self._loss_at = None
        snd = self._send
        cc = self._cc
        if snd.nxt <= snd.una or self.state is not _ESTABLISHED:
            return
        if cc.in_recovery:
            sent = self.retransmissions
            self._recover(now)
            if self.retransmissions != sent:
                self._arm_loss_timer(now)
                return
        elif self._head_overtaken(now):
            self._enter_fast_recovery(now)
            self._arm_loss_timer(now)
            return
        segment = snd.last_unsacked()
        if segment is None or segment.transmissions >= self.config.max_transmissions:
            return
        # Resend the newest segment: its SACK shows the receiver's holes, and the
        # overtaken ones are then lost by RACK without waiting for the RTO.
        self.tail_probes += 1
        snd.mark_resent(segment, segment.episode, now)
        if self._unanswered_probes:
            # Only the first probe counts towards giving up: the retransmission
            # timer, not how often we probed, decides when the peer is gone.
            segment.transmissions -= 1
        self._unanswered_probes += 1
        self._resend(segment)
        self._arm_loss_timer(now)

    def _on_new_ack(self, ack: int, now: float) -> None:
        snd = self._send
        acked = ack - snd.una
        if self._state_at is not None and self.state in CLOSING_STATES:
            self._state_at = now + self.config.close_timeout
        rtt = snd.acknowledge(ack, now)
        rtt_estimator = self._rtt
        if rtt is not None:
            rtt_estimator.sample(rtt)
        rtt_estimator.backed_off = False
        self._dupacks = 0
        self._probe_interval = self.config.window_probe_initial
        cc = self._cc
        if cc.in_recovery:
            if ack >= cc.recovery_point:
                cc.exit_recovery()
                self._lost_pending = 0
            elif cc.after_timeout:
                cc.on_ack(acked)
        else:
            cc.on_ack(acked)
        if snd.nxt > ack:
            self._rto_at = now + rtt_estimator.base
        else:
            self._rto_at = None
            if snd.fin_sent:
                self._on_fin_acked(now)
        if self._nagle_at is not None and snd.nxt == ack:
            self._nagle_at = None

    def _recover(self, now: float, force_first: bool = False) -> None:
        """Resend what SACK and the episode say is lost, as far as the window allows.

        ``force_first`` sends the first lost segment whatever the window: the
        retransmission that opens an episode must not wait (RFC 6675).
        """
        snd = self._send
        cc = self._cc
        head = snd.first_unacked()
        if head is None:
            self._lost_pending = 0
            return
        limit = snd.high_sacked
        if cc.after_timeout and cc.recovery_point > limit:
            limit = cc.recovery_point
        if head.end > limit:
            limit = head.end
        lost = snd.lost_segments(cc.episode, limit, now, self._reorder_wait())
        pending = 0
        for segment in lost:
            pending += segment.end - segment.start
        pipe = snd.nxt - snd.una - snd.sacked_bytes - pending
        cwnd = cc.cwnd
        episode = cc.episode
        for segment in lost:
            if pipe >= cwnd and not force_first:
                break
            force_first = False
            if segment.transmissions >= self.config.max_transmissions:
                break  # the retransmission timer decides this segment's fate
            size = segment.end - segment.start
            snd.mark_resent(segment, episode, now)
            self._resend(segment)
            pipe += size
            pending -= size
        self._lost_pending = pending

    # -- data in --------------------------------------------------------------------

    def _on_data(self, wire_seq: int, payload: bytes, now: float) -> None:
        recv = self._recv
        state = self.state
        if state is not _ESTABLISHED and state not in RECEIVING:  # an Enum's hash is a Python call
            self.dropped += 1
            self._send_ack()
            self._linger(now)
            return
        nxt = recv.nxt
        seq = nxt + (((wire_seq - nxt + SEQ_HALF) & SEQ_MASK) - SEQ_HALF)
        size = len(payload)
        if size > recv.unit:
            recv.note_segment_size(size)
        had_holes = recv.out_of_order_count
        outcome = recv.accept(seq, payload)
        if outcome == IN_ORDER:
            self.bytes_received += recv.nxt - nxt
            if self._state_at is not None and self.state is State.FIN_WAIT:
                self._state_at = now + self.config.close_timeout
            if self._peer_fin_seq is not None:
                if recv.nxt >= self._peer_fin_seq:
                    self._accept_peer_fin(now)
                    return
                self._fin_hold_at = now + self.config.fin_reorder_wait
            if had_holes:
                self._ack_holes()
                return
            owed = self._ack_owed = self._ack_owed + 1
            if owed >= self.config.delayed_ack_segments and not self.batch_acks:
                self._send_ack()
            elif self._ack_at is None:
                self._ack_at = now + self.config.delayed_ack_delay
            return
        if outcome != OUT_OF_ORDER:
            self.dropped += 1 if outcome == NO_SPACE else 0
        self._ack_holes()

    def _ack_holes(self) -> None:
        """Tell the sender about holes without delay: out-of-order data, a hole filled, a duplicate.

        Batching (:attr:`batch_acks`), one ACK at the end of the batch says it
        all: its SACK blocks cover every segment of the batch, where an ACK per
        segment costs both ends and the path a packet each while a hole is
        open.  Our sender reads SACK blocks, and Go senders never count a
        SACK-carrying ACK as a duplicate, so neither loses a signal.
        """
        if self.batch_acks:
            self._sack_owed = True
        else:
            self._send_ack()

    def flush_acks(self) -> None:
        """The end of a batch of received packets (see :attr:`batch_acks`): one ACK for all of it.

        Sent when the every-second-segment rule asked for one during the
        batch, or when the batch brought news of holes; a lone in-order
        segment still waits for the delayed-ACK timer or data to ride on, as
        without batching.
        """
        if (self._sack_owed or self._ack_owed >= self.config.delayed_ack_segments) and self.state in RECEIVING:
            self._send_ack()

    # -- packets out ----------------------------------------------------------------

    def _packet(self, flags: int, seq: int, ack: int, window: int, payload: bytes = b"") -> Packet:
        return Packet(PROTO_STREAM, self.local, self.remote, self.local_port, self.remote_port,
                      flags=flags, seq=seq, ack=ack, window=window, payload=payload)

    def _send_ack(self, payload: bytes | None = None) -> None:
        recv = self._recv
        if payload is None:
            payload = encode_sack(recv.sack_blocks()) if recv.out_of_order_count else b""
        window = self._advertised = recv.window()
        self.outbox.append(self._packet(FLAG_ACK, self._send.nxt & SEQ_MASK, recv.nxt & SEQ_MASK,
                                        window, payload))
        self._ack_owed = 0
        self._sack_owed = False
        self._ack_at = None

    def _send_fin(self, segment: Segment) -> None:
        """Our FIN, carrying our cumulative ACK too.

        The reference's FIN carries no acknowledgment; ours does (JF peers read
        an ACK on a FIN, older ones ignore it).  Otherwise, when the last ACK of
        the peer's data is lost, the FIN that follows it cannot repair the loss
        and the sender retransmits into a connection the peer already closed.
        """
        recv = self._recv
        window = self._advertised = recv.window()
        self.outbox.append(self._packet(FLAG_FIN | FLAG_ACK, segment.start & SEQ_MASK, recv.nxt & SEQ_MASK, window))

    def _send_rst(self) -> None:
        self.outbox.append(self._packet(FLAG_RST, 0, 0, 0))

    def _resend(self, segment: Segment) -> None:
        self.retransmissions += 1
        if segment.payload is None:
            self._send_fin(segment)
            return
        recv = self._recv
        window = self._advertised = recv.window()
        self.outbox.append(self._packet(FLAG_ACK, segment.start & SEQ_MASK, recv.nxt & SEQ_MASK,
                                        window, segment.payload))
        self._ack_owed = 0
        self._ack_at = None

    def _push(self, now: float, flush: bool = False) -> None:
        """Send new segments as far as the windows and Nagle allow, then our FIN if due."""
        snd = self._send
        if snd.unsent:
            cc = self._cc
            window = cc.cwnd if cc.cwnd < self._peer_window else self._peer_window
            pipe = snd.nxt - snd.una - snd.sacked_bytes - self._lost_pending
            if pipe < window:
                mss = self._mss
                hold_small = not (self.nodelay or flush or snd.fin_queued)
                recv = self._recv
                ack = recv.nxt & SEQ_MASK
                win = recv.window()
                outbox = self.outbox
                local, remote, local_port, remote_port = self.local, self.remote, self.local_port, self.remote_port
                sent = 0
                while snd.unsent and pipe < window:
                    size = snd.unsent if snd.unsent < mss else mss
                    if size < mss and hold_small and snd.nxt > snd.una:
                        if self._nagle_at is None:
                            self._nagle_at = now + self.config.nagle_delay
                        break
                    segment = snd.cut(size, now)
                    outbox.append(Packet(PROTO_STREAM, local, remote, local_port, remote_port, flags=FLAG_ACK,
                                         seq=segment.start & SEQ_MASK, ack=ack, window=win,
                                         payload=segment.payload))  # type: ignore[arg-type]  # data, not FIN
                    size = segment.end - segment.start
                    pipe += size
                    sent += size
                    self.segments_sent += 1
                if sent:
                    self.bytes_sent += sent
                    self._advertised = win
                    self._ack_owed = 0
                    self._ack_at = None
                    if not snd.unsent:
                        self._nagle_at = None
        if snd.fin_queued and not snd.fin_sent and not snd.unsent:
            self._send_fin(snd.cut_fin(now))
        if snd.nxt > snd.una:
            if self._rto_at is None:
                self._rto_at = now + self._rtt.rto
            if self._loss_at is None:
                self._arm_loss_timer(now)

    # -- timers ---------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has work to do, or None."""
        state = self.state
        if state is State.CLOSED:
            return None
        deadline = None
        for at in (self._rto_at, self._loss_at, self._ack_at, self._nagle_at, self._syn_at, self._state_at,
                   self._fin_hold_at):
            if at is not None and (deadline is None or at < deadline):
                deadline = at
        at = self._liveness_deadline()
        if at is not None and (deadline is None or at < deadline):
            deadline = at
        return deadline

    def _liveness_deadline(self) -> float | None:
        if self.state not in SYNCHRONIZED or self.state is State.TIME_WAIT:
            return None
        config = self.config
        snd = self._send
        if snd.nxt != snd.una:
            # With something in flight the retransmission timer judges the peer;
            # keepalives and the idle timer would only add contradicting verdicts.
            return None
        deadline = None
        if config.keepalive_interval is not None:
            last = self._heard_at if self._heard_at > self._keepalive_sent_at else self._keepalive_sent_at
            deadline = last + config.keepalive_interval
        if config.idle_timeout is not None:
            idle_at = self._heard_at + config.idle_timeout
            if deadline is None or idle_at < deadline:
                deadline = idle_at
        return deadline

    def tick(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        if self._syn_at is not None and now >= self._syn_at:
            self._on_syn_timer(now)
        if self._state_at is not None and now >= self._state_at:
            self._state_at = None
            if self.state is State.SYN_RECV:
                self._finish(DialTimeout("the dialer never completed the handshake"))
            elif self.state is State.TIME_WAIT:
                self._set_state(Trigger.TIMER)
                self._finish(None, transitioned=True)
            elif self.state in CLOSING_STATES:
                self._close_timed_out()
        if self._rto_at is not None and now >= self._rto_at:
            self._on_rto(now)
        if self._loss_at is not None and now >= self._loss_at:
            self._on_loss_timer(now)
        if self._fin_hold_at is not None and now >= self._fin_hold_at and self.state in RECEIVING:
            self._accept_peer_fin(now)  # the bytes the FIN overtook never came
        if self._nagle_at is not None and now >= self._nagle_at:
            self._nagle_at = None
            self._push(now, flush=True)
        if self._ack_at is not None and now >= self._ack_at:
            self._send_ack()
        at = self._liveness_deadline()
        if at is not None and now >= at:
            self._on_liveness_timer(now)

    def _close_timed_out(self) -> None:
        """We closed and the peer made no progress for ``close_timeout``: reset and end.

        With every byte and our FIN acknowledged (FIN_WAIT: only the peer's
        FIN is missing) nothing of ours was lost, so the ending is clean;
        otherwise the application learns its last bytes may not have arrived.
        """
        self._send_rst()
        snd = self._send
        if self.state is State.FIN_WAIT and snd.fin_sent and snd.una == snd.nxt:
            self._set_state(Trigger.TIMER)
            self._finish(None, transitioned=True)
            return
        self._finish(CloseTimeout(
            f"{self.remote}:{self.remote_port} did not finish closing within "
            f"{self.config.close_timeout:g}s of progress"))

    def _on_syn_timer(self, now: float) -> None:
        config = self.config
        if self.state is State.SYN_RECV:
            self._syn_interval = min(self._syn_interval * 2, config.syn_max_rto)
            self._syn_at = now + self._syn_interval
            self.retransmissions += 1
            self._send_syn_ack()
            return
        if self._syn_retransmissions >= config.syn_max_retransmissions:
            self._finish(DialTimeout(
                f"no answer from {self.remote}:{self.remote_port} after "
                f"{self._syn_retransmissions + 1} SYNs",
                hint="is the peer online, and does it trust us?"))
            return
        self._syn_expiries += 1
        if self._syn_expiries == config.syn_relay_expiry:
            self.events.append(StreamEvent.RELAY_HINT)
            self._syn_interval = config.syn_relay_rto
        else:
            self._syn_interval = min(self._syn_interval * 2, config.syn_max_rto)
        self._syn_retransmissions += 1
        self.retransmissions += 1
        self._syn_at = now + self._syn_interval
        self._send_syn()

    def _on_rto(self, now: float) -> None:
        snd = self._send
        segment = snd.first_unsacked() or snd.first_unacked()
        if segment is None:
            self._rto_at = None
            return
        if self._peer_window_field == 1 and self._heard_at > segment.sent_at and segment.payload is not None:
            # The peer is alive and answering but its buffer is full: this is a
            # window probe, not a loss, and does not count towards giving up.
            self.window_probes += 1
            segment.sent_at = now
            self._resend(segment)
            self.retransmissions -= 1
            self._rto_at = now + self._probe_interval
            self._probe_interval = min(self._probe_interval * 2, self.config.window_probe_max)
            return
        if segment.transmissions >= self.config.max_transmissions:
            if segment.payload is None and (self.state is State.LAST_ACK or self.state is State.CLOSING):
                # Only our FIN is unacknowledged and the peer's FIN came in: every byte
                # both ways was delivered.  The peer's final ACK was lost and it has
                # left TIME_WAIT since; that is a finished connection, not a failure.
                self._finish(None)
                return
            self._send_rst()
            self._finish(RetransmissionTimeout(
                f"{self.remote}:{self.remote_port} acknowledged nothing after "
                f"{segment.transmissions} transmissions"))
            return
        self.timeouts += 1
        cc = self._cc
        if cc.in_recovery and cc.after_timeout:
            snd.mark_resent(segment, cc.episode, now)
            self._resend(segment)
        else:
            cc.enter_timeout_recovery(snd.nxt - snd.una, snd.nxt)
            self._rtt.back_off()
            self._recover(now, force_first=True)
            if segment.episode != cc.episode:
                snd.mark_resent(segment, cc.episode, now)
                self._resend(segment)
        self._rto_at = now + self._rtt.rto

    def _on_liveness_timer(self, now: float) -> None:
        config = self.config
        interval = config.keepalive_interval
        if config.idle_timeout is not None and now >= self._heard_at + config.idle_timeout \
                and (interval is None or self._probes_missed < config.keepalive_max_missed):
            self._heard_at = now
            if self.state is _ESTABLISHED or self.state is State.CLOSE_WAIT:
                self.events.append(StreamEvent.IDLE_TIMEOUT)
                self.close(now)
            else:
                self._set_state(Trigger.TIMER)
                self._finish(None, transitioned=True)
            return
        if interval is None:
            return
        if self._probes_missed >= config.keepalive_max_missed:
            self._send_rst()
            self._finish(PeerUnresponsive(
                f"{self.remote}:{self.remote_port} answered none of {self._probes_missed} keepalive probes"))
            return
        self._probes_missed += 1
        self._keepalive_sent_at = now
        self.keepalives_sent += 1
        recv = self._recv
        # An empty SACK block rather than a bare ACK: Go counts a bare ACK
        # repeating its last ack number as a duplicate ACK (three of them cut
        # its window), but never a SACK-carrying one; ours answer it.
        empty = recv.nxt & SEQ_MASK
        self._send_ack(encode_sack([(empty, empty)]))

    # -- endings --------------------------------------------------------------------

    def _set_state(self, trigger: Trigger) -> None:
        self.state = transition(self.state, trigger)

    def _finish(self, error: StreamError | None, transitioned: bool = False) -> None:
        if not transitioned:
            self._set_state(Trigger.FAIL)
        self.error = error
        self._rto_at = self._loss_at = self._ack_at = self._nagle_at = self._syn_at = self._state_at = None
        self._fin_hold_at = None
        if error is not None:
            timed_out = error.code == TIMEOUT
            self.events.append(StreamEvent.TIMED_OUT if timed_out else StreamEvent.RESET)
        self.events.append(StreamEvent.CLOSED)

    # -- observation ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters, for ``pilotctl connections``."""
        snd = self._send
        recv = self._recv
        rtt = self._rtt
        return {
            "state": self.state.name,
            "mss": self._mss,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "segments_sent": self.segments_sent,
            "segments_received": self.segments_received,
            "retransmissions": self.retransmissions,
            "fast_retransmits": self.fast_retransmits,
            "tail_probes": self.tail_probes,
            "timeouts": self.timeouts,
            "sacked_bytes": self.sacked_total,
            "duplicate_acks": self.duplicate_acks,
            "window_probes": self.window_probes,
            "keepalives_sent": self.keepalives_sent,
            "dropped": self.dropped,
            "cwnd": self._cc.cwnd,
            "ssthresh": self._cc.ssthresh,
            "srtt": rtt.srtt,
            "rttvar": rtt.rttvar,
            "rto": rtt.rto,
            "flight": snd.nxt - snd.una,
            "send_buffered": snd.buffered,
            "peer_window": self._peer_window_field,
            "receive_window": recv.window(),
            "out_of_order": recv.out_of_order_count,
        }

    def __repr__(self) -> str:
        return (f"<StreamConnection {self.local}:{self.local_port} -> {self.remote}:{self.remote_port} "
                f"{self.state.name}>")
