"""The daemon's built-in services on well-known ports (data exchange, event stream, tasks).

Each is an :class:`~pilotnet.interfaces.IStreamOwner` bound to its port
inside the daemon, like the echo service: peers reach it over ordinary streams.
"""
