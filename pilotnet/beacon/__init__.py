"""The beacon: endpoint discovery, hole-punch coordination and relay over UDP.

:mod:`pilotnet.beacon.core` decides what to send for each datagram (no
sockets, no clock); :mod:`pilotnet.beacon.server` is the Twisted shell.  The
message codecs are :mod:`pilotnet.wire.beacon`.
"""
