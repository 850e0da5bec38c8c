"""The Python SDK: talk to the local pilot daemon.

:mod:`pilotnet.driver.commands` holds the AMP commands, the one definition the
daemon's control server and every client share.
"""
