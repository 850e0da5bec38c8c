"""``set-webhook`` and ``clear-webhook``: where the daemon POSTs its events (docs/webhooks.md)."""

from pilotnet.cli.output import Output


def _remember_webhook(context, url):
    """Keep the URL in config.json too, so the next ``daemon start`` delivers to it."""
    config = context.home.load_config()
    if url:
        config["webhook"] = url
    else:
        config.pop("webhook", None)
    context.home.save_config(config)


def _data(state):
    return {"webhook": state.get("url", ""), **{key: value for key, value in state.items() if key != "url"}}


async def set_webhook(context, args):
    url = args.positional[0]
    state = await (await context.daemon()).set_webhook(url)
    _remember_webhook(context, url)
    return Output(_data(state), f"webhook set: {url}\nsigning secret: {state.get('secret_file')}")


async def clear_webhook(context, args):
    state = await (await context.daemon()).clear_webhook()
    _remember_webhook(context, "")
    return Output(_data(state), "webhook cleared")
