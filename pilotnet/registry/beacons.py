"""Beacons announce themselves to the registry; daemons ask it for the list.

Soft local state: an announcement lives ``BEACON_TTL`` seconds, is not
stored or replicated, and a standby takes announcements too.
"""

from pilotnet.registry import requests as fields
from pilotnet.registry.dispatch import Route
from pilotnet.registry.nodes import MAX_ADDR_LENGTH, port_of
from pilotnet.registry.requests import RequestError

BEACON_TTL = 60.0


class BeaconHandlers:
    """beacon_register and beacon_list."""

    def __init__(self) -> None:
        # beacon ID -> (its "host:port", when the announcement expires)
        self.beacons: dict = {}

    def routes(self):
        return [
            Route("beacon_register", self._beacon_register, on_standby=True),
            Route("beacon_list", self._beacon_list, on_standby=True),
        ]

    def expire(self, now: float) -> None:
        for beacon_id in [b for b, (_, expires) in self.beacons.items() if expires <= now]:
            del self.beacons[beacon_id]

    def _beacon_register(self, request, peer, now):
        beacon_id = fields.uint(request, "beacon_id")
        if beacon_id == 0:
            raise RequestError("beacon_id required")
        addr = fields.text(request, "addr", max_length=MAX_ADDR_LENGTH)
        if port_of(addr) is None:
            raise RequestError(f'invalid addr "{addr}": expected host:port')
        self.beacons[beacon_id] = (addr, now + BEACON_TTL)
        return {"type": "beacon_register_ok", "beacon_id": beacon_id}

    def _beacon_list(self, request, peer, now):
        beacons = [{"id": beacon_id, "addr": addr}
                   for beacon_id, (addr, expires) in sorted(self.beacons.items())
                   if expires > now]
        return {"type": "beacon_list_ok", "beacons": beacons}
