"""Every dashboard route through treq's in-memory client, every directory query combination."""

import itertools
import json
import re
from urllib.parse import urlencode

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import TestCase

from pilotnet.dashboard.app import SECURITY_HEADERS
from pilotnet.dashboard.query import PAGE_SIZE, SORTS
from tests.dashboard.fixtures import HOSTILE, Polo, header
from tests.registry.fixtures import PEER, identity

ROUTES = ["/", "/fragment/overview", "/fragment/directory", "/fragment/graph",
          "/static/dashboard.css", "/static/dashboard.js", "/api/stats", "/api/stats?summary=1",
          "/api/nodes", "/healthz", "/metrics", "/nope", "/api/nodes?sort=sideways"]
ROUTES += [f"/api/badge/{name}" for name in ("nodes", "trust", "requests", "tags", "task-executors")]


def _populated(test):
    """60 nodes: tags, visibility, executors, scores and online status all varied."""
    polo = Polo(test)
    for n in range(1, 61):
        tags = [("gpu" if n % 3 == 0 else "cpu"), f"team-{n % 4}"] + (["ml"] if n % 5 == 0 else [])
        polo.add(n, tags=tags, public=n % 2 == 0, hostname=f"agent-{n}", task_exec=n % 7 == 0,
                 polo=(n * 37) % 120 - 40, online=n % 6 != 0, version="1.9.0" if n % 2 else "")
    for a, b in ((1, 2), (1, 3), (2, 3), (10, 20), (1, 40)):
        polo.trust(polo.numbers[a], polo.numbers[b])
    return polo


def _expected(nodes, tag, online, tasks, sort):
    """The directory query computed the obvious way, as an oracle."""
    text = tag.lstrip("#").lower()
    chosen = [n for n in nodes
              if (not text or any(text in t for t in n["tags"]))
              and (not online or n["online"]) and (not tasks or n["task_exec"])]
    keys = {"address": lambda n: n["address"],
            "polo-desc": lambda n: (-n["polo_score"], n["address"]),
            "polo-asc": lambda n: (n["polo_score"], n["address"]),
            "trust-desc": lambda n: (-n["trust_links"], n["address"]),
            "status": lambda n: (not n["online"], n["address"])}
    return [n["address"] for n in sorted(chosen, key=keys[sort])]


