"""The node daemon: tunnels, paths, streams, services and the local control socket.

``twistd -n pilot-daemon`` builds a :class:`pilotnet.daemon.node.NodeService`
from :mod:`pilotnet.daemon.tap`.  The pieces, each small and testable alone:

- :mod:`~pilotnet.daemon.tunnel`: the UDP socket, key exchange, sealing, paths;
- :mod:`~pilotnet.daemon.beacon_link`: endpoint discovery, punching, relay;
- :mod:`~pilotnet.daemon.registry_link`: registration, heartbeats, lookups;
- :mod:`~pilotnet.daemon.streams`: ports, listeners and stream connections;
- :mod:`~pilotnet.daemon.control`: the AMP server ``pilotctl`` and the SDK talk to.
"""
