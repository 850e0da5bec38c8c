"""Identities and a registry driven directly (no sockets) for the registry tests."""

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import sign_fresh_request, sign_request
from pilotnet.registry.handlers import Registry
from pilotnet.ratelimit import RateLimiter

ADMIN_TOKEN = "admin-secret"
PEER = ("198.51.100.7", 40000)


def identity(number):
    """A deterministic identity per small number, so failures are reproducible."""
    return Identity.from_seed(bytes([number]) * 32)


class DrivenRegistry:
    """A :class:`Registry` with a hand-moved clock and shortcuts for common requests."""

    def __init__(self, **options):
        options.setdefault("admin_token", ADMIN_TOKEN)
        options.setdefault("register_limiter", RateLimiter(burst=1000, window=60.0))
        self.registry = Registry(**options)
        self.now = 1_700_000_000.0

    def send(self, request, peer=PEER, over_tls=False):
        return self.registry.handle(request, peer, self.now, over_tls=over_tls)

    def signed(self, who, request, peer=PEER):
        """Signed as pilotnet clients sign: fresh form, stamped with this registry's clock."""
        return self.send(sign_fresh_request(who, request, self.now), peer)

    def signed_legacy(self, who, request, peer=PEER, over_tls=False):
        """Signed as Go clients sign (the legacy challenge)."""
        return self.send(sign_request(who, request), peer, over_tls)

    def ok(self, request, peer=PEER, signer=None):
        reply = self.signed(signer, request, peer) if signer else self.send(request, peer)
        assert reply["type"] == request["type"] + "_ok", reply
        return reply

    def register(self, who, peer=PEER, **fields):
        request = {"type": "register", "public_key": who.public_key_b64,
                   "listen_addr": "0.0.0.0:4000", **fields}
        return self.ok(request, peer)["node_id"]

    def error(self, request, peer=PEER, signer=None):
        reply = self.signed(signer, request, peer) if signer else self.send(request, peer)
        assert reply["type"] == "error", reply
        return reply["error"]
