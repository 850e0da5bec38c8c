"""NAT flavours and lossy links, applied with iptables inside the lab's namespaces.

Each router gets its NAT rules replaced wholesale and its conntrack table
flushed, so scenarios can share one topology without inheriting mappings.
Every router also drops NEW inbound connections on its WAN side: without that
rule a peer's early punch creates an unreplied conntrack entry and the host's
own outgoing flow is then mapped to another port, so Linux routers would never
let two punches meet (see the lab notes).
"""

# Port-restricted cone: endpoint-independent, port-preserving mapping; inbound only
# from where the host already sent.
CONE = "cone"
# A fresh random port for every destination.
SYMMETRIC = "symmetric"
# A static mapping of the host's tunnel port: anyone may send to it.
FULL_CONE = "full-cone"


def configure(topology, router, flavour, tunnel_ports=None):
    """Give ``router`` the NAT ``flavour`` (``tunnel_ports``: host -> UDP port, for full cone)."""
    wan_ip = topology.router_ip(router)
    rules = [("-t", "nat", "-F"), ("-F",),
             ("-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")]
    if flavour == FULL_CONE:
        for host, port in (tunnel_ports or {}).items():
            host_ip = topology.host_ip(host)
            rules.append(("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-p", "udp", "-s", host_ip,
                          "--sport", str(port), "-j", "SNAT", "--to-source", f"{wan_ip}:{port}"))
            rules.append(("-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "udp", "--dport", str(port),
                          "-j", "DNAT", "--to-destination", f"{host_ip}:{port}"))
        rules.append(("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"))
    elif flavour == SYMMETRIC:
        rules.append(("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", "--random"))
    elif flavour == CONE:
        rules.append(("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"))
    else:
        raise ValueError(f"unknown NAT flavour {flavour!r}")
    for rule in rules:
        topology.exec(router, "iptables", "-w", *rule)
    flush_mappings(topology, router)


def flush_mappings(topology, router):
    """Forget every NAT mapping ``router`` holds (as a rebooted or busy router would)."""
    topology.exec(router, "conntrack", "-F", check=False)


def set_loss(topology, host, probability):
    """Drop ``probability`` of the UDP datagrams arriving at ``host`` (0 clears it)."""
    topology.exec(host, "iptables", "-w", "-F")
    if probability:
        topology.exec(host, "iptables", "-w", "-A", "INPUT", "-p", "udp", "-m", "statistic",
                      "--mode", "random", "--probability", str(probability), "-j", "DROP")
