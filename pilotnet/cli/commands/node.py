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
        f"  Ports:       {info.get('ports', 0)}",
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
        "yes (Ed25519)" if peer.get("authenticated") else "no", _ago(peer.get("last_heard_secs")),
    ] for peer in peers]
    return Output(data, table(["NODE ID", "ADDRESS", "ENDPOINT", "PATH", "ENCRYPTED", "AUTH", "LAST HEARD"],
                              rows))


def _ago(seconds):
    return "never" if seconds is None else f"{seconds:.0f}s ago"


def _milliseconds(value):
    return "-" if value is None else f"{value:.1f}ms"


def _connection_rows(connection):
    row = [
        connection["id"], connection["local_port"], connection["remote_addr"], connection["remote_port"],
        connection["state"], connection["cong_win"], connection["in_flight"],
        _milliseconds(connection["srtt_ms"]), connection["unacked"], connection["ooo_buf"],
        connection["peer_recv_win"], connection["recv_win"],
    ]
    counters = (
        f"    tx={format_bytes(connection['bytes_sent'])} rx={format_bytes(connection['bytes_recv'])} "
        f"retx={connection['retransmits']} fast-retx={connection['fast_retx']} "
        f"sack={connection['sacked_bytes']} dup-ack={connection['dup_acks']}"
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
