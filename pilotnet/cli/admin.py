"""The registry's admin token, and admin requests sent straight to the registry.

Admin commands (``audit``, ``provision``, ``idp``...) need no daemon: they
talk to the registry directly (:mod:`pilotnet.cli.registry_direct`) with the
token from ``$PILOT_ADMIN_TOKEN`` or ``admin_token`` in config.json, as the
reference's do.
"""

from pilotnet.errors import AUTH_REQUIRED, PilotError

ENVIRONMENT_VARIABLE = "PILOT_ADMIN_TOKEN"


def admin_token(context) -> str:
    """The admin token; ``auth_required`` with the reference's hint when there is none."""
    token = context.home.setting("admin_token", ENVIRONMENT_VARIABLE, "")
    if not token:
        raise PilotError("this command needs the registry's admin token", code=AUTH_REQUIRED,
                         hint=f"set {ENVIRONMENT_VARIABLE} env var or admin_token in {context.home.config_path}")
    return token


def ask(context, message: dict) -> dict:
    """The registry's reply to the admin request ``message``."""
    from pilotnet.cli import registry_direct

    return registry_direct.request(context.home.registry(), {**message, "admin_token": admin_token(context)})
