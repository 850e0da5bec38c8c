"""The stream transport: a sans-IO engine for reliable, ordered, congestion-controlled
streams carried in Pilot packets (protocol 0x01).  See docs/stream-transport.md.
"""

from pilotnet.transport.config import DEFAULT_CONFIG, StreamConfig
from pilotnet.transport.connection import StreamConnection
from pilotnet.transport.errors import (
    ConnectionClosed, ConnectionRefused, ConnectionReset, DialTimeout, PeerUnresponsive,
    RetransmissionTimeout, StreamError,
)
from pilotnet.transport.events import StreamEvent
from pilotnet.transport.states import State
from pilotnet.transport.table import ConnectionTable, Routed

__all__ = [
    "DEFAULT_CONFIG", "StreamConfig", "StreamConnection", "StreamEvent", "State", "ConnectionTable", "Routed",
    "StreamError", "DialTimeout", "ConnectionRefused", "ConnectionReset", "RetransmissionTimeout",
    "PeerUnresponsive", "ConnectionClosed",
]
