"""Where a gateway's control socket is: importable without Twisted, so ``pilotctl info`` stays quick."""

from pathlib import Path


def control_path(daemon_socket) -> Path:
    """Where the gateway of the daemon at ``daemon_socket`` listens: beside it, ``pilot.sock`` -> ``pilot-gateway.sock``.

    Beside the daemon's socket rather than in the home directory because the
    two are reached the same way (``$PILOT_SOCKET`` and friends) and a home
    path may be too long for a Unix socket (108 bytes).
    """
    path = Path(daemon_socket)
    return path.with_name(f"{path.stem}-gateway.sock")
