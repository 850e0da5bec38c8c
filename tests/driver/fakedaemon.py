"""A stand-in for the pilot daemon's control socket, with canned answers.

It speaks the real AMP commands of :mod:`pilotnet.driver.commands` on a Unix
socket, so the SDK and ``pilotctl`` are tested over the same bytes they use
with the real daemon.  Its whole "network" is one node (``0:0000.0000.0005``)
that also answers as ``agent-b`` (``0:0000.0000.0009``):

* dialling a port bound by any connected client connects the two clients;
* port 7 echoes what is written;
* a ``Write`` is pushed to the reader at once and credited back to the writer
  (``Written``) when the reader returns it (``Consumed``): the real daemon's
  backpressure, end to end and simplified;
* node 99 (``0:0000.0000.0063``) never answers (``timeout``); every other
  unbound port refuses (``connection_failed``);
* datagrams to a bound port are delivered to the client that bound it.

Run it on its own for subprocess tests: ``python -m tests.driver.fakedaemon
SOCKET_PATH`` prints ``ready`` once listening.
"""

import os
import sys
from itertools import count

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory
from twisted.protocols import amp

from pilotnet.driver import commands
from pilotnet.driver.commands import CommandFailed
from pilotnet.errors import ALREADY_EXISTS, CONNECTION_FAILED, INVALID_ARGUMENT, NOT_FOUND, TIMEOUT
from pilotnet.wire.address import PORT_ECHO, Addr

NODE = Addr(0, 5)
AGENT_B = Addr(0, 9)
SILENT = Addr(0, 99)
HOSTNAMES = {"agent-b": AGENT_B, "self": NODE}
PUBLIC_KEY = "MCowBQYDK2VwAyEAq1wYbS3kHl1aBcDeFgHiJkLmNoPqRsTuVwXyZ012345="


class FakeConnection:
    def __init__(self, conn_id, owner, local_port, remote_address, remote_port):
        self.conn_id = conn_id
        self.owner = owner
        self.local_port = local_port
        self.remote_address = remote_address
        self.remote_port = remote_port
        self.peer = None
        self.bytes_sent = 0
        self.bytes_recv = 0

    def describe(self):
        return {
            "id": self.conn_id, "local_port": self.local_port, "remote_addr": str(self.remote_address),
            "remote_port": self.remote_port, "state": "ESTABLISHED", "cong_win": 14600, "ssthresh": 65535,
            "in_flight": 0, "srtt_ms": 0.4, "rttvar_ms": 0.1, "rto_ms": 200, "unacked": 0, "ooo_buf": 0,
            "peer_recv_win": 512, "recv_win": 512, "bytes_sent": self.bytes_sent,
            "bytes_recv": self.bytes_recv, "segs_sent": 3, "segs_recv": 3, "retransmits": 0,
            "fast_retx": 0, "timeouts": 0, "sacked_bytes": 0, "dup_acks": 0, "window_probes": 0,
            "keepalives_sent": 0, "dropped": 0,
        }


