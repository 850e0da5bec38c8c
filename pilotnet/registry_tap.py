"""``twistd pilot-registry``: the registry on its own, with the dashboard when ``--http`` is given.

    twistd -n pilot-registry --registry tcp:9000:interface=127.0.0.1 --store registry.db

A composition root above both rooms: the registry does not know the
dashboard, the dashboard reads the registry.
"""

from pilotnet.plugin_options import PortsFile
from pilotnet.registry.tap import RegistryOptions, freeze_loaded_state, make_registry_service

Options = RegistryOptions


def makeService(options):
    from twisted.internet import reactor
    ports = PortsFile(options["ports-file"], ["registry"] + (["http"] if options["http"] else []))
    service = make_registry_service(reactor, options, ports.reporter("registry"))
    if options["http"]:
        # Imported only when asked for: a registry without --http never loads Klein.
        from pilotnet.dashboard.service import serve_dashboard
        serve_dashboard(reactor, service, options, ports.reporter("http"))
    freeze_loaded_state(service)
    return service
