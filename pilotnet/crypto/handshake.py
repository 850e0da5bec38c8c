"""Signature checks for the trust handshake messages of :mod:`pilotnet.wire.handshake`.

The codec stays free of key material; checking who signed a decoded message
is the crypto room's job.
"""

from pilotnet.crypto.identity import verify
from pilotnet.wire.handshake import HandshakeMessage, challenge


def is_signed_by(message: HandshakeMessage, receiver_node: int, public_key: bytes) -> bool:
    """Is ``message`` signed, for ``receiver_node``, by the holder of ``public_key``?

    Pass the key the registry has for ``message.node_id`` when known, else
    ``message.public_key``; a message without a signature is never signed.
    """
    return bool(message.signature) and verify(
        public_key, challenge(message.node_id, receiver_node), message.signature)
