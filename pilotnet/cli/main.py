"""The ``pilotctl`` console script.

Kept tiny on purpose: it imports nothing at module level, so it can tell
Python that pyOpenSSL is absent before Twisted looks for it.  The reactor
imports pyOpenSSL (about 0.1 s) to offer TLS, which pilotctl never uses.
"""

import sys


def main(argv=None):
    sys.modules.setdefault("OpenSSL", None)
    from pilotnet.cli.runner import EXIT_INTERRUPTED, run

    outcome = []
    finished = run(sys.argv[1:] if argv is None else argv)
    finished.addBoth(outcome.append)
    if not outcome:
        from twisted.internet import reactor

        finished.addBoth(lambda _: reactor.running and reactor.stop())
        reactor.run()
    code = outcome[0] if outcome and isinstance(outcome[0], int) else EXIT_INTERRUPTED
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.exit(code)


if __name__ == "__main__":
    main()
