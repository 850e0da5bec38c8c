"""Naming rules for hostnames, tags and network names (reference §1.11)."""

import re

from pilotnet.registry.requests import RequestError

MAX_HOSTNAME = 63
MAX_TAG = 32
MAX_TAGS = 10
RESERVED_HOSTNAMES = frozenset({"localhost", "backbone", "broadcast"})
RESERVED_NETWORK_NAMES = frozenset({"backbone"})

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_TAG = re.compile(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?")


def check_hostname(hostname):
    """Raise :class:`RequestError` unless ``hostname`` may be attached to a node.

    The empty string is valid: it clears the hostname.
    """
    if hostname == "":
        return
    if len(hostname) > MAX_HOSTNAME:
        raise RequestError(f"hostname too long (max {MAX_HOSTNAME} chars)")
    if not _LABEL.fullmatch(hostname):
        raise RequestError(
            "hostname must be lowercase alphanumeric with hyphens, start/end with alphanumeric")
    if hostname in RESERVED_HOSTNAMES:
        raise RequestError(f'hostname "{hostname}" is reserved')


def normalize_tags(tags):
    """The tag list to store: ``#`` prefixes stripped, duplicates dropped, each checked."""
    result = []
    for raw in tags:
        tag = raw[1:] if raw.startswith("#") else raw
        if not tag:
            raise RequestError("empty tag not allowed")
        if len(tag) > MAX_TAG:
            raise RequestError(f"tag too long (max {MAX_TAG} chars)")
        if not _TAG.fullmatch(tag):
            raise RequestError(
                f'invalid tag "{tag}": must be lowercase alphanumeric with hyphens, '
                "start/end with alphanumeric")
        if tag not in result:
            result.append(tag)
    if len(result) > MAX_TAGS:
        raise RequestError(f"too many tags (max {MAX_TAGS})")
    return result


def check_network_name(name):
    if not name:
        raise RequestError("network name required")
    if len(name) > MAX_HOSTNAME or not _LABEL.fullmatch(name):
        raise RequestError(
            "invalid network name: must be lowercase alphanumeric with hyphens, "
            f"start/end with alphanumeric, at most {MAX_HOSTNAME} chars")
    if name in RESERVED_NETWORK_NAMES:
        raise RequestError(f'network name "{name}" is reserved')
