"""The control socket's schema, shared by the daemon, the Twisted SDK and ``pilotctl``.

* :mod:`pilotnet.control.schema`: every command, its arguments and answer,
  and how each value is encoded, as plain data (no Twisted);
* :mod:`pilotnet.control.commands`: the ``twisted.protocols.amp`` Command
  classes the daemon and the SDK use, generated from the schema;
* :mod:`pilotnet.control.client`: a small blocking client for one command at
  a time, also built on the schema, which ``pilotctl`` uses so that a command
  answers without importing Twisted.

Because both ends are generated from the one schema they cannot drift apart.
This package imports nothing above :mod:`pilotnet.wire` and
:mod:`pilotnet.errors`.
"""
