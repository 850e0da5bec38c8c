"""The signed challenges of registry requests: the Go (legacy) form and our fresh form.

A node proves a request is its own by signing a challenge with its Ed25519
key; the signature travels base64 in the ``signature`` field.

* The **legacy form** (reference §1.5) is what Go clients sign: an ASCII
  string naming the message and the node (``set_visibility:<id>``), not the
  values it sets, with no time in it.  A captured signature therefore
  authorises the same message with any values, forever.  The registry takes it
  only where it cannot be captured or where a replay changes nothing (see
  :data:`pilotnet.registry.handlers.REPLAY_HARMLESS` and docs/security.md).
* The **fresh form** is what pilotnet clients sign: the request itself
  (every field but :data:`FRESH_FIELD`, keys sorted, as :func:`go_json`
  writes it) after :data:`FRESH_PREFIX`, with a ``timestamp`` (Unix seconds)
  and a random ``nonce`` among its fields; the signature travels in
  :data:`FRESH_FIELD`.  It covers every value the request sets, the registry
  checks the timestamp against its clock and remembers the nonce, so a
  capture can be replayed neither with other values, nor later, nor twice.

pilotnet clients send both: ``signature`` in the legacy form, so a Go
registry (which ignores fields it does not know) accepts the request, and
:data:`FRESH_FIELD`, which our registry checks instead whenever it is there.
A request without :data:`FRESH_FIELD` is judged as a legacy one.

The one table below is used by the registry to verify and by clients to sign,
so the two can never drift apart.
"""

import hashlib
import os

from pilotnet.crypto.identity import verify_b64
from pilotnet.registry.framing import go_json

#: Starts every fresh-form challenge, so it can never equal a legacy challenge
#: or anything else the node key signs (tunnel offers, handshake messages).
FRESH_PREFIX = b"pilotnet-registry-request-v1\n"
FRESH_FIELD = "request_signature"
NONCE_BYTES = 16


def _heartbeat(request):
    listen_addr = request.get("listen_addr")
    if listen_addr:
        return f"heartbeat:{request['node_id']}:{listen_addr}"
    return f"heartbeat:{request['node_id']}"


# message type -> (field naming the signer, challenge built from the request)
CHALLENGES = {
    "heartbeat": ("node_id", _heartbeat),
    "resolve": ("requester_id", lambda r: f"resolve:{r['requester_id']}:{r['node_id']}"),
    "report_trust": ("node_id", lambda r: f"report_trust:{r['node_id']}:{r['peer_id']}"),
    "revoke_trust": ("node_id", lambda r: f"revoke_trust:{r['node_id']}:{r['peer_id']}"),
    "set_visibility": ("node_id", lambda r: f"set_visibility:{r['node_id']}"),
    "set_task_exec": ("node_id", lambda r: f"set_task_exec:{r['node_id']}"),
    "set_hostname": ("node_id", lambda r: f"set_hostname:{r['node_id']}"),
    "set_tags": ("node_id", lambda r: f"set_tags:{r['node_id']}"),
    "deregister": ("node_id", lambda r: f"deregister:{r['node_id']}"),
    "poll_handshakes": ("node_id", lambda r: f"poll_handshakes:{r['node_id']}"),
    "request_handshake": ("from_node_id", lambda r: f"handshake:{r['from_node_id']}:{r['to_node_id']}"),
    # Ours (not the reference's): a request to a private node known only by its hostname.
    "request_handshake_by_name": ("from_node_id",
                                  lambda r: f"handshake_by_name:{r['from_node_id']}:{r['to_hostname']}"),
    "respond_handshake": ("node_id", lambda r: f"respond:{r['node_id']}:{r['peer_id']}"),
    "punch": ("requester_id", lambda r: f"punch:{r['node_a']}:{r['node_b']}"),
    "rotate_key": ("node_id", lambda r: f"rotate:{r['node_id']}"),
    "join_network": ("node_id", lambda r: f"join_network:{r['node_id']}:{r['network_id']}"),
    "leave_network": ("node_id", lambda r: f"leave_network:{r['node_id']}:{r['network_id']}"),
    "invite_to_network": ("inviter_id",
                          lambda r: f"invite:{r['inviter_id']}:{r['network_id']}:{r['target_node_id']}"),
    "poll_invites": ("node_id", lambda r: f"poll_invites:{r['node_id']}"),
    "respond_invite": ("node_id", lambda r: f"respond_invite:{r['node_id']}:{r['network_id']}"),
    "set_key_expiry": ("node_id", lambda r: f"set_key_expiry:{r['node_id']}"),
}


def challenge(message_type, fields):
    """The challenge string a request of ``message_type`` must be signed over.

    ``fields`` holds the request's values; the registry passes the parsed ones
    (ints, not whatever JSON number came in) so the text is what a Go client
    signs.
    """
    _, build = CHALLENGES[message_type]
    return build(fields)


def signer_field(message_type):
    return CHALLENGES[message_type][0]


def sign_request(identity, request):
    """``request`` with its legacy ``signature`` added, as a Go client sends it."""
    signed = dict(request)
    signed["signature"] = identity.sign_b64(challenge(request["type"], request))
    return signed


def signature_valid(public_key_b64, message_type, fields, signature_b64):
    return verify_b64(public_key_b64, challenge(message_type, fields), signature_b64)


def fresh_challenge(request):
    """The bytes a fresh-form request is signed over: the prefix and every other field."""
    unsigned = {key: value for key, value in request.items() if key != FRESH_FIELD}
    return FRESH_PREFIX + go_json(unsigned)


def sign_fresh_request(identity, request, now, nonce=None):
    """``request`` stamped with ``now`` and a random nonce, signed over all its values.

    What pilotnet clients send for every signed request (``register`` too:
    it proves possession of the key it registers).  The legacy ``signature``
    is added for the message types that have one, for Go registries.
    """
    stamped = dict(request)
    stamped["timestamp"] = int(now)
    stamped["nonce"] = nonce if nonce is not None else os.urandom(NONCE_BYTES).hex()
    if stamped["type"] in CHALLENGES:
        stamped["signature"] = identity.sign_b64(challenge(stamped["type"], stamped))
    stamped[FRESH_FIELD] = identity.sign_b64(fresh_challenge(stamped))
    return stamped


def fresh_signature_valid(public_key_b64, request):
    """Is ``request``'s :data:`FRESH_FIELD` a valid signature over all its other fields?"""
    signature = request.get(FRESH_FIELD)
    return isinstance(signature, str) and verify_b64(public_key_b64, fresh_challenge(request),
                                                     signature)


def heartbeat_proof(public_key_b64: str, listen_addr: str, signature_b64: str) -> bytes:
    """16 bytes that stand for a verified legacy heartbeat signature of ``public_key_b64``.

    A legacy heartbeat's challenge never changes for a node, so its
    signature repeats, and Ed25519 verification is deterministic: the
    registry keeps this digest of what verified (on the node's record, 49
    bytes instead of ~250 for the three strings in a dict) and skips the
    repeat.  BLAKE2b-128 is collision resistant, so no other signature, key
    or address has this digest; the lengths keep the parts apart.
    """
    text = f"{len(public_key_b64)}:{public_key_b64}{len(listen_addr)}:{listen_addr}{signature_b64}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
