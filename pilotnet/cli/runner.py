"""Running one ``pilotctl`` command line: parse, dispatch, print the result or the error, pick the exit code.

Exit codes: 0 success, 1 any error, 2 the usage screen (no command, or an
unknown one in human mode).  No traceback ever reaches the user: an
unexpected exception becomes an ``internal`` error like any other.

:func:`start` does the work as far as it goes without the reactor: the usage
screen, argument errors and the commands that need no daemon (``context``,
``config``, ``init``) finish there, before Twisted is even imported, which
takes most of a command's start-up time.  :func:`pilotnet.cli.main.main` runs the reactor only
when :func:`start` hands back a Deferred.  :func:`run` always returns a
Deferred of the exit code, so tests drive commands in-process on trial's
reactor.
"""

import os
import sys

from pilotnet.cli import catalogue
from pilotnet.cli.args import Args, invalid, split_globals
from pilotnet.cli.context import Context
from pilotnet.cli.home import Home
from pilotnet.cli.output import Exit, Output, envelope, error_document, go_json, human_error
from pilotnet.errors import INTERNAL, PilotError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def run(argv, environ=None, stdout=None, stderr=None, stdin=None, reactor=None, clock=None):
    """Run one command line; a Deferred firing with the exit code."""
    from twisted.internet.defer import Deferred, succeed

    outcome = start(argv, environ, stdout, stderr, stdin, reactor, clock)
    return outcome if isinstance(outcome, Deferred) else succeed(outcome)


def start(argv, environ=None, stdout=None, stderr=None, stdin=None, reactor=None, clock=None):
    """Run one command line: the exit code if it finished at once, else a Deferred firing with it."""
    json_mode, home, argv = split_globals(list(argv))
    context = Context(
        json_mode, Home(home, os.environ if environ is None else environ),
        stdout or sys.stdout, stderr or sys.stderr, stdin or sys.stdin, reactor, clock,
    )
    if argv[:1] in (["-h"], ["--help"]):
        argv = ["help"] + argv[1:]
    command, rest = catalogue.find(argv)
    if command is None:
        if argv and argv[0] in catalogue.GROUPS:
            if len(argv) > 1 and set(argv[1:]) <= {"--help", "-h"}:
                return _report_result(context, Output(catalogue.group_help_document(argv[0]),
                                                      catalogue.group_help_text(argv[0])))
            return _report_error(context, invalid(catalogue.group_usage(argv[0])))
        if argv and json_mode:
            return _report_error(context, invalid(
                f"unknown command: {argv[0]}", hint="run 'pilotctl context' for the full command list"
            ))
        if argv:
            context.stderr.write(f"unknown command: {argv[0]}\n\n")
        context.stderr.write(catalogue.usage_screen() + "\n")
        return EXIT_USAGE
    try:
        args = Args(rest)
        if args.has("help") or "-h" in args.positional:
            return _report_result(context, Output(catalogue.help_document(command), catalogue.help_text(command)))
        command.check(args)
        result = command.load()(context, args)
        if not hasattr(result, "__await__"):  # (not inspect.isawaitable: inspect is slow to import)
            context.close()
            return _report_result(context, result)
    except Exception as error:
        context.close()
        return _report_exception(context, error)
    from twisted.internet.defer import ensureDeferred, maybeDeferred

    running = ensureDeferred(result)
    running.addCallback(lambda result: _report_result(context, result))
    running.addErrback(lambda failure: _report_exception(context, failure.value))

    def disconnect(code):
        closing = maybeDeferred(context.close)
        return closing.addBoth(lambda _: code)

    return running.addCallback(disconnect)


def _report_result(context, result):
    data, text = (result.data, result.text) if isinstance(result, Output) else (result, None)
    if data is None and text is None:
        return EXIT_OK
    if context.json:
        context.stdout.write(envelope(data) + "\n")
    elif text is None:
        context.stdout.write(go_json(data, indent=2) + "\n")
    elif text:
        context.stdout.write(text + "\n")
    context.stdout.flush()
    return EXIT_OK


def _report_exception(context, error):
    if isinstance(error, Exit):
        return error.code
    if isinstance(error, PilotError):
        return _report_error(context, error)
    return _report_error(context, PilotError(f"internal error: {error}", code=INTERNAL))


def _report_error(context, error):
    context.stderr.write((error_document(error) if context.json else human_error(error)) + "\n")
    context.stderr.flush()
    return EXIT_ERROR
