"""Fetch a page from an agent over Pilot with treq: ``http://<agent>/`` names the agent, not a DNS host.

    python examples/httpclient.py http://agent-alpha/
    python examples/httpclient.py http://agent-alpha.pilot:8080/api/status --socket /tmp/pilot.sock

The host is the agent's hostname, node ID or ``<hostname>.pilot``; ``pilot://`` works as a scheme
too.  The stream is end-to-end encrypted by Pilot, so there is no https form.
"""

import argparse
import sys

import treq
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.internet.task import react

from pilotnet.endpoints import PilotConnectError, pilot_agent


async def main(reactor, url, socket_path):
    try:
        response = await treq.get(url, agent=pilot_agent(reactor, socket_path, timeout=30))
    except PilotConnectError as error:
        sys.exit(f"error: {error.message} [{error.code}]" + (f"\nhint:  {error.hint}" if error.hint else ""))
    except ConnectError as error:
        sys.exit(f"error: {error}")
    print(f"HTTP {response.code} {response.phrase.decode('latin-1')}", file=sys.stderr)
    sys.stdout.buffer.write(await response.content())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="HTTP GET over Pilot")
    parser.add_argument("url", help="http://<agent>[:port]/path")
    parser.add_argument("--socket", default=None, help="the daemon's control socket [$PILOT_SOCKET or ~/.pilot/pilot.sock]")
    options = parser.parse_args()
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, options.url, options.socket)))
