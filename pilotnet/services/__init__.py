"""The daemon's built-in services on well-known ports (data exchange, event stream, tasks).

Each is an :class:`~pilotnet.daemon.streams.IStreamOwner` bound to its port
inside the daemon, like the echo service: peers reach it over ordinary streams.
"""
