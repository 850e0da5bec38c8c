"""A lossy network hop as a process of its own, for the stream benchmark's loss case.

    python -m benchmarks.lossy_relay --loss 0.02

Listens on a free UDP port of 127.0.0.1 and prints it; then reads lines
from standard input: ``host port``, the daemon's tunnel address, to which it
forwards datagrams both ways between that daemon and whoever speaks to the
relay, dropping ``--loss`` of them (``tests.integration.lossy_relay``,
seeded); ``counts``, to which it answers with a JSON line of what it has
forwarded and dropped.  It runs apart from the benchmark's own process so
that forwarding costs the benchmark's clients nothing.
"""

import argparse
import json
import sys
import threading

from twisted.internet import reactor

from tests.integration.lossy_relay import LossyRelay, listen_relay


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    relay = LossyRelay(None, loss=args.loss, seed=args.seed)
    port = listen_relay(reactor, relay)
    print(port.getHost().port, flush=True)

    def obey(line):
        if line.strip() == "counts":
            counts = {"forwarded": relay.forwarded, "dropped": relay.dropped, "send_failures": relay.send_failures}
            print(json.dumps(counts), flush=True)
            return
        host, number = line.split()
        relay.target = (host, int(number))

    def read_commands():
        # A daemon thread, so a relay told to stop does not wait for input.
        for line in sys.stdin:
            reactor.callFromThread(obey, line)

    threading.Thread(target=read_commands, daemon=True).start()
    reactor.run()


if __name__ == "__main__":
    main()
