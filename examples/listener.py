"""Serve a port: answer every stream with an upper-cased copy of what it sent.

    python examples/listener.py 5000
    pilotctl send <this node> 5000 --data "hello"      # from another node: prints HELLO

One stream at a time, with the blocking SDK; Ctrl-C stops it.  Streams that
stay silent for 30 seconds are dropped so one idle peer cannot block the rest.
"""

import sys

from pilotnet.driver import blocking
from pilotnet.errors import PilotError

IDLE_TIMEOUT = 30


def serve(port):
    with blocking.connect() as daemon, daemon.listen(port) as listener:
        print(f"listening on port {listener.port} of {daemon.info()['address']}", flush=True)
        for stream in listener:
            with stream:
                try:
                    request = stream.read(timeout=IDLE_TIMEOUT)
                    if request:
                        stream.write(request.upper())
                except PilotError as error:
                    print(f"{stream.remote_address}:{stream.remote_port}: {error.message}", file=sys.stderr)
                    continue
            print(f"{stream.remote_address}:{stream.remote_port} sent {len(request)} bytes", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit(f"usage: {sys.argv[0]} <port>")
    try:
        serve(int(sys.argv[1]))
    except PilotError as error:
        sys.exit(f"error: {error.message}" + (f"\nhint:  {error.hint}" if error.hint else ""))
    except KeyboardInterrupt:
        pass
