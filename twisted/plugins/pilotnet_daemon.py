"""twistd plugin for the node daemon (``twistd -n pilot-daemon``); cheap to import."""

from twisted.application.service import ServiceMaker

pilotDaemon = ServiceMaker(
    "pilot-daemon", "pilotnet.daemon.tap",
    "Pilot Protocol node daemon: encrypted tunnels, streams, services and the local control socket.",
    "pilot-daemon")
