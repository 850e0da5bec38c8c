"""The signed challenge strings of registry requests (reference §1.5).

A node proves a request is its own by signing an ASCII challenge built from
the request's fields with its Ed25519 key; the signature travels base64 in the
``signature`` field.  The one table below is used by the registry to verify
and by clients to sign, so the two can never drift apart.
"""

from pilotnet.crypto.identity import verify_b64


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
    """``request`` with its ``signature`` added, as a client sends it."""
    signed = dict(request)
    signed["signature"] = identity.sign_b64(challenge(request["type"], request))
    return signed


def signature_valid(public_key_b64, message_type, fields, signature_b64):
    return verify_b64(public_key_b64, challenge(message_type, fields), signature_b64)
