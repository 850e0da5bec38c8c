"""``host:port`` text: the one parser and the one formatter.

Options, configuration and registry messages name real (IP) endpoints as
``host:port``, with an IPv6 host in brackets (``[::1]:9000``), the form Go's
``net.JoinHostPort`` writes and ``net.SplitHostPort`` reads; the registry and
beacon messages a Go peer sends use it too.  The rules, the same everywhere:

* the port follows the last ``:``; it is 1 to 5 ASCII digits with a value of
  1-65535 (0 too where the caller allows it, for "any free port");
* a host containing ``:`` must be in brackets, so ``::1:80`` is refused
  rather than guessed at, and brackets hold a host that is not empty;
* the host is not empty unless the caller allows it (``:9000``: all interfaces).

The host is returned as written (without brackets): whether it must be an IP
literal or may be a name is the caller's decision.
"""

from pilotnet.errors import DecodeError

MAX_PORT = 0xFFFF
_DIGITS = frozenset("0123456789")
_HINT = "write host:port, with an IPv6 address in brackets: 192.0.2.1:9000, [2001:db8::1]:9000"


def split_host_port(text: str, *, what: str = "address", allow_empty_host: bool = False,
                    allow_port_zero: bool = False) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` or ``[v6]:port``; :class:`DecodeError` naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise DecodeError(f"invalid {what}: expected host:port text, not {type(text).__name__}", hint=_HINT)
    host, colon, port_text = text.rpartition(":")
    if not colon:
        raise _refused(text, what, "no port")
    if host.startswith("["):
        if len(host) < 3 or not host.endswith("]") or "[" in host[1:-1] or "]" in host[1:-1]:
            raise _refused(text, what, "unbalanced brackets")
        host = host[1:-1]
    elif ":" in host:
        raise _refused(text, what, "an IPv6 address must be in brackets")
    elif "[" in host or "]" in host:
        raise _refused(text, what, "unbalanced brackets")
    if not host and not allow_empty_host:
        raise _refused(text, what, "no host")
    # int() alone would also take "+1", " 1", "1_0" and non-ASCII digits.
    if not 0 < len(port_text) <= 5 or not set(port_text) <= _DIGITS:
        raise _refused(text, what, "the port must be a decimal number")
    port = int(port_text)
    lowest = 0 if allow_port_zero else 1
    if not lowest <= port <= MAX_PORT:
        raise _refused(text, what, f"the port must be {lowest}-{MAX_PORT}")
    return host, port


def _refused(text: str, what: str, reason: str) -> DecodeError:
    return DecodeError(f"invalid {what} {text[:300]!r}: expected host:port ({reason})", hint=_HINT)


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with ``host`` in brackets when it contains ``:`` (an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