class DirectoryQueryTests(TestCase):
    def setUp(self):
        self.polo = _populated(self)
        self.everyone = self.polo.json("/api/stats")["nodes"]

    def test_every_filter_and_sort_combination_api_and_html(self):
        combinations = itertools.product(["", "gpu", "#GPU", "TEAM-1", "m", "absent"],
                                         [False, True], [False, True], SORTS)
        for tag, online, tasks, sort in combinations:
            expected = _expected(self.everyone, tag, online, tasks, sort)
            pages = max(1, -(-len(expected) // PAGE_SIZE))
            for page in range(1, pages + 1):
                query = urlencode({"tag": tag, "online": "1" if online else "",
                                   "tasks": "on" if tasks else "", "sort": sort, "page": page})
                got = self.polo.json(f"/api/nodes?{query}")
                want = expected[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
                self.assertEqual([n["address"] for n in got["nodes"]], want, query)
                self.assertEqual((got["total"], got["page"], got["pages"]),
                                 (len(expected), page, pages), query)
                html = self.polo.html(f"/fragment/directory?{query}")
                self.assertEqual(re.findall(r'<tr class="node" data-address="([^"]+)"', html),
                                 want, query)

    def test_a_page_past_the_end_shows_the_last(self):
        got = self.polo.json("/api/nodes?page=99")
        self.assertEqual((got["page"], got["pages"], len(got["nodes"])), (3, 3, 10))

    def test_bad_queries_are_refused_with_a_reason(self):
        for query in ("page=0", "page=abc", "page=-1", "sort=sideways", "tag=" + "x" * 65):
            response, body = self.polo.get(f"/api/nodes?{query}")
            self.assertEqual(response.code, 400, query)
            self.assertEqual(json.loads(body)["code"], "invalid_argument")
            response, body = self.polo.get(f"/?{query}")
            self.assertEqual(response.code, 400, query)
            self.assertIn(b"Bad request", body)

    def test_pager_links_keep_the_query_and_work_without_javascript(self):
        html = self.polo.html("/?tag=team&online=1&sort=polo-desc")
        self.assertIn("Page 1 of 2 (50 nodes)", html)
        self.assertIn('href="/?tag=team&amp;online=1&amp;sort=polo-desc&amp;page=2#directory"', html)
        self.assertIn('<option value="polo-desc" selected>', html)
        self.assertIn('name="online" value="1" checked', html)
        second = self.polo.html("/?tag=team&online=1&sort=polo-desc&page=2")
        self.assertIn('rel="prev" href="/?tag=team&amp;online=1&amp;sort=polo-desc#directory"', second)
        self.assertNotIn('rel="next"', second)

    def test_rows_show_status_score_band_tags_and_executor(self):
        html = self.polo.html("/fragment/directory?tag=ml&tasks=1")
        # Node 35: tags cpu, team-3, ml; executor; private (no hostname); score 55.
        self.assertIn("1 node matching", html)
        self.assertIn('<span class="pill">#ml</span>', html)
        self.assertIn('<span class="executor">executor</span>', html)
        self.assertIn('class="polo high">55<', html)
        self.assertNotIn("agent-35", html)
        public = self.polo.html("/fragment/directory?tag=team-2&sort=polo-desc")
        self.assertIn("<td>agent-2</td>", public)
        self.assertIn('class="polo high">', public)
        self.assertIn('class="polo medium">', public)
        self.assertIn("Offline", self.polo.html("/fragment/directory?sort=status&page=3"))

    def test_empty_states(self):
        self.assertIn("No nodes matching filter", self.polo.html("/fragment/directory?tag=absent"))
        self.assertIn("No nodes registered", Polo(self).html("/"))


class PageTests(TestCase):
    def setUp(self):
        self.polo = _populated(self)

    def test_overview_has_every_figure_charts_networks_and_versions(self):
        html = self.polo.html("/")
        self.assertRegex(html, 'Uptime <strong id="uptime">3d 2h [0-9]+m</strong>')
        for label in ("Total requests", "Total nodes", "Online nodes", "Trust links", "Unique tags",
                      "Task executors", "Requests, 24 h"):
            self.assertIn(f"<dt>{label}</dt>", html)
        self.assertIn('id="stat-total_nodes" title="60">60<', html)
        self.assertIn('id="stat-active_nodes" title="50">50<', html)
        self.assertIn("Online nodes, last 24 hours", html)
        self.assertIn('<polyline class="line"', html)
        self.assertIn("<td>backbone</td>", html)
        self.assertIn("50 / 60", html)
        self.assertIn("<code>v1.9.0</code></td><td>30</td>", html)
        self.assertIn("<code>unknown</code></td><td>30</td>", html)
        self.assertEqual(self.polo.html("/fragment/overview").count("<dt>"), 7)

    def test_trust_graph_draws_each_link(self):
        html = self.polo.html("/fragment/graph")
        self.assertEqual(html.count('<line class="edge"'), 5)
        self.assertIn("5 trust links.", html)
        self.assertIn('data-source="0:0000.0000.0001" data-target="0:0000.0000.0002"', html)
        self.assertIn("No trust links yet.", Polo(self).html("/fragment/graph"))

    def test_versions_show_as_the_nodes_sent_them_bare_numbers_with_a_v(self):
        polo = Polo(self)
        polo.add(1, version="pilotnet/0.1.0")
        polo.add(2, version="1.2.0")
        polo.add(3, version="v1.2.0")
        html = polo.html("/fragment/overview")
        self.assertIn("<code>pilotnet/0.1.0</code></td><td>1</td>", html)
        self.assertIn("<code>v1.2.0</code></td><td>2</td>", html)
        self.assertNotIn("vpilotnet", html)

    def test_the_page_needs_nothing_from_elsewhere(self):
        html = self.polo.html("/")
        self.assertEqual(re.findall(r'(?:src|href)="(?!/|#)[^"]*"', html), [])
        self.assertNotIn("<script>", html)
        self.assertNotIn(" style=", html)
        self.assertEqual(re.findall(r"<[^>]+\son[a-z]+=", html), [])

    def test_static_files_and_unknown_paths(self):
        response, body = self.polo.get("/static/dashboard.js")
        self.assertEqual(header(response, "Content-Type"), "text/javascript; charset=utf-8")
        self.assertIn(b"EventSource", body)
        response, _ = self.polo.get("/static/dashboard.css")
        self.assertEqual(header(response, "Content-Type"), "text/css; charset=utf-8")
        for path in ("/static/../setup.cfg", "/static/nope.js", "/nope", "/api/badge/nope"):
            response, _ = self.polo.get(path)
            self.assertEqual(response.code, 404, path)
        response, _ = self.polo.request("POST", "/")
        self.assertEqual(response.code, 405)
        self.assertEqual(header(response, "X-Frame-Options"), "DENY")


class SafetyTests(TestCase):
    def setUp(self):
        self.polo = _populated(self)

    def test_every_route_sends_the_security_headers(self):
        for path in ROUTES:
            response, _ = self.polo.get(path)
            for name, value in SECURITY_HEADERS.items():
                self.assertEqual(header(response, name), value, path)
        self.assertIn("script-src 'self';", SECURITY_HEADERS["Content-Security-Policy"])
        self.assertIn("frame-ancestors 'none'", SECURITY_HEADERS["Content-Security-Policy"])

    def test_node_supplied_text_is_escaped_everywhere(self):
        polo = self.polo
        node_id = polo.add(99, version=HOSTILE, hostname="shown", tags=["evil"])
        # Tags are validated at the door; a stored one (older registry, import) must still be harmless.
        polo.directory.nodes[node_id].tags = [HOSTILE]
        polo.trust(node_id, polo.numbers[1])
        for path in ("/", "/fragment/overview", "/fragment/directory?sort=trust-desc",
                     "/fragment/graph", "/?tag=img"):
            html = polo.html(path)
            self.assertNotIn("<img", html, path)
        self.assertIn("#&lt;img src=x onerror=&#34;document.title=1&#34;&gt;",
                      polo.html("/fragment/directory?tag=onerror"))
        self.assertIn("<code>&lt;img", polo.html("/fragment/overview"))

    def test_no_addresses_keys_or_endpoints_in_public_responses(self):
        secrets = [PEER[0], "0.0.0.0", identity(1).public_key_b64, "real_addr", "public_key",
                   "lan_addrs", "owner"]
        for path in ROUTES:
            if path == "/metrics":
                continue
            _, body = self.polo.get(path)
            for secret in secrets:
                self.assertNotIn(secret.encode(), body, (path, secret))

    def test_metrics_only_for_loopback_peers_whatever_the_headers_say(self):
        response, body = self.polo.get("/metrics")
        self.assertEqual(response.code, 200)
        self.assertIn(b"pilot_nodes_online 50.0", body)
        render = self.polo.resource.render

        def from_elsewhere(request):
            request.client = IPv4Address("TCP", "203.0.113.9", 40000)
            return render(request)

        self.polo.resource.render = from_elsewhere
        for headers in ({}, {"X-Forwarded-For": ["127.0.0.1"], "X-Real-IP": ["127.0.0.1"]}):
            response, body = self.polo.get("/metrics", headers=headers)
            self.assertEqual(response.code, 403)
            self.assertNotIn(b"pilot_", body)
        response, _ = self.polo.get("/api/stats")
        self.assertEqual(response.code, 200)


class ApiTests(TestCase):
    def setUp(self):
        self.polo = _populated(self)

    def test_stats_is_the_union_of_both_reference_forms(self):
        stats = self.polo.json("/api/stats")
        self.assertEqual({k: stats[k] for k in ("total_nodes", "active_nodes", "total_trust_links",
                                                "unique_tags", "task_executors")},
                         {"total_nodes": 60, "active_nodes": 50, "total_trust_links": 5,
                          "unique_tags": 7, "task_executors": 8})
        self.assertEqual(stats["total_requests"], 0)
        self.polo.server.answer(b'{"type": "lookup", "node_id": 1}', PEER)
        self.polo.server.answer(b'not json', PEER)
        self.assertEqual(self.polo.json("/api/stats?summary=1")["total_requests"], 2)
        self.assertEqual(stats["uptime_secs"], int(self.polo.clock.seconds() - self.polo.directory.started))
        self.assertEqual(stats["versions"], {"unknown": 30, "v1.9.0": 30})
        self.assertEqual(stats["networks"], [{"id": 0, "name": "backbone", "members": 60,
                                              "online_members": 50, "join_rule": ""}])
        self.assertEqual(len(stats["nodes"]), 60)
        self.assertEqual(stats["nodes"][0], {
            "address": "0:0000.0000.0001", "hostname": "", "online": True, "polo_score": -3,
            "trust_links": 3, "tags": ["cpu", "team-1"], "task_exec": False})
        self.assertIn({"source": "0:0000.0000.0001", "target": "0:0000.0000.0002"}, stats["edges"])
        for key in ("req_per_day", "hourly", "daily"):
            self.assertIn(key, stats)
        summary = self.polo.json("/api/stats?summary=1")
        self.assertNotIn("nodes", summary)
        self.assertNotIn("edges", summary)
        response, _ = self.polo.get("/api/stats")
        self.assertEqual(header(response, "Access-Control-Allow-Origin"), "*")
        self.assertEqual(header(response, "Content-Type"), "application/json")

    def test_badges(self):
        expected = {"nodes": ("online nodes: 50", "#4c1"), "trust": ("trust links: 5", "#58a6ff"),
                    "tags": ("tags: 7", "#f59e0b"), "task-executors": ("task executors: 8", "#4c1")}
        for name, (text, colour) in expected.items():
            response, body = self.polo.get(f"/api/badge/{name}")
            self.assertEqual(header(response, "Content-Type"), "image/svg+xml")
            self.assertEqual(header(response, "Cache-Control"), "no-cache, no-store, must-revalidate")
            self.assertIn(f'aria-label="{text}"'.encode(), body)
            self.assertIn(f'fill="{colour}"'.encode(), body)
        _, body = Polo(self).get("/api/badge/nodes")
        self.assertIn(b'aria-label="online nodes: 0"', body)
        self.assertIn(b'fill="#9f9f9f"', body)
        self.polo.dashboard.history.earlier_requests = 1234
        _, body = self.polo.get("/api/badge/requests")
        self.assertRegex(body.decode(), r'aria-label="requests: 1\.\dK"')

    def test_requests_in_the_last_day_count_from_the_start_of_a_young_history(self):
        for _ in range(3):
            self.polo.server.answer(b'{"type": "lookup", "node_id": 1}', PEER)
        stats = self.polo.json("/api/stats?summary=1")
        self.assertEqual((stats["total_requests"], stats["req_per_day"]), (3, 3))
        self.assertIn('id="stat-req_per_day" title="3">3<', self.polo.html("/fragment/overview"))

    def test_healthz(self):
        health = self.polo.json("/healthz")
        self.assertEqual(set(health), {"status", "version", "uptime_seconds", "nodes_online"})
        self.assertEqual((health["status"], health["nodes_online"]), ("ok", 50))


class LiveTests(TestCase):
    def test_an_open_page_hears_of_changes_and_the_stream_ends_at_shutdown(self):
        polo = Polo(self)
        response = self.successResultOf(polo.client.get("http://polo.test/api/events"))
        self.assertEqual(header(response, "Content-Type"), "text/event-stream")
        chunks = []
        done = response.collect(chunks.append)
        polo.client.flush()
        self.assertIn(b"retry: 2000", b"".join(chunks))
        self.assertIn(b"event: hello", b"".join(chunks))
        self.assertEqual(polo.dashboard.live.listeners, 1)
        polo.driven.register(identity(1))
        polo.driven.register(identity(2))
        polo.server.commit()
        polo.clock.advance(0.5)
        polo.driven.register(identity(3))
        polo.server.commit()
        polo.clock.advance(0.5)
        polo.client.flush()
        events = re.findall(rb"event: change\ndata: (.*)\n\n", b"".join(chunks))
        # Two registrations within a second, one event, already counting both.
        self.assertEqual(len(events), 1)
        self.assertEqual(json.loads(events[0])["total_nodes"], 3)
        polo.clock.advance(15)
        polo.client.flush()
        self.assertIn(b": keepalive", b"".join(chunks))
        self.assertNoResult(done)
        polo.dashboard.stopService()
        polo.client.flush()
        self.successResultOf(done)
        self.assertEqual(polo.dashboard.live.listeners, 0)
