"""The nameserver's record protocol on port 53: one text request per stream, one text reply.

Requests (command and record type case-insensitive, fields separated by
whitespace, an optional line end)::

    QUERY A <name>                                  ->  A <name> <address>
    QUERY N <name>                                  ->  N <name> <network_id>
    QUERY S <network_id> <port>                     ->  S <name> <address> <port>  (one line each; "S" if none)
    REGISTER A <name> <address>                     ->  OK
    REGISTER N <name> <network_id>                  ->  OK
    REGISTER S <name> <address> <network_id> <port> ->  OK

and ``ERR <message>`` for anything refused.  Replies carry no trailing line
end, as the reference writes them.  Pure codec: :func:`parse_request` raises
:class:`DecodeError` (whose message is the reference's wording, sent back
after ``ERR``) and nothing else.
"""

from collections.abc import Iterable
from typing import NamedTuple, Union

from pilotnet.errors import DecodeError
from pilotnet.wire.address import MAX_NETWORK, MAX_PORT, Addr

#: A request is one line; anything longer is refused before it is parsed.
MAX_REQUEST = 1024
#: Record names: DNS-style labels, at most a DNS name's length.
MAX_NAME = 253
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_DECIMAL = frozenset("0123456789")


class Query(NamedTuple):
    kind: str  # "A", "N" or "S"
    name: str = ""
    network: int = 0
    port: int = 0


class Register(NamedTuple):
    kind: str
    name: str
    address: Addr = Addr(0, 0)
    network: int = 0
    port: int = 0


Request = Union[Query, Register]


def check_name(name: str) -> str:
    """A record name: 1 to 253 of letters, digits, ``-``, ``.`` and ``_``."""
    if not name or len(name) > MAX_NAME or not set(name) <= _NAME_CHARACTERS:
        raise DecodeError(f'invalid name "{name[:MAX_NAME]}"')
    return name


def _number(text: str, limit: int, what: str) -> int:
    if not text or len(text) > 5 or not set(text) <= _DECIMAL or int(text) > limit:
        raise DecodeError(f'invalid {what} "{text[:16]}"')
    return int(text)


def _address(text: str) -> Addr:
    try:
        return Addr.parse(text)
    except DecodeError:
        raise DecodeError(f'invalid address "{text[:32]}"') from None


def parse_request(data: bytes) -> Request:
    """The request in ``data`` (its first line); :class:`DecodeError` with the reply's message."""
    if len(data) > MAX_REQUEST:
        raise DecodeError(f"request too long (at most {MAX_REQUEST} bytes)")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("request is not ASCII text") from None
    fields = text.split("\n", 1)[0].split()
    if len(fields) < 2:
        raise DecodeError("too few fields")
    command, kind, arguments = fields[0].upper(), fields[1].upper(), fields[2:]
    if command not in ("QUERY", "REGISTER"):
        raise DecodeError(f"unknown command: {fields[0][:16]}")
    if kind not in ("A", "N", "S"):
        raise DecodeError(f"unknown record type: {fields[1][:16]}")
    needed = {("QUERY", "A"): 1, ("QUERY", "N"): 1, ("QUERY", "S"): 2,
              ("REGISTER", "A"): 2, ("REGISTER", "N"): 2, ("REGISTER", "S"): 4}[command, kind]
    if len(arguments) < needed:
        raise DecodeError("too few fields")
    if command == "QUERY":
        if kind == "S":
            return Query("S", network=_number(arguments[0], MAX_NETWORK, "network id"),
                         port=_number(arguments[1], MAX_PORT, "port"))
        return Query(kind, name=check_name(arguments[0]))
    name = check_name(arguments[0])
    if kind == "A":
        return Register("A", name, address=_address(arguments[1]))
    if kind == "N":
        return Register("N", name, network=_number(arguments[1], MAX_NETWORK, "network id"))
    return Register("S", name, address=_address(arguments[1]),
                    network=_number(arguments[2], MAX_NETWORK, "network id"),
                    port=_number(arguments[3], MAX_PORT, "port"))


def encode_request(request: Request) -> bytes:
    """The text of ``request`` (what a client sends), with a line end."""
    if isinstance(request, Query):
        fields = ["QUERY", request.kind] + (
            [str(request.network), str(request.port)] if request.kind == "S" else [request.name])
    elif request.kind == "A":
        fields = ["REGISTER", "A", request.name, str(request.address)]
    elif request.kind == "N":
        fields = ["REGISTER", "N", request.name, str(request.network)]
    else:
        fields = ["REGISTER", "S", request.name, str(request.address), str(request.network), str(request.port)]
    return (" ".join(fields) + "\n").encode("ascii")


def a_reply(name: str, address: Addr) -> bytes:
    return f"A {name} {address}".encode("ascii")


def n_reply(name: str, network: int) -> bytes:
    return f"N {name} {network}".encode("ascii")


def s_reply(services: Iterable[tuple[str, Addr, int]]) -> bytes:
    """``(name, address, port)`` rows as ``S`` lines; a lone ``S`` when there are none."""
    lines = [f"S {name} {address} {port}" for name, address, port in services]
    return ("\n".join(lines) if lines else "S").encode("ascii")


OK = b"OK"


def error_reply(message: str) -> bytes:
    return b"ERR " + message.encode("ascii", "replace")
