"""``info``, ``health``, ``peers``, ``connections``, ``disconnect``: what the daemon knows right now."""

from pilotnet.cli.args import parse_number
from pilotnet.cli.output import Output, format_bytes, format_uptime, table
from pilotnet.control import schema

MAX_ROWS = 50


def info(context, args):
    info = context.ask(schema.INFO)["info"]
    text = _info_text(info)
    gateway = _gateway_status(context)
    if gateway is not None:
        from pilotnet.cli.commands.gateway import gateway_text

        info["gateway"] = gateway
        text += "\n" + gateway_text(gateway)
    return Output(info, text)


def _gateway_status(context):
    """The running gateway's status, asked only when its control socket exists (most nodes run none)."""
    from pilotnet.gateway.paths import control_path

    import os

    path = control_path(context.home.socket_path())
    if not os.path.exists(path):
        return None
    from pilotnet.cli.commands.gateway import status_now

    return status_now(path)


def health(context, args):
    """The reference's ``health``: is the daemon up, and its headline counters."""
    info = context.ask(schema.INFO)["info"]
    data = {
        "status": "ok", "uptime_seconds": info.get("uptime_secs", 0), "connections": info.get("connections", 0),
        "peers": info.get("peers", 0), "bytes_sent": info.get("bytes_sent", 0), "bytes_recv": info.get("bytes_recv", 0),
    }
    return Output(data, "\n".join([
        "Daemon Health",
        "  Status:      ok",
        f"  Uptime:      {format_uptime(data['uptime_seconds'])}",
        f"  Connections: {data['connections']}",
        f"  Peers:       {data['peers']}",
        f"  Traffic:     {format_bytes(data['bytes_sent'])} sent / {format_bytes(data['bytes_recv'])} recv",
    ]))


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
    networks = info.get("networks") or []
    if networks:
        refused = info.get("trust") or {}
        lines += ["", "Networks:", _indent(table(["ID", "ADDRESS", "MEMBERS", "ALLOWED PORTS"], [
            [n.get("network_id"), n.get("address"), n.get("members"),
             ",".join(map(str, n.get("allowed_ports") or [])) or "all"] for n in networks[:MAX_ROWS]])),
            f"  Refused by allowed ports: {refused.get('port_refused_syns', 0)} SYNs, "
            f"{refused.get('port_refused_datagrams', 0)} datagrams"]
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


def peers(context, args):
    peers = context.ask(schema.PEERS)["peers"]
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


def connections(context, args):
    connections = context.ask(schema.CONNECTIONS)["connections"]
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


def disconnect(context, args):
    conn_id = parse_number(args.positional[0], "connection ID", 2**32 - 1)
    context.ask(schema.CLOSE, conn_id=conn_id)
    return {"conn_id": conn_id}
