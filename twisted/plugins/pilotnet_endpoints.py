"""``pilot:`` endpoint strings for every Twisted program (see :mod:`pilotnet.endpoints`).

Cheap to import on purpose: Twisted imports every plugin file whenever a
program parses an endpoint string, so the parsers here load pilotnet only
when a ``pilot:`` string is actually parsed.
"""

from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor, IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class PilotServerParser:
    prefix = "pilot"

    def parseStreamServer(self, reactor, *args, **kwargs):
        from pilotnet.endpoints import parse_server

        return parse_server(reactor, *args, **kwargs)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class PilotClientParser:
    prefix = "pilot"

    def parseStreamClient(self, reactor, *args, **kwargs):
        from pilotnet.endpoints import parse_client

        return parse_client(reactor, *args, **kwargs)


pilotServerParser = PilotServerParser()
pilotClientParser = PilotClientParser()