class FakeNode:
    """The state every client of one fake daemon shares."""

    def __init__(self):
        self.hostname = ""
        self.ports = {}
        self.connections = {}
        self.ids = count(1)
        self.ephemeral = count(49152)
        self.calls = []
        #: What a broadcast answers: copies sent, members unreachable.
        self.broadcast_reach = (2, 0)
        self._bind_waiters = {}

    def bound(self, port):
        """Fires once a client has bound ``port`` (at once if one has), so tests wait on the bind itself."""
        if port in self.ports:
            return succeed(None)
        waiter = Deferred()
        self._bind_waiters.setdefault(port, []).append(waiter)
        return waiter

    def take_port(self, port, owner):
        self.ports[port] = owner
        for waiter in self._bind_waiters.pop(port, []):
            waiter.callback(None)

    def peer_list(self):
        return [{
            "node_id": AGENT_B.node, "address": str(AGENT_B), "endpoint": "127.0.0.1:40001",
            "path": "direct", "encrypted": True, "authenticated": True,
        }, {
            "node_id": 12, "address": "0:0000.0000.000C", "endpoint": "127.0.0.1:9001",
            "path": "relay", "encrypted": True, "authenticated": False,
        }]

    def info(self):
        return {
            "node_id": NODE.node, "address": str(NODE), "hostname": self.hostname, "uptime_secs": 3725.5,
            "connections": len(self.connections), "ports": len(self.ports), "peers": 2,
            "encrypted_peers": 2, "authenticated_peers": 1, "encrypt": True, "identity": True,
            "public_key": PUBLIC_KEY, "owner": "", "bytes_sent": 1536, "bytes_recv": 2 * 1024 * 1024,
            "pkts_sent": 12, "pkts_recv": 34, "peer_list": self.peer_list(),
            "conn_list": [c.describe() for c in self.connections.values()],
        }

    def open(self, owner, local_port, remote_address, remote_port):
        connection = FakeConnection(next(self.ids), owner, local_port, remote_address, remote_port)
        self.connections[connection.conn_id] = connection
        return connection

    def close(self, connection, notify_self=False):
        self.connections.pop(connection.conn_id, None)
        peer = connection.peer
        if peer is not None and peer.conn_id in self.connections:
            self.connections.pop(peer.conn_id)
            peer.owner.push(commands.StreamClosed, conn_id=peer.conn_id, code="", message="")
        if notify_self:
            connection.owner.push(commands.StreamClosed, conn_id=connection.conn_id, code="", message="")


