"""The Python SDK: talk to the local pilot daemon.

For plain scripts::

    from pilotnet import driver
    daemon = driver.connect()            # the blocking API (pilotnet.driver.blocking)
    stream = daemon.dial("agent-b", 1000)

Twisted programs use :mod:`pilotnet.driver.client`.  :mod:`pilotnet.driver.commands`
holds the AMP commands, the one definition the daemon's control server and
every client share.
"""


def __getattr__(name):
    # Imported on first use: the daemon imports pilotnet.driver.commands and
    # must not pull in the blocking client, which runs a reactor thread.
    if name == "connect":
        from pilotnet.driver.blocking import connect
        return connect
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
