"""The Jinja2 environment and static files, found in a checkout or an installed wheel.

The templates live in the top-level ``templates/`` directory of the checkout;
a wheel carries the same files as ``pilotnet/dashboard/templates/`` (see the
``package_dir`` mapping in setup.cfg).  Autoescaping is on for every template,
whatever its extension: tags, hostnames and versions come from nodes.
"""

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}


def template_directory():
    """The installed template directory, else the checkout's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent.parent / "templates"):
        if (candidate / "base.html").is_file():
            return candidate
    raise FileNotFoundError("pilotnet dashboard templates not found (broken installation?)")


def make_environment(directory=None):
    environment = Environment(
        loader=FileSystemLoader(str(directory or template_directory())),
        autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["abbreviate"] = abbreviate
    return environment


def load_static(directory=None):
    """``{name: (bytes, content type)}`` of the static files, read once at start."""
    static = Path(directory or template_directory()) / "static"
    return {path.name: (path.read_bytes(), STATIC_TYPES[path.suffix])
            for path in sorted(static.iterdir()) if path.suffix in STATIC_TYPES}


def abbreviate(count):
    """``1234`` -> ``1.2K`` (the reference's badge and card format)."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= limit:
            return f"{count / limit:.1f}{suffix}"
    return str(count)
