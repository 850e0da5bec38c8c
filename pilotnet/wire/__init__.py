"""Sans-IO codecs for everything Pilot Protocol puts on a wire.

Nothing here does I/O, reads a clock or imports ``twisted.internet``: functions
take bytes and return values (or the reverse), and malformed input raises
:class:`pilotnet.errors.DecodeError` and nothing else.
"""
