"""Running one ``pilotctl`` command line: parse, dispatch, print the result or the error, pick the exit code.

Exit codes: 0 success, 1 any error, 2 the usage screen (no command, or an
unknown one in human mode).  No traceback ever reaches the user: an
unexpected exception becomes an ``internal`` error like any other.

:func:`run` does the work and returns a Deferred of the exit code, so tests
drive commands in-process on trial's reactor; :func:`pilotnet.cli.main.main`
runs the reactor only when a command actually needs it.
"""

import os
import sys

from twisted.internet.defer import maybeDeferred, succeed

from pilotnet.cli import catalogue
from pilotnet.cli.args import Args, invalid, split_globals
from pilotnet.cli.context import Context
from pilotnet.cli.home import Home
from pilotnet.cli.output import Exit, Output, envelope, error_document, go_json, human_error
from pilotnet.errors import INTERNAL, PilotError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def run(argv, environ=None, stdout=None, stderr=None, stdin=None, reactor=None, clock=None):
    """Run one command line; a Deferred firing with the exit code."""
    json_mode, home, argv = split_globals(list(argv))
    context = Context(
        json_mode, Home(home, os.environ if environ is None else environ),
        stdout or sys.stdout, stderr or sys.stderr, stdin or sys.stdin, reactor, clock,
    )
    command, rest = catalogue.find(argv)
    if command is None:
        if argv and argv[0] in catalogue.GROUPS:
            return succeed(_report_error(context, invalid(catalogue.group_usage(argv[0]))))
        if argv and json_mode:
            return succeed(_report_error(context, invalid(
                f"unknown command: {argv[0]}", hint="run 'pilotctl context' for the full command list"
            )))
        if argv:
            context.stderr.write(f"unknown command: {argv[0]}\n\n")
        context.stderr.write(catalogue.usage_screen() + "\n")
        return succeed(EXIT_USAGE)
    try:
        args = Args(rest)
        command.check(args)
        handler = command.load()
    except PilotError as error:
        return succeed(_report_error(context, error))
    running = maybeDeferred(handler, context, args)
    running.addCallback(lambda result: _report_result(context, result))
    running.addErrback(lambda failure: _report_failure(context, failure))

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


def _report_failure(context, failure):
    if failure.check(Exit):
        return failure.value.code
    if failure.check(PilotError):
        return _report_error(context, failure.value)
    return _report_error(context, PilotError(f"internal error: {failure.getErrorMessage()}", code=INTERNAL))


def _report_error(context, error):
    context.stderr.write((error_document(error) if context.json else human_error(error)) + "\n")
    context.stderr.flush()
    return EXIT_ERROR
