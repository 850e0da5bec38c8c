"""The gateway: local IP addresses for agents, so unmodified programs reach them over Pilot.

Each mapping gives an agent a loopback alias (``10.4.0.1`` ...) with a TCP
listener per configured port; every TCP connection is bridged to a Pilot
stream to the same port of the agent.  A DNS front answers
``<agent>.pilot`` with the agent's mapped address.  See docs/gateway.md.
"""
