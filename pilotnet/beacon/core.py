"""What the beacon does with each datagram, as a plain object fed ``now``.

:meth:`BeaconCore.receive` takes one datagram and its source address and
returns the datagrams to send as ``(bytes, address)`` pairs.  Addresses are
``(host, port)`` tuples exactly as the socket reports them, so replies go back
the way requests came.

Beyond the reference beacon, ours refuses to relay for a sender whose claimed
node ID was registered (by Discover) from a different address than the relay
came from, accepts syncs and forwarded relays only from known peer beacons,
and drops relay frames above a size limit.  Every drop is counted by reason in
:attr:`BeaconCore.dropped`.
"""

from collections import Counter

from pilotnet.errors import DecodeError
from pilotnet.wire import beacon as wire

NODE_EXPIRY = 600.0
MAX_NODES = 100_000
# A peer beacon's claim to own a node lasts this long unless a sync repeats it.
PEER_CLAIM_EXPIRY = 30.0
# Nodes per Sync datagram: 7 + 4 * 16000 bytes stays under the UDP payload limit.
SYNC_CHUNK = 16_000


class BeaconCore:
    """Tracks node endpoints and peer beacons; turns datagrams into datagrams."""

    def __init__(self, beacon_id, *, max_nodes=MAX_NODES, node_expiry=NODE_EXPIRY,
                 max_relay_frame=wire.MAX_RELAY_FRAME):
        self.beacon_id = beacon_id
        self.max_nodes = max_nodes
        self.node_expiry = node_expiry
        self.max_relay_frame = max_relay_frame
        self.nodes = {}          # node ID -> (address, last seen)
        self.peers = set()       # addresses of peer beacons
        self.peer_claims = {}    # node ID -> (peer beacon address, last sync)
        self.dropped = Counter()
        self.relayed = 0

    # -- datagrams ---------------------------------------------------------

    def receive(self, datagram, source, now):
        """The datagrams to send in response to ``datagram`` from ``source``."""
        try:
            message = wire.decode(datagram)
        except DecodeError:
            self.dropped["malformed"] += 1
            return []
        kind = type(message)
        if kind is wire.Discover:
            return self._discover(message, source, now)
        if kind is wire.PunchRequest:
            return self._punch(message, source, now)
        if kind is wire.Relay:
            return self._relay(message, datagram, source)
        if kind is wire.Sync:
            return self._sync(message, source, now)
        self.dropped["unexpected"] += 1
        return []

    def _record(self, node_id, source, now):
        if node_id not in self.nodes and len(self.nodes) >= self.max_nodes:
            self.dropped["node_table_full"] += 1
            return
        self.nodes[node_id] = (source, now)

    def _discover(self, message, source, now):
        # Node 0 is a daemon asking for its address before it has an ID.
        if message.node:
            self._record(message.node, source, now)
        return [(wire.encode(wire.DiscoverReply(wire.Endpoint(*source))), source)]

    def _punch(self, message, source, now):
        self._record(message.requester, source, now)
        target = self.nodes.get(message.target)
        if target is None:
            self.dropped["punch_unknown_target"] += 1
            return []
        target_address = target[0]
        return [
            (wire.encode(wire.PunchCommand(wire.Endpoint(*target_address))), source),
            (wire.encode(wire.PunchCommand(wire.Endpoint(*source))), target_address),
        ]

    def _relay(self, message, datagram, source):
        if len(message.frame) > self.max_relay_frame:
            self.dropped["relay_oversized"] += 1
            return []
        from_peer = source in self.peers
        if not from_peer:
            sender = self.nodes.get(message.sender)
            if sender is None or sender[0] != source:
                self.dropped["relay_spoofed_sender"] += 1
                return []
        destination = self.nodes.get(message.destination)
        if destination is not None:
            self.relayed += 1
            return [(wire.encode(wire.RelayDeliver(message.sender, message.frame)),
                     destination[0])]
        claim = self.peer_claims.get(message.destination)
        # A relay forwarded by a peer is never forwarded again: no loops.
        if claim is not None and not from_peer:
            self.relayed += 1
            return [(bytes(datagram), claim[0])]
        self.dropped["relay_unknown_destination"] += 1
        return []

    def _sync(self, message, source, now):
        if source not in self.peers:
            self.dropped["sync_from_stranger"] += 1
            return []
        for node_id in message.nodes:
            self.peer_claims[node_id] = (source, now)
        return []

    # -- housekeeping --------------------------------------------------------

    def set_peers(self, addresses):
        """Replace the set of peer beacons (configured plus those the registry lists)."""
        self.peers = set(addresses)
        for node_id in [n for n, (peer, _) in self.peer_claims.items() if peer not in self.peers]:
            del self.peer_claims[node_id]

    def expire(self, now):
        """Forget nodes silent for ``node_expiry`` and stale peer claims; returns how many nodes."""
        node_cutoff = now - self.node_expiry
        stale = [n for n, (_, seen) in self.nodes.items() if seen < node_cutoff]
        for node_id in stale:
            del self.nodes[node_id]
        claim_cutoff = now - PEER_CLAIM_EXPIRY
        for node_id in [n for n, (_, seen) in self.peer_claims.items() if seen < claim_cutoff]:
            del self.peer_claims[node_id]
        return len(stale)

    def sync_datagrams(self):
        """Sync messages announcing our nodes to every peer beacon."""
        node_ids = sorted(self.nodes)
        chunks = [tuple(node_ids[i:i + SYNC_CHUNK]) for i in range(0, len(node_ids), SYNC_CHUNK)]
        messages = [wire.encode(wire.Sync(self.beacon_id, chunk)) for chunk in chunks or [()]]
        return [(message, peer) for peer in sorted(self.peers) for message in messages]