class FakeDaemonProtocol(amp.AMP):
    def __init__(self, node):
        super().__init__()
        self.node = node
        self._lost = False

    def push(self, command, **arguments):
        if self.transport is not None and not self._lost:
            answer = self.callRemote(command, **arguments)
            if answer is not None:
                answer.addErrback(lambda _: None)

    def connectionLost(self, reason):
        self._lost = True
        super().connectionLost(reason)
        for port, owner in list(self.node.ports.items()):
            if owner is self:
                del self.node.ports[port]
        for connection in list(self.node.connections.values()):
            if connection.owner is self:
                self.node.close(connection)

    def _connection(self, conn_id):
        connection = self.node.connections.get(conn_id)
        if connection is None or connection.owner is not self:
            raise CommandFailed(f"connection {conn_id} not found", code=NOT_FOUND)
        return connection

    @commands.Info.responder
    def info(self):
        self.node.calls.append("Info")
        return {"info": self.node.info()}

    @commands.Peers.responder
    def peers(self):
        return {"peers": self.node.peer_list()}

    @commands.Connections.responder
    def connections(self):
        return {"connections": [c.describe() for c in self.node.connections.values()]}

    @commands.ResolveHostname.responder
    def resolve_hostname(self, hostname):
        if hostname not in HOSTNAMES:
            raise CommandFailed(f"hostname {hostname!r} not found", code=NOT_FOUND)
        address = HOSTNAMES[hostname]
        return {"result": {
            "type": "resolve_hostname_ok", "hostname": hostname, "node_id": address.node,
            "address": str(address), "public": True,
        }}

    @commands.Lookup.responder
    def lookup(self, node_id):
        if node_id not in (NODE.node, AGENT_B.node):
            raise CommandFailed(f"node {node_id} not found", code=NOT_FOUND)
        return {"result": {
            "type": "lookup_ok", "node_id": node_id, "address": str(Addr(0, node_id)),
            "public": True, "public_key": PUBLIC_KEY,
        }}

    @commands.SetHostname.responder
    def set_hostname(self, hostname):
        self.node.hostname = hostname
        return {"result": {"type": "set_hostname_ok", "node_id": NODE.node, "hostname": hostname}}

    @commands.SetVisibility.responder
    def set_visibility(self, public):
        return {"result": {
            "type": "set_visibility_ok", "node_id": NODE.node, "visibility": "public" if public else "private",
        }}

    @commands.SetTags.responder
    def set_tags(self, tags):
        if len(tags) > 3:
            raise CommandFailed("set_tags: maximum 3 tags allowed", code=INVALID_ARGUMENT)
        return {"result": {"type": "set_tags_ok", "node_id": NODE.node, "tags": tags}}

    @commands.SetTaskExec.responder
    def set_task_exec(self, enabled):
        return {"result": {"type": "set_task_exec_ok", "node_id": NODE.node, "task_exec": enabled}}

    @commands.Deregister.responder
    def deregister(self):
        return {"result": {"type": "deregister_ok"}}

    @commands.Bind.responder
    def bind(self, port):
        if port == 0:
            port = next(self.node.ephemeral)
        if port in self.node.ports:
            raise CommandFailed(f"port {port} already bound", code=ALREADY_EXISTS)
        self.node.take_port(port, self)
        return {"port": port}

    @commands.Unbind.responder
    def unbind(self, port):
        if self.node.ports.get(port) is self:
            del self.node.ports[port]
        return {}

    @commands.Dial.responder
    def dial(self, address, port, timeout=None, data_socket=None):
        if data_socket is not None:
            os.close(data_socket)  # as a daemon that only knows AttachSocket: the SDK falls back to it
        target = Addr.parse(address)
        if target == SILENT:
            raise CommandFailed("dial timeout", code=TIMEOUT)
        local_port = next(self.node.ephemeral)
        listener = self.node.ports.get(port)
        if listener is None and port != PORT_ECHO:
            raise CommandFailed("connection refused", code=CONNECTION_FAILED)
        dialer = self.node.open(self, local_port, target, port)
        if listener is not None:
            accepted = self.node.open(listener, port, NODE, local_port)
            dialer.peer, accepted.peer = accepted, dialer
            listener.push(
                commands.Accepted, port=port, conn_id=accepted.conn_id,
                remote_address=str(NODE), remote_port=local_port,
            )
        return {"conn_id": dialer.conn_id, "local_port": local_port, "remote_address": str(target), "remote_port": port}

    @commands.Write.responder
    def write(self, conn_id, data):
        """Deliver the chunk; its credit goes back to the writer when the reader returns it."""
        connection = self.node.connections.get(conn_id)
        if connection is None:
            return {}
        connection.bytes_sent += len(data)
        reader = connection if connection.peer is None else connection.peer
        reader.owner.push(commands.Received, conn_id=reader.conn_id, data=data)
        return {}

    @commands.Consumed.responder
    def consumed(self, conn_id, size):
        reader = self.node.connections.get(conn_id)
        if reader is not None:
            writer = reader if reader.peer is None else reader.peer
            writer.owner.push(commands.Written, conn_id=writer.conn_id, size=size)
        return {}

    @commands.Close.responder
    def close(self, conn_id):
        connection = self.node.connections.get(conn_id)
        if connection is not None:
            self.node.close(connection)
        return {}

    @commands.SendDatagram.responder
    def send_datagram(self, address, port, data):
        target = Addr.parse(address)
        if target.is_broadcast:  # the real rules are the daemon's (tests/daemon/test_broadcast.py)
            self.node.calls.append(("broadcast", target.network, port, data))
            return {"sent": self.node.broadcast_reach[0], "unreachable": self.node.broadcast_reach[1]}
        listener = self.node.ports.get(port)
        if listener is not None:
            listener.push(
                commands.DatagramReceived, src_address=str(NODE), src_port=next(self.node.ephemeral),
                dst_port=port, data=data,
            )
        return {}


class FakeDaemonFactory(Factory):
    def __init__(self):
        self.node = FakeNode()
        self.protocols = []

    def buildProtocol(self, addr):
        protocol = FakeDaemonProtocol(self.node)
        self.protocols.append(protocol)
        return protocol

    def disconnect_everyone(self):
        """Drop every client, as a dying daemon would."""
        for protocol in self.protocols:
            if protocol.transport is not None:
                protocol.transport.loseConnection()


def listen(reactor, socket_path):
    """Serve a fake daemon on ``socket_path``; returns (listening port, factory)."""
    factory = FakeDaemonFactory()
    return reactor.listenUNIX(socket_path, factory, mode=0o600), factory


def main(socket_path):
    from twisted.internet import reactor

    listen(reactor, socket_path)
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1])
