"""``init``, ``config``, ``context``, ``version``, ``help``, ``completion``: no daemon needed."""

import pilotnet
from pilotnet.cli import catalogue
from pilotnet.cli.args import invalid
from pilotnet.cli.home import DEFAULT_BEACON, DEFAULT_REGISTRY
from pilotnet.cli.output import Output

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


def version(context, args):
    return Output({"version": pilotnet.__version__}, f"pilotctl {pilotnet.__version__} (pilotnet)")


def help(context, args):
    if not args.positional:
        return Output({"usage": catalogue.usage_screen()}, catalogue.usage_screen())
    if args.positional[1:] == [] and args.positional[0] in catalogue.GROUPS:
        group = args.positional[0]
        return Output(catalogue.group_help_document(group), catalogue.group_help_text(group))
    command, rest = catalogue.find(args.positional)
    if command is None or rest:
        raise invalid(f"no command {' '.join(args.positional)!r}", hint="pilotctl help lists them all")
    return Output(catalogue.help_document(command), catalogue.help_text(command))


def completion(context, args):
    from pilotnet.cli import completion as scripts

    shell = args.positional[0]
    if shell not in scripts.SHELLS:
        raise invalid(f'no completion for "{shell}": expected {" or ".join(scripts.SHELLS)}')
    script = scripts.SHELLS[shell]()
    return Output({"shell": shell, "script": script}, script.rstrip("\n"))
