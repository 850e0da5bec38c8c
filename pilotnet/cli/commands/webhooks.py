"""``set-webhook`` and ``clear-webhook``: where the daemon POSTs its events (docs/webhooks.md).

As the reference's: the URL is kept in config.json (the next ``daemon start``
uses it) and applied to the running daemon if there is one.  A running
daemon checks the target fully (addresses, its allow-private option) and a
refused URL is not saved; without a daemon only the URL's shape is checked
here, and the daemon checks the rest when it starts.
"""

from pilotnet.cli.args import invalid
from pilotnet.cli.output import Output
from pilotnet.control import schema
from pilotnet.errors import NOT_RUNNING, PilotError
from pilotnet.webhooks.targets import TargetRefused, check_url


def _apply(context, spec, **arguments):
    """The daemon's webhook state after asking it ``spec``, or None when no daemon runs."""
    try:
        return context.ask(spec, **arguments)["result"]
    except PilotError as error:
        if error.code == NOT_RUNNING:
            return None
        raise


def _data(url, state):
    data = {"webhook": url, "applied": state is not None}
    if state is not None:
        data.update({key: value for key, value in state.items() if key != "url"})
    return data


def set_webhook(context, args):
    url = args.positional[0]
    try:
        check_url(url, allow_private=True)
    except TargetRefused as error:
        raise invalid(f"set-webhook: {error.message}",
                      hint=error.hint or "use an http:// or https:// URL of a host outside link-local and "
                                         "cloud metadata addresses (docs/webhooks.md)") from None
    state = _apply(context, schema.SET_WEBHOOK, url=url)
    context.home.remember("webhook", url)
    where = (f"applied to running daemon\nsigning secret: {state['secret_file']}" if state is not None
             else "will take effect on next daemon start")
    return Output(_data(url, state), f"webhook set: {url}\n{where}")


def clear_webhook(context, args):
    state = _apply(context, schema.CLEAR_WEBHOOK)
    context.home.remember("webhook", "")
    where = "applied to running daemon" if state is not None else "will take effect on next daemon start"
    return Output(_data("", state), f"webhook cleared\n{where}")
