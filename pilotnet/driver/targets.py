"""What a user types for "where to": a target (address, node ID or hostname) and a port.

The SDK and ``pilotctl`` accept the same three spellings of a target, so the
rules live here once:

* ``N:XXXX.XXXX.XXXX`` is a virtual address, taken as is;
* a bare decimal number is a node ID on network 0;
* anything else is a hostname, which only the daemon can resolve (through the
  registry, subject to visibility and trust).

Parsing is pure; resolving a hostname is the caller's I/O
(:meth:`pilotnet.driver.client.Daemon.resolve`).
"""

from pilotnet.errors import INVALID_ARGUMENT, NOT_FOUND, DecodeError, PilotError
from pilotnet.wire.address import MAX_NODE, MAX_PORT, Addr

_DECIMAL = frozenset("0123456789")


def parse_target(target):
    """The :class:`Addr` ``target`` spells, or ``None`` when it is a hostname to resolve.

    Raises :class:`PilotError` (``invalid_argument``) for text that looks like
    an address or a node ID but is not a valid one, and for an empty target.
    """
    if isinstance(target, Addr):
        return target
    if not isinstance(target, str):
        raise PilotError(
            f"invalid target: expected an address, node ID or hostname, got {type(target).__name__}",
            code=INVALID_ARGUMENT,
        )
    if not target:
        raise PilotError("invalid target: empty address or hostname", code=INVALID_ARGUMENT)
    if ":" in target:
        try:
            return Addr.parse(target)
        except DecodeError as error:
            raise PilotError(
                error.message, code=INVALID_ARGUMENT, hint="addresses look like 0:0000.0000.0005"
            ) from None
    if set(target) <= _DECIMAL:
        node = int(target)
        if node > MAX_NODE:
            raise PilotError(
                f"invalid node ID {target}: must be at most {MAX_NODE}", code=INVALID_ARGUMENT
            )
        return Addr(0, node)
    return None


def private_name_hint(hostname):
    """What works when ``hostname`` may belong to a private node, whose name resolves only after trust.

    A handshake by that name works: the registry relays it to the holder
    without resolving the name for us (:meth:`Daemon.handshake`).
    """
    return (f'if "{hostname}" is a private node, its name resolves only once you trust each other: '
            f'ask it with pilotctl handshake {hostname} "reason" (the registry relays it to that name)')


def unresolvable(hostname):
    """The error for a hostname the daemon could not resolve (the reference's wording, and what works)."""
    return PilotError(
        f'cannot resolve "{hostname}" — is the hostname correct and is there mutual trust?',
        code=NOT_FOUND, hint=private_name_hint(hostname),
    )


def parse_port(value, what="port"):
    """A virtual port from an int or its decimal text; ``invalid_argument`` otherwise."""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int):
        port = value
    elif isinstance(value, str) and value and set(value) <= _DECIMAL:
        port = int(value)
    else:
        raise PilotError(
            f'invalid {what} "{value}": must be a number from 0 to {MAX_PORT}', code=INVALID_ARGUMENT
        )
    if not 0 <= port <= MAX_PORT:
        raise PilotError(
            f'invalid {what} "{value}": must be a number from 0 to {MAX_PORT}', code=INVALID_ARGUMENT
        )
    return port
