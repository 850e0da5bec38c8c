"""twistd plugin for the gateway (``twistd -n pilot-gateway``); cheap to import."""

from twisted.application.service import ServiceMaker

pilotGateway = ServiceMaker(
    "pilot-gateway", "pilotnet.gateway.tap",
    "Pilot Protocol gateway: local IPs for agents, TCP bridged to Pilot streams (needs root).",
    "pilot-gateway")
