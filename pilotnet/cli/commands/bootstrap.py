"""``init``, ``config``, ``context``: settings and self-description, no daemon needed."""

from pilotnet.cli import catalogue
from pilotnet.cli.args import invalid
from pilotnet.cli.home import DEFAULT_BEACON, DEFAULT_REGISTRY

INIT_KEYS = ("registry", "beacon", "hostname", "socket")


def init(context, args):
    home = context.home
    config = home.load_config()
    for key in INIT_KEYS:
        if args.has(key):
            config[key] = args.text(key)
    home.save_config(config)
    return {
        "config_path": str(home.config_path),
        "registry": config.get("registry", DEFAULT_REGISTRY),
        "beacon": config.get("beacon", DEFAULT_BEACON),
        "socket": home.socket_path(),
        "hostname": config.get("hostname", ""),
    }


def config(context, args):
    home = context.home
    settings = home.load_config()
    if args.has("set"):
        key, equals, value = args.text("set").partition("=")
        if not equals or not key:
            raise invalid(f'invalid --set "{args.text("set")}": expected key=value')
        settings[key] = value
        home.save_config(settings)
        return {"key": key, "value": value}
    shown = dict(settings)
    shown.setdefault("registry", home.registry())
    shown.setdefault("socket", home.socket_path())
    shown.update(config_path=str(home.config_path), pid_file=str(home.pid_path), log_file=str(home.log_path))
    return shown


def context(context, args):
    return catalogue.context_document()
