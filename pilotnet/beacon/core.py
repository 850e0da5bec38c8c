"""What the beacon does with each datagram, as a plain object fed ``now``.

:meth:`BeaconCore.receive` takes one datagram and its source address and
returns the datagrams to send as ``(bytes, address)`` pairs.  Addresses are
``(host, port)`` tuples exactly as the socket reports them, so replies go back
the way requests came.

Beyond the reference beacon, ours refuses to relay for a sender whose claimed
node ID was registered (by Discover) from a different address than the relay
came from, and drops relay frames above a size limit.  Every drop is counted
by reason in :attr:`BeaconCore.dropped`.

Nobody can aim it at a third party:

- Peer beacons: without a shared secret only the operator's list (``--peer``)
  is synced with; with one (:class:`~pilotnet.beacon.peering.PeerAuth`) syncs
  are authenticated, and a beacon the registry lists gets full syncs only once
  its own authenticated sync came in (until then a 47-byte hello, an empty
  sync, every sync interval).  Syncs and forwarded relays are accepted only
  from peers.
- Replies: a discover reply (8 bytes for IPv4; 20 for IPv6) and the punch
  commands are the only answers to a node, and each source IP gets a token
  bucket of such requests; punch commands towards one target IP have another,
  since the target did not ask.  A discover reply goes only to a Discover at
  least as large (ours are padded); the reference's 5-byte one is recorded but
  not answered unless the operator opts in (``answer_short_discovers``), and
  a punch command goes back to its requester only when no larger than the
  request.  A relay delivery is 4 bytes smaller than the relay it carries.
- Punch commands carry the cookie of the node they go to (from its Discover,
  while it is at the address that Discover came from), so our daemons can
  refuse forged ones; a command carries it only when the request was at least
  as large (our daemons pad theirs).
- The node table: at most ``max_nodes`` entries, at most ``max_nodes_per_ip``
  from one source IP, and peer claims bounded the same way.
"""

from collections import Counter

from pilotnet.errors import DecodeError
from pilotnet.ratelimit import RateLimiter
from pilotnet.wire import beacon as wire

NODE_EXPIRY = 600.0
MAX_NODES = 100_000
#: Node IDs one source IP may hold in the table (a NAT with many daemons behind it counts once).
MAX_NODES_PER_IP = 256
#: Discover and punch requests one source IP may make per second, and at once.
REQUEST_RATE = 20.0
REQUEST_BURST = 40
#: Punch commands sent towards one target IP per second, and at once.
PUNCH_TARGET_RATE = 5.0
PUNCH_TARGET_BURST = 10
#: Source and target IPs whose buckets are remembered at most.
MAX_TRACKED_IPS = 65_536
# A peer beacon's claim to own a node lasts this long unless a sync repeats it.
PEER_CLAIM_EXPIRY = 30.0
# Nodes per Sync datagram: 7 + 4 * 16000 bytes stays under the UDP payload limit.
SYNC_CHUNK = 16_000


