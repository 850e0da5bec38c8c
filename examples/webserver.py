"""A Klein web app on Pilot port 80: other agents fetch it over the overlay, people through the gateway.

    python examples/webserver.py                    # port 80 of the local daemon
    python examples/webserver.py --port 8080 --socket /tmp/pilot.sock

Then, from another agent: ``python examples/httpclient.py http://<this-hostname>/``;
or from an ordinary program on a machine running the gateway
(``sudo pilotctl gateway start --ports 80 <this-hostname>``): ``curl http://10.4.0.1/``.
The app is an ordinary Klein app: only the endpoint string (``pilot:80``) says Pilot.
"""

import argparse
import json

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import react
from twisted.web.server import Site

app = Klein()


@app.route("/")
def index(request):
    request.setHeader("content-type", "text/html; charset=utf-8")
    caller = request.getClientAddress()
    return f"<h1>Hello from an agent</h1><p>You are {caller.host}, port {caller.port}.</p>"


@app.route("/api/status")
def status(request):
    request.setHeader("content-type", "application/json")
    return json.dumps({"status": "ok", "served_over": "pilot"})


def endpoint_string(port, socket_path):
    escaped = socket_path.replace("\\", "\\\\").replace(":", "\\:") if socket_path else None
    return f"pilot:{port}" + (f":socket={escaped}" if escaped else "")


async def main(reactor, port, socket_path):
    listening = await serverFromString(reactor, endpoint_string(port, socket_path)).listen(Site(app.resource()))
    host = listening.getHost()
    print(f"serving on {host.host} port {host.port} (Ctrl-C to stop)", flush=True)
    await Deferred()  # until the process is stopped


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A Klein app on a Pilot port")
    parser.add_argument("--port", type=int, default=80, help="Pilot port to listen on [80]")
    parser.add_argument("--socket", default=None, help="the daemon's control socket [$PILOT_SOCKET or ~/.pilot/pilot.sock]")
    options = parser.parse_args()
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, options.port, options.socket)))
