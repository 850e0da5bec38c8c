"""Memory of the registry's cache of verified heartbeat signatures, per heartbeating node.

    python -m benchmarks.heartbeat_proofs [--nodes 100000] [--json]

A Go daemon's heartbeat carries the same legacy signature every time, so the
registry remembers, per node, what last verified and skips the repeat
(``Registry._signature_ok``).  This measures, in one process and with
``tracemalloc``, what that memory costs for ``--nodes`` nodes, both ways:
the three strings in a tuple in a dict keyed by node ID (how it was kept
before) and the 16-byte digest on the node's record (how it is kept now, plus
the 8 bytes of the record's slot).  The signatures are real ones; Go
heartbeats carry no ``listen_addr``.
"""

import argparse
import json
import sys
import tracemalloc

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import heartbeat_proof, sign_request
from pilotnet.registry.directory import Node

# What the record's heartbeat_proof slot adds to every node (a pointer).
SLOT_BYTES = 8


def signed_heartbeats(count: int) -> list[tuple[Node, str]]:
    identity = Identity.generate()
    return [(Node(id=node_id, public_key=identity.public_key_b64),
             sign_request(identity, {"type": "heartbeat", "node_id": node_id})["signature"])
            for node_id in range(1, count + 1)]


def allocated(fill) -> int:
    """Bytes still allocated after ``fill()`` (what it keeps), measured by tracemalloc."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = fill()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return after - before


def measure(count: int) -> dict:
    beats = signed_heartbeats(count)

    def tuples_in_a_dict():
        # The signature text arrives as a new string with each request: copy it as the decoder would.
        return {node.id: (node.public_key, "", "".join(signature)) for node, signature in beats}

    def digests_on_the_records():
        for node, signature in beats:
            node.heartbeat_proof = heartbeat_proof(node.public_key, "", signature)
        return None

    before = allocated(tuples_in_a_dict) / count
    after = allocated(digests_on_the_records) / count + SLOT_BYTES
    return {"nodes": count, "tuples_in_a_dict_bytes_per_node": round(before, 1),
            "digest_on_the_record_bytes_per_node": round(after, 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    result = measure(options.nodes)
    if options.json:
        json.dump(result, sys.stdout)
        print()
    else:
        print(f"{result['nodes']} heartbeating nodes: tuples in a dict "
              f"{result['tuples_in_a_dict_bytes_per_node']} B/node, digest on the record "
              f"{result['digest_on_the_record_bytes_per_node']} B/node")


if __name__ == "__main__":
    main()
