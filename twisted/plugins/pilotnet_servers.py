"""twistd plugins for the pilotnet servers.

Cheap to import on purpose: each ServiceMaker names its module, which twistd
imports only when that command runs.
"""

from twisted.application.service import ServiceMaker

pilotRegistry = ServiceMaker(
    "pilot-registry", "pilotnet.registry_tap",
    "Pilot Protocol registry: node directory, trust and handshake relay (TCP).",
    "pilot-registry")

pilotBeacon = ServiceMaker(
    "pilot-beacon", "pilotnet.beacon.tap",
    "Pilot Protocol beacon: endpoint discovery, hole punching and relay (UDP).",
    "pilot-beacon")

pilotRendezvous = ServiceMaker(
    "pilot-rendezvous", "pilotnet.rendezvous_tap",
    "Pilot Protocol rendezvous: registry and beacon in one process.",
    "pilot-rendezvous")
