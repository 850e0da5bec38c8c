"""The registry's admin token, and admin requests sent straight to the registry.

Admin commands (``audit``, ``provision``, ``idp``, ``network create``...) need
no daemon: they talk to the registry directly (:mod:`pilotnet.cli.registry_direct`)
with the token from ``--admin-token``, else ``$PILOT_ADMIN_TOKEN``, else
``admin_token`` in config.json.  Without one they fail before sending anything,
with the reference's ``auth_required``.
"""

from pilotnet.errors import AUTH_REQUIRED, PilotError

ENVIRONMENT_VARIABLE = "PILOT_ADMIN_TOKEN"


def admin_token(context, args) -> str:
    """The admin token; ``auth_required`` with the reference's hint when there is none."""
    token = args.text("admin-token") or context.home.setting("admin_token", ENVIRONMENT_VARIABLE, "")
    if not token or token == "true":
        raise PilotError("this command needs the registry's admin token", code=AUTH_REQUIRED,
                         hint=f"pass --admin-token, set {ENVIRONMENT_VARIABLE}, or admin_token in config.json")
    return token


def ask(context, args, message: dict) -> dict:
    """The registry's reply to the admin request ``message``."""
    from pilotnet.cli import registry_direct

    return registry_direct.request(context.home.registry(), {**message, "admin_token": admin_token(context, args)})
