"""Requests ``pilotctl`` sends straight to the registry, with no daemon: one blocking request, one reply.

``lookup``, ``register``, ``rotate-key`` and ``deregister`` work whether or not
a daemon runs, as the reference's do.  The registry's framing is the sans-IO
:mod:`pilotnet.registry.framing`; requests that must prove the node's key are
signed by :func:`signed`, which defers to :mod:`pilotnet.registry.challenges`
(the table the registry verifies with), so a change to what a challenge covers
is made there once.
"""

from __future__ import annotations

import socket
import time

from pilotnet.crypto.identity import Identity
from pilotnet.errors import CONNECTION_FAILED, INTERNAL, INVALID_ARGUMENT, DecodeError, PilotError
from pilotnet.registry import challenges
from pilotnet.registry.framing import FrameDecoder, decode_body, encode_message

TIMEOUT = 10.0
_READ_SIZE = 64 * 1024


def signed(identity: Identity, request: dict) -> dict:
    """``request`` stamped and signed by ``identity`` over all its values, as the daemon signs.

    A ``register`` is signed too: it proves possession of the key it
    registers.  The stamp is this machine's clock (the registry accepts
    :data:`~pilotnet.registry.freshness.DEFAULT_WINDOW` seconds of skew).
    """
    return challenges.sign_fresh_request(identity, request, time.time())


def _host_port(address: str) -> tuple[str, int]:
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise PilotError(f"invalid registry address {address!r}: expected host:port", code=INVALID_ARGUMENT,
                         hint="set PILOT_REGISTRY or run: pilotctl init --registry host:port")
    return host.strip("[]"), int(port)


def request(address: str, message: dict, timeout: float = TIMEOUT) -> dict:
    """The registry's reply to ``message``; its refusal as a :class:`PilotError` with the registry's code."""
    unreachable = PilotError(f"cannot reach registry at {address}", code=CONNECTION_FAILED,
                             hint=f"check that the registry is running at {address}, or set PILOT_REGISTRY")
    try:
        connection = socket.create_connection(_host_port(address), timeout=timeout)
    except OSError:
        raise unreachable from None
    decoder = FrameDecoder()
    try:
        with connection:
            connection.sendall(encode_message(message))
            while True:
                data = connection.recv(_READ_SIZE)
                if not data:
                    raise unreachable
                bodies = decoder.feed(data)
                if bodies:
                    reply = decode_body(bodies[0])
                    break
    except socket.timeout:
        raise PilotError(f"the registry at {address} did not answer within {timeout:g}s", code=CONNECTION_FAILED,
                         hint="retry; check the registry's load") from None
    except OSError:
        raise unreachable from None
    except DecodeError as error:
        raise PilotError(f"bad reply from the registry: {error.message}", code=INTERNAL) from None
    if reply.get("type") == "error" or isinstance(reply.get("error"), str):
        raise PilotError(f"registry: {reply.get('error')}", code=str(reply.get("code") or CONNECTION_FAILED))
    return reply
