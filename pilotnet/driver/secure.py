"""End-to-end encryption over a stream: the port-443 secure channel for SDK users.

::

    stream = await daemon.dial("agent-b", 443)
    channel = await secure_client(stream)
    await channel.write(b"secret")
    print(await channel.read())

    # on the other side, for each accepted stream:
    channel = await secure_server(stream)

Tunnels are already encrypted hop by hop between daemons; this channel is
for applications that want the two *programs* to share a key no daemon
holds.  The cryptography (ephemeral X25519, HKDF ``pilot-secure-v1``,
AES-256-GCM records) is :mod:`pilotnet.crypto.secure_channel`, byte-compatible
with the Go reference's ``secure.Dial`` and ``secure.NewServer``; this module
only moves its bytes over a :class:`pilotnet.driver.client.Stream`.
"""

from pilotnet.crypto.secure_channel import ESTABLISHED, SecureChannel
from pilotnet.errors import CONNECTION_FAILED, PilotError


class SecureStream:
    """A stream whose writes are sealed records and whose reads are opened plaintext."""

    def __init__(self, stream, channel):
        self.stream = stream
        self.channel = channel
        self._plaintexts = []

    async def write(self, data):
        await self.stream.write(self.channel.seal(data))

    async def read(self):
        """The next plaintext record; ``b""`` once the stream ended cleanly."""
        while not self._plaintexts:
            data = await self.stream.read()
            if not data:
                if not self.channel.at_boundary:
                    raise PilotError("secure channel ended inside a record", code=CONNECTION_FAILED)
                return b""
            received = self.channel.receive(data)
            if received.to_send:
                await self.stream.write(received.to_send)
            self._plaintexts.extend(bytes(p) for p in received.plaintexts)
        return self._plaintexts.pop(0)

    async def close(self):
        await self.stream.close()


async def _handshake(stream, channel):
    opening = channel.opening_bytes()
    if opening:
        await stream.write(opening)
    secure = SecureStream(stream, channel)
    while channel.state != ESTABLISHED:
        data = await stream.read()
        if not data:
            raise PilotError("the peer closed the stream during the secure handshake", code=CONNECTION_FAILED)
        received = channel.receive(data)
        if received.to_send:
            await stream.write(received.to_send)
        secure._plaintexts.extend(bytes(p) for p in received.plaintexts)
    return secure


async def secure_client(stream):
    """Run the client side of the handshake on ``stream``; returns a :class:`SecureStream`."""
    return await _handshake(stream, SecureChannel.client())


async def secure_server(stream):
    """Run the server side of the handshake on ``stream``; returns a :class:`SecureStream`."""
    return await _handshake(stream, SecureChannel.server())
