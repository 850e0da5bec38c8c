"""The ``pilotctl`` console script.

Kept tiny on purpose: it imports nothing at module level, so it can tell
Python that pyOpenSSL is absent before Twisted looks for it.  The reactor
imports pyOpenSSL (about 0.1 s) to offer TLS, which pilotctl never uses.
``pilotctl context``, the usage screen and argument errors never import
Twisted at all (see :func:`pilotnet.cli.runner.start`).
"""

import sys


def main(argv=None):
    sys.modules.setdefault("OpenSSL", None)
    from pilotnet.cli.runner import EXIT_INTERRUPTED, start

    code = start(sys.argv[1:] if argv is None else argv)
    if not isinstance(code, int):
        code = _wait(code, EXIT_INTERRUPTED)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.exit(code)


def _wait(finished, interrupted):
    """The exit code ``finished`` fires with, running the reactor unless it already has fired."""
    outcome = []
    finished.addBoth(outcome.append)
    if not outcome:
        from twisted.internet import reactor

        finished.addBoth(lambda _: reactor.running and reactor.stop())
        reactor.run()
    return outcome[0] if outcome and isinstance(outcome[0], int) else interrupted


if __name__ == "__main__":
    main()
