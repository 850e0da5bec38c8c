"""The registry: node directory, trust, relayed handshakes and networks over TCP.

The wire protocol is the Go reference's length-prefixed JSON (see
:mod:`pilotnet.registry.framing`), so Go daemons register here unchanged.  The
request handling (:mod:`pilotnet.registry.handlers`) is a plain object fed a
request and ``now``; :mod:`pilotnet.registry.server` is the Twisted shell and
:mod:`pilotnet.registry.store` keeps acknowledged changes in SQLite, or
:mod:`pilotnet.registry.pg_store` in a PostgreSQL database several registries
share (both :class:`pilotnet.interfaces.IRegistryStore`; docs/scale-out.md).
"""
