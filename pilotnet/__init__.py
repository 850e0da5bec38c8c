"""pilotnet: Pilot Protocol, the overlay network for AI agents, on Twisted."""

__version__ = "0.1.0"
