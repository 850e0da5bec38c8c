"""The gateway's control socket: map, unmap and status on a running gateway.

AMP over a Unix socket beside the daemon's (``<home>/pilot-gateway.sock`` by
default, mode 0600), the same way the daemon's control socket works, with the same
error transport (:class:`~pilotnet.control.schema.CommandFailed` keeps the
stable code and hint).  ``pilotctl gateway map|unmap|list`` and ``pilotctl
info`` use it, so they act on the running gateway (the reference's build a
new, empty gateway in the pilotctl process instead).
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.protocols import amp

from pilotnet.control import schema
from pilotnet.control.commands import CommandFailed, command_class
from pilotnet.driver.failures import translate_failure
from pilotnet.errors import NOT_RUNNING, PilotError

CONNECT_TIMEOUT = 5.0


Map = command_class(schema.GATEWAY_MAP)
Unmap = command_class(schema.GATEWAY_UNMAP)
Status = command_class(schema.GATEWAY_STATUS)


def _refusing(call):
    """Run a gateway call; a PilotError travels back as CommandFailed with its code."""
    async def run():
        try:
            return await call
        except PilotError as error:
            raise CommandFailed.from_error(error) from None

    return Deferred.fromCoroutine(run())


class ControlServer(amp.AMP):
    def __init__(self, gateway):
        super().__init__()
        self.gateway = gateway

    @Map.responder
    def map(self, target, ip=None):
        return _refusing(self._map(target, ip))

    async def _map(self, target, ip):
        return {"mapping": self.gateway.describe(await self.gateway.map(target, ip))}

    @Unmap.responder
    def unmap(self, ip):
        return _refusing(self._unmap(ip))

    async def _unmap(self, ip):
        return {"mapping": (await self.gateway.unmap(ip)).document()}

    @Status.responder
    def status(self):
        return {"status": self.gateway.status()}


def gateway_not_running() -> PilotError:
    return PilotError("gateway is not running", code=NOT_RUNNING,
                      hint="start it with: sudo pilotctl gateway start [--ports 80,...] <address|hostname>")


async def call(reactor, path, command, **arguments):
    """Call ``command`` on the gateway listening at ``path``; ``not_running`` when nothing answers."""
    from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol

    try:
        protocol = await connectProtocol(UNIXClientEndpoint(reactor, str(path), timeout=CONNECT_TIMEOUT), amp.AMP())
    except (ConnectError, OSError):
        raise gateway_not_running() from None
    try:
        return await protocol.callRemote(command, **arguments).addErrback(translate_failure)
    finally:
        protocol.transport.loseConnection()
