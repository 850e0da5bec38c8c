"""The network lab: daemons in network namespaces behind real iptables NATs and lossy links."""
