"""A registry with nodes, a dashboard over it on a hand-moved clock, and treq's in-memory client."""

import json

from treq.testing import StubTreq
from twisted.internet.task import Clock

from pilotnet.dashboard.app import DashboardApp
from pilotnet.dashboard.history import History
from pilotnet.dashboard.service import Dashboard
from pilotnet.registry.server import RegistryServer
from tests.registry.fixtures import ADMIN_TOKEN, DrivenRegistry, identity

HOSTILE = '<img src=x onerror="document.title=1">'


class Polo:
    """A registry driven through its handlers, its dashboard, and a client for the routes."""

    def __init__(self, test, history=None):
        self.test = test
        self.driven = DrivenRegistry(offline_after=300.0)
        self.clock = Clock()
        self.clock.advance(self.driven.now)
        self.driven.registry.directory.started = self.driven.now - 3 * 86400 - 3600 * 2 - 60 * 5
        self.server = RegistryServer(self.driven.registry, self.clock)
        self.dashboard = Dashboard(self.server, self.clock, history or History())
        self.dashboard.startService()
        test.addCleanup(self.dashboard.stopService)
        self.app = DashboardApp(self.dashboard)
        self.resource = self.app.resource()
        self.client = StubTreq(self.resource)
        self.numbers = {}

    @property
    def directory(self):
        return self.driven.registry.directory

    def add(self, number, *, tags=(), public=True, hostname="", task_exec=False, polo=0,
            version="", online=True):
        """Register node ``number`` through the registry's handlers and commit."""
        who = identity(number)
        fields = {"version": version} if version else {}
        if hostname:
            fields["hostname"] = hostname
        node_id = self.driven.register(who, **fields)
        admin = {"node_id": node_id, "admin_token": ADMIN_TOKEN}
        if tags:
            self.driven.ok({"type": "set_tags", "tags": list(tags), **admin})
        self.driven.ok({"type": "set_visibility", "public": public, **admin})
        if task_exec:
            self.driven.ok({"type": "set_task_exec", "enabled": True, **admin})
        node = self.directory.nodes[node_id]
        node.polo_score = polo
        if not online:
            node.last_seen = self.clock.seconds() - 10 * self.driven.registry.stale_after
        self.numbers[number] = node_id
        self.commit()
        return node_id

    def trust(self, a, b):
        self.directory.consent(a, b)
        self.directory.consent(b, a)
        self.commit()

    def commit(self):
        self.server.commit()
        self.clock.advance(2)

    def get(self, path, **kwargs):
        """``(response, body bytes)`` of GET ``path``."""
        return self.request("GET", path, **kwargs)

    def request(self, method, path, **kwargs):
        response = self.test.successResultOf(
            self.client.request(method, "http://polo.test" + path, **kwargs))
        body = response.content()
        self.client.flush()
        return response, self.test.successResultOf(body)

    def json(self, path):
        response, body = self.get(path)
        self.test.assertEqual(response.code, 200, body)
        return json.loads(body)

    def html(self, path):
        response, body = self.get(path)
        self.test.assertEqual(response.code, 200, body)
        return body.decode("utf-8")


def header(response, name):
    values = response.headers.getRawHeaders(name)
    return values[-1] if values else None
