"""``twistd pilot-rendezvous``: registry and beacon in one process, one reactor.

    twistd -n pilot-rendezvous --registry tcp:9000:interface=127.0.0.1 \\
        --beacon 127.0.0.1:9001 --store registry.db --http tcp:8080:interface=127.0.0.1

The beacon announces itself to the registry beside it directly (no socket),
so other beacons using the same registry find it as a peer.
"""

from twisted.application.service import MultiService
from twisted.internet.defer import maybeDeferred

from pilotnet.beacon.tap import BeaconOptions, make_beacon_service
from pilotnet.plugin_options import PortsFile
from pilotnet.registry.tap import RegistryOptions, freeze_loaded_state, make_registry_service

LOCAL_PEER = ("127.0.0.1", 0)


class Options(RegistryOptions, BeaconOptions):
    """Every registry and beacon option (twistd collects them along the class tree)."""


def makeService(options):
    from twisted.internet import reactor
    names = ["registry", "beacon"] + (["http"] if options["http"] else [])
    ports = PortsFile(options["ports-file"], names)
    service = MultiService()
    registry = make_registry_service(reactor, options, ports.reporter("registry"))
    if options["http"]:
        from pilotnet.dashboard.service import serve_dashboard
        serve_dashboard(reactor, registry, options, ports.reporter("http"))
    registry.setServiceParent(service)
    server = registry.registry_server

    def ask_registry(request):
        return maybeDeferred(server.registry.handle, request, LOCAL_PEER, reactor.seconds())

    make_beacon_service(reactor, options, ask_registry,
                        ports.reporter("beacon")).setServiceParent(service)
    freeze_loaded_state(registry)
    return service
