"""Sans-IO cryptography: identities, key agreement, tunnel and channel sealing.

``cryptography`` does AES-GCM and HKDF (its AES-GCM is several times faster
than PyNaCl's per packet); PyNaCl does Ed25519 and X25519.
"""
