"""Answers far beyond AMP's 64 KiB value: 10,000 connections through the daemon's real control protocol.

The daemon's ``ControlFactory`` listens on a real Unix socket in this process,
over a node that reports 10,000 connections shaped as ``Streams.describe``
writes them; ``pilotctl`` (its blocking client, in a thread so this reactor
keeps serving) asks for them.  Before answers could continue past one AMP
value, about 150 connections broke ``info``, ``connections`` and ``daemon status``.
"""

import io
import json
import os
import shutil
import tempfile
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.trial.unittest import TestCase

from pilotnet.cli.runner import start
from pilotnet.control import schema
from pilotnet.control.client import ControlClient
from pilotnet.daemon.control import ControlFactory

CONNECTIONS = 10_000


def connection(number):
    """One record as ``Streams.describe`` writes it (the same keys, typical values)."""
    return {
        "id": number, "local_port": 49152 + number % 16384, "remote_addr": "0:0000.0000.0002", "remote_port": 7,
        "state": "ESTABLISHED", "mss": 32768, "cong_win": 65536, "ssthresh": 1048576, "in_flight": 0,
        "unacked": 0, "srtt_ms": 0.412, "rttvar_ms": 0.103, "rto_ms": 200.0, "ooo_buf": 0,
        "peer_recv_win": 1048576, "recv_win": 1048576, "bytes_sent": 1234, "bytes_recv": 1234, "segs_sent": 3,
        "segs_recv": 3, "retransmits": 0, "fast_retx": 0, "timeouts": 0, "sacked_bytes": 0, "dup_acks": 0,
        "window_probes": 0, "keepalives_sent": 0, "dropped": 0,
    }


class BusyNode:
    def __init__(self):
        self.records = [connection(n) for n in range(1, CONNECTIONS + 1)]
        self.streams = SimpleNamespace(describe=lambda: self.records, release=lambda owner: None)
        self.events = None

    def info(self):
        return {"node_id": 5, "address": "0:0000.0000.0005", "hostname": "busy", "uptime_secs": 12.0,
                "connections": CONNECTIONS, "peers": 1, "conn_list": self.records[:200]}


class TenThousandConnectionsTests(TestCase):
    timeout = 120

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="pilotnet-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.socket_path = os.path.join(self.directory, "pilot.sock")

    async def listen(self):
        port = await UNIXServerEndpoint(reactor, self.socket_path).listen(ControlFactory(BusyNode(), reactor))
        self.addCleanup(port.stopListening)

    def in_thread(self, function, *args):
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    def pilotctl(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        code = start(list(argv), environ={"PILOT_SOCKET": self.socket_path, "PILOT_HOME": self.directory},
                     stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    async def test_the_blocking_client_reads_answers_of_megabytes(self):
        await self.listen()

        def ask():
            with ControlClient(self.socket_path) as client:
                return client.call(schema.CONNECTIONS)["connections"], client.call(schema.INFO)["info"]

        connections, info = await self.in_thread(ask)
        self.assertEqual(len(connections), CONNECTIONS)
        self.assertEqual(connections[-1], connection(CONNECTIONS))
        self.assertGreater(len(json.dumps(connections)), 75 * 65535)  # 5 MB: 80 AMP values
        self.assertEqual(info["connections"], CONNECTIONS)
        self.assertGreater(len(json.dumps(info)), 65535)

    async def test_info_connections_and_daemon_status_answer(self):
        await self.listen()
        for argv, check in ((["info", "--json"], lambda data: data["connections"]),
                            (["connections", "--json"], lambda data: data["total"]),
                            (["daemon", "status", "--json"], lambda data: data["connections"])):
            code, out, err = await self.in_thread(self.pilotctl, *argv)
            self.assertEqual((code, err), (0, ""), argv)
            self.assertEqual(check(json.loads(out)["data"]), CONNECTIONS, argv)
        code, out, err = await self.in_thread(self.pilotctl, "connections")
        self.assertEqual(code, 0, err)
        self.assertIn(f"... and {CONNECTIONS - 50} more (see --json)", out)
