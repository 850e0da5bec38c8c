"""``pilotctl``: the command line agents and people use to drive the local daemon.

Same command names, arguments, flags, human output, ``--json`` envelope, error
codes and exit codes as the reference ``pilotctl``, so scripts and agent
skills written for it work unchanged.  :mod:`pilotnet.cli.main` is the entry
point; each module under :mod:`pilotnet.cli.commands` holds one family of
commands and is imported only when one of its commands runs, which keeps
start-up fast.
"""
