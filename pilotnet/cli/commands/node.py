"""``info``, ``peers``, ``connections``, ``disconnect``: what the daemon knows right now."""

from pilotnet.cli.args import parse_number
from pilotnet.cli.output import Output, format_bytes, format_uptime, table

MAX_ROWS = 50


async def info(context, args):
    info = await (await context.daemon()).info()
    return Output(info, _info_text(info))


def _info_text(info):
    lines = [
        "Pilot Protocol Daemon",
        f"  Node ID:     {info.get('node_id')}",
        f"  Address:     {info.get('address')}",
    ]
    if info.get("hostname"):
        lines.append(f"  Hostname:    {info['hostname']}")
    lines += [
        f"  Uptime:      {format_uptime(info.get('uptime_secs', 0))}",
        f"  Connections: {info.get('connections', 0)}",
        f"  Ports:       {_count(info.get('ports', 0))}",
        f"  Peers:       {info.get('peers', 0)}",
    ]
    if info.get("encrypt"):
        lines.append(
            f"  Encryption:  enabled (X25519 + AES-256-GCM), {info.get('encrypted_peers', 0)}/"
            f"{info.get('peers', 0)} peers encrypted, {info.get('authenticated_peers', 0)} authenticated"
        )
    else:
        lines.append("  Encryption:  disabled")
    if info.get("identity"):
        lines.append(f"  Identity:    persistent (Ed25519 {str(info.get('public_key', ''))[:16]}...)")
    else:
        lines.append("  Identity:    ephemeral (not persisted)")
    if info.get("owner"):
        lines.append(f"  Owner:       {info['owner']}")
    lines += [
        f"  Traffic:     {format_bytes(info.get('bytes_sent', 0))} sent / {format_bytes(info.get('bytes_recv', 0))} recv",
        f"  Packets:     {info.get('pkts_sent', 0)} sent / {info.get('pkts_recv', 0)} recv",
    ]
    connections = info.get("conn_list") or []
    if connections:
        lines += ["", "Active connections:"]
        rows = [
            [c.get("id"), c.get("local_port"), c.get("remote_addr"), c.get("remote_port"), c.get("state")]
            for c in connections[:MAX_ROWS]
        ]
        lines.append(_indent(table(["ID", "LOCAL", "REMOTE ADDR", "RPORT", "STATE"], rows)))
    return "\n".join(lines)


def _count(value):
    """A count the daemon may report as a number or as the list of what it counts."""
    return len(value) if isinstance(value, (list, tuple)) else value


def _indent(text):
    return "\n".join("  " + line for line in text.splitlines())


async def peers(context, args):
    peers = await (await context.daemon()).peers()
    search = (args.text("search") or "").lower()
    if search:
        peers = [
            peer for peer in peers
            if any(search in str(peer.get(key, "")).lower() for key in ("node_id", "address", "endpoint"))
        ]
    data = {"peers": peers, "total": len(peers)}
    if not peers:
        return Output(data, "no peers")
    rows = [[
        peer.get("node_id"), peer.get("address", ""), peer.get("endpoint", ""), peer.get("path", ""),
        "yes (AES-256-GCM)" if peer.get("encrypted") else "no",
        "yes (Ed25519)" if peer.get("authenticated") else "no",
    ] for peer in peers]
    return Output(data, table(["NODE ID", "ADDRESS", "ENDPOINT", "PATH", "ENCRYPTED", "AUTH"], rows))


def _first(connection, *keys, default="-"):
    """The first of ``keys`` the daemon reported: counter names differ between daemon versions."""
    for key in keys:
        if connection.get(key) is not None:
            return connection[key]
    return default


def _srtt(connection):
    if connection.get("srtt_ms") is not None:
        return f"{connection['srtt_ms']:.1f}ms"
    if connection.get("srtt") is not None:
        return f"{connection['srtt'] * 1000:.1f}ms"
    return "-"


def _connection_rows(connection):
    row = [
        connection.get("id"), connection.get("local_port"), connection.get("remote_addr"),
        connection.get("remote_port"), connection.get("state"), _first(connection, "cwnd"),
        _first(connection, "flight"), _srtt(connection), _first(connection, "unacked"),
        _first(connection, "ooo", "out_of_order"), _first(connection, "peer_window"),
        _first(connection, "recv_window", "receive_window"),
    ]
    counters = (
        f"    tx={format_bytes(_first(connection, 'bytes_sent', default=0))} "
        f"rx={format_bytes(_first(connection, 'bytes_recv', 'bytes_received', default=0))} "
        f"retx={_first(connection, 'retransmits', 'retransmissions', default=0)} "
        f"fast-retx={_first(connection, 'fast_retransmits', default=0)} "
        f"sack={_first(connection, 'sacked', 'sacked_bytes', default=0)} "
        f"dup-ack={_first(connection, 'dup_acks', 'duplicate_acks', default=0)}"
    )
    return row, counters


async def connections(context, args):
    connections = await (await context.daemon()).connections()
    data = {"connections": connections, "total": len(connections)}
    if not connections:
        return Output(data, "no connections")
    header = ["ID", "LOCAL", "REMOTE ADDR", "RPORT", "STATE", "CWND", "FLIGHT", "SRTT", "UNACK", "OOO",
              "PEERWIN", "RCVWIN"]
    shown = [_connection_rows(connection) for connection in connections[:MAX_ROWS]]
    rendered = table(header, [row for row, _ in shown]).splitlines()
    text = [rendered[0]]
    for row_text, (_, counters) in zip(rendered[1:], shown):
        text += [row_text, counters]
    if len(connections) > MAX_ROWS:
        text.append(f"... and {len(connections) - MAX_ROWS} more (see --json)")
    return Output(data, "\n".join(text))


async def disconnect(context, args):
    conn_id = parse_number(args.positional[0], "connection ID", 2**32 - 1)
    await (await context.daemon()).close_connection(conn_id)
    return {"conn_id": conn_id}