class BeaconCore:
    """Tracks node endpoints and peer beacons; turns datagrams into datagrams."""

    def __init__(self, beacon_id, *, max_nodes=MAX_NODES, max_nodes_per_ip=MAX_NODES_PER_IP,
                 node_expiry=NODE_EXPIRY, max_relay_frame=wire.MAX_RELAY_FRAME, peer_auth=None,
                 request_rate=REQUEST_RATE, request_burst=REQUEST_BURST, answer_short_discovers=False):
        self.beacon_id = beacon_id
        self.max_nodes = max_nodes
        self.max_nodes_per_ip = max_nodes_per_ip
        self.node_expiry = node_expiry
        self.max_relay_frame = max_relay_frame
        #: :class:`~pilotnet.beacon.peering.PeerAuth` when beacons share a secret, else None.
        self.peer_auth = peer_auth
        #: Answer Discovers smaller than their reply (Go daemons' 5 bytes): a small reflection, opt-in.
        self.answer_short_discovers = answer_short_discovers
        self.nodes = {}          # node ID -> (address, last seen)
        self.cookies = {}        # node ID -> (address its Discover came from, its cookie)
        self._nodes_per_ip = Counter()
        self.configured_peers = set()   # the operator's list: trusted without proof
        self.listed_peers = set()       # what the registry lists: anyone can put an address there
        self.proven_peers = {}          # address -> when its last authenticated sync came
        self.peer_claims = {}    # node ID -> (peer beacon address, last sync)
        self._requests = RateLimiter(request_burst, request_burst / request_rate, max_keys=MAX_TRACKED_IPS)
        self._punch_targets = RateLimiter(PUNCH_TARGET_BURST, PUNCH_TARGET_BURST / PUNCH_TARGET_RATE,
                                          max_keys=MAX_TRACKED_IPS)
        self.dropped = Counter()
        self.relayed = 0

    @property
    def peers(self):
        """Addresses of the peer beacons whose syncs and forwarded relays we take, and that get ours."""
        if self.peer_auth is None:
            return set(self.configured_peers)
        return self.configured_peers | set(self.proven_peers)

    # -- datagrams ---------------------------------------------------------

    def receive(self, datagram, source, now):
        """The datagrams to send in response to ``datagram`` from ``source``."""
        try:
            message = wire.decode(datagram)
        except DecodeError:
            self.dropped["malformed"] += 1
            return []
        kind = type(message)
        if kind is wire.Relay:
            return self._relay(message, datagram, source)
        if kind is wire.Sync:
            return self._sync(message, datagram, source, now)
        if kind is wire.Discover or kind is wire.PunchRequest:
            if not self._requests.allow(source[0], now):
                self.dropped["request_rate"] += 1
                return []
            if kind is wire.Discover:
                return self._discover(message, len(datagram), source, now)
            return self._punch(message, len(datagram), source, now)
        self.dropped["unexpected"] += 1
        return []

    def _record(self, node_id, source, now):
        entry = self.nodes.get(node_id)
        host = source[0]
        if entry is None or entry[0][0] != host:
            if entry is None and len(self.nodes) >= self.max_nodes:
                self.dropped["node_table_full"] += 1
                return False
            if self._nodes_per_ip[host] >= self.max_nodes_per_ip:
                self.dropped["node_limit_per_ip"] += 1
                return False
            self._nodes_per_ip[host] += 1
            if entry is not None:
                self._forget_host(entry[0][0])
        self.nodes[node_id] = (source, now)
        return True

    def _forget_host(self, host):
        count = self._nodes_per_ip[host] - 1
        if count:
            self._nodes_per_ip[host] = count
        else:
            del self._nodes_per_ip[host]

    def _discover(self, message, size, source, now):
        """Record the node; answer with its observed address if the answer is no larger than the question.

        Node 0 is a daemon asking for its address before it has an ID.  A Go
        daemon's Discover is 5 bytes: it only logs the reply to its periodic
        ones, and when its start-up one goes unanswered it registers its local
        address, whose IP the registry replaces with the one it observes.
        """
        if message.node and self._record(message.node, source, now):
            if message.cookie:
                self.cookies[message.node] = (source, message.cookie)
            else:
                self.cookies.pop(message.node, None)
        reply = wire.encode(wire.DiscoverReply(wire.Endpoint(*source), message.cookie))
        if len(reply) > size and not self.answer_short_discovers:
            self.dropped["discover_unanswered_short"] += 1
            return []
        return [(reply, source)]

    def _punch(self, message, size, source, now):
        self._record(message.requester, source, now)
        target = self.nodes.get(message.target)
        if target is None:
            self.dropped["punch_unknown_target"] += 1
            return []
        target_address = target[0]
        if not self._punch_targets.allow(target_address[0], now):
            self.dropped["punch_target_rate"] += 1
            return []
        to_requester = self._punch_command(target_address, message.requester, source, size)
        to_target = (self._punch_command(source, message.target, target_address, size), target_address)
        if len(to_requester) > size:
            # An IPv6 target's address (20 bytes) for the reference's 9-byte request: not to a
            # source that may be forged.  The target still punches towards the requester.
            self.dropped["punch_reply_oversized"] += 1
            return [to_target]
        return [(to_requester, source), to_target]

    def _punch_command(self, endpoint, node_id, address, size):
        """The command telling ``node_id`` at ``address`` to punch towards ``endpoint``.

        With the node's cookie if its Discover came from that very address and
        the request that caused the command was large enough to pay for it.
        """
        plain = wire.encode(wire.PunchCommand(wire.Endpoint(*endpoint)))
        known = self.cookies.get(node_id)
        if known is None or known[0] != address or len(plain) + wire.COOKIE_SIZE > size:
            return plain
        return plain + known[1]

    def _relay(self, message, datagram, source):
        if len(message.frame) > self.max_relay_frame:
            self.dropped["relay_oversized"] += 1
            return []
        from_peer = source in self.configured_peers or (
            self.peer_auth is not None and source in self.proven_peers)
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

    def _sync(self, message, datagram, source, now):
        if self.peer_auth is not None:
            body_size = wire.sync_size(len(message.nodes))
            refused = self.peer_auth.check(datagram, body_size, message.beacon, now)
            if refused is not None:
                self.dropped[refused] += 1
                return []
            self.proven_peers[source] = now
        elif source not in self.configured_peers:
            self.dropped["sync_from_stranger"] += 1
            return []
        claims = self.peer_claims
        for node_id in message.nodes:
            if node_id not in claims and len(claims) >= self.max_nodes:
                self.dropped["peer_claims_full"] += 1
                break
            claims[node_id] = (source, now)
        return []

    # -- housekeeping --------------------------------------------------------

    def set_peers(self, configured, listed=()):
        """Replace the operator's peer beacons and those the registry lists."""
        self.configured_peers = set(configured)
        self.listed_peers = set(listed) - self.configured_peers
        peers = self.peers
        for node_id in [n for n, (peer, _) in self.peer_claims.items() if peer not in peers]:
            del self.peer_claims[node_id]

    def expire(self, now):
        """Forget nodes silent for ``node_expiry``, stale peer claims and proofs; returns how many nodes."""
        node_cutoff = now - self.node_expiry
        stale = [n for n, (_, seen) in self.nodes.items() if seen < node_cutoff]
        for node_id in stale:
            self._forget_host(self.nodes.pop(node_id)[0][0])
            self.cookies.pop(node_id, None)
        claim_cutoff = now - PEER_CLAIM_EXPIRY
        for node_id in [n for n, (_, seen) in self.peer_claims.items() if seen < claim_cutoff]:
            del self.peer_claims[node_id]
        for address in [a for a, seen in self.proven_peers.items() if seen < claim_cutoff]:
            del self.proven_peers[address]
        self._requests.purge(now)
        self._punch_targets.purge(now)
        return len(stale)

    def sync_datagrams(self, now):
        """Sync messages announcing our nodes to every peer beacon (and hellos to unproven ones).

        A beacon the registry lists but that has not proven it holds our
        secret gets an empty, authenticated sync: enough for it to prove
        itself in return, too small to be worth reflecting.
        """
        peers = self.peers
        datagrams = []
        if peers:
            node_ids = sorted(self.nodes)
            chunks = [tuple(node_ids[i:i + SYNC_CHUNK]) for i in range(0, len(node_ids), SYNC_CHUNK)]
            messages = [wire.encode(wire.Sync(self.beacon_id, chunk)) for chunk in chunks or [()]]
            datagrams = [(message, peer) for peer in sorted(peers) for message in messages]
        if self.peer_auth is None:
            return datagrams
        hello = wire.encode(wire.Sync(self.beacon_id, ()))
        datagrams += [(hello, address) for address in sorted(self.listed_peers - peers)]
        return [(self.peer_auth.seal(message, now), address) for message, address in datagrams]
