"""Where a gateway's control socket is: importable without Twisted or ``pathlib``, so ``pilotctl info`` stays quick."""

import os


def control_path(daemon_socket: str) -> str:
    """Where the gateway of the daemon at ``daemon_socket`` listens: beside it, ``pilot.sock`` -> ``pilot-gateway.sock``.

    Beside the daemon's socket rather than in the home directory because the
    two are reached the same way (``$PILOT_SOCKET`` and friends) and a home
    path may be too long for a Unix socket (108 bytes).  A plain string:
    ``pathlib`` imports ``re``, which costs ``pilotctl info`` about 7 ms.
    """
    directory, name = os.path.split(os.fspath(daemon_socket))
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    return os.path.join(directory, f"{stem}-gateway.sock")
