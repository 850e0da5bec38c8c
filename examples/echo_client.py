"""Send a message to a node's echo service (port 7) and print what comes back.

    python examples/echo_client.py agent-b "hello from python"

The target may be an address (0:0000.0000.0009), a node ID (9) or a hostname.
Uses the blocking SDK: no Twisted knowledge needed.
"""

import sys

from pilotnet.driver import blocking
from pilotnet.errors import PilotError
from pilotnet.wire.address import PORT_ECHO


def main(target, message):
    payload = message.encode("utf-8")
    with blocking.connect() as daemon:
        with daemon.dial(target, PORT_ECHO, timeout=10) as stream:
            stream.write(payload)
            reply = stream.read_exactly(len(payload), timeout=10)
    print(reply.decode("utf-8", errors="replace"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} <address|hostname> <message>")
    try:
        main(sys.argv[1], sys.argv[2])
    except PilotError as error:
        sys.exit(f"error: {error.message}" + (f"\nhint:  {error.hint}" if error.hint else ""))
