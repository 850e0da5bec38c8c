"""Status that follows the clock: stopped nodes go offline on open pages and stay listed;
the charts sample at start and on change; the trust graph is as large as its nodes need."""

import json
import re

from twisted.trial.unittest import TestCase

from pilotnet.dashboard import drawing
from pilotnet.dashboard.index import ONLINE_CHECK
from pilotnet.dashboard.live import DEBOUNCE
from pilotnet.registry.metrics import metrics_text
from tests.dashboard.fixtures import Polo, header
from tests.registry.fixtures import identity

OFFLINE_AFTER = 120.0
STALE_AFTER = 3600.0


def _polo(test):
    polo = Polo(test)
    polo.driven.registry.offline_after = OFFLINE_AFTER
    polo.driven.registry.stale_after = STALE_AFTER
    return polo


def _open_events(test, polo):
    """The chunks an open page receives from ``/api/events``."""
    response = test.successResultOf(polo.client.get("http://polo.test/api/events"))
    test.assertEqual(header(response, "Content-Type"), "text/event-stream")
    chunks = []
    response.collect(chunks.append)
    polo.client.flush()
    return chunks


def _change_events(polo, chunks):
    polo.client.flush()
    return [json.loads(data) for data in re.findall(rb"event: change\ndata: (.*)\n\n", b"".join(chunks))]


class OfflineTests(TestCase):
    def test_a_silent_node_turns_offline_on_open_pages_within_the_window_and_stays_listed(self):
        polo = _polo(self)
        stopped = polo.add(1)
        beating = polo.add(2)
        chunks = _open_events(self, polo)
        silent_since = polo.directory.nodes[stopped].last_seen
        # Node 2 keeps heartbeating; node 1 stopped.  Within the window plus one
        # check (and the live feed's debounce) the page hears of it.
        deadline = silent_since + OFFLINE_AFTER + ONLINE_CHECK
        while polo.clock.seconds() < deadline:
            polo.clock.advance(min(30, deadline - polo.clock.seconds()))
            polo.directory.touch(polo.directory.nodes[beating], polo.clock.seconds())
        polo.clock.advance(DEBOUNCE)
        # No commit happened: the dashboard noticed by itself and told the page.
        events = _change_events(polo, chunks)
        self.assertEqual(events[-1]["active_nodes"], 1)
        self.assertEqual(events[-1]["total_nodes"], 2)
        nodes = {n["address"]: n["online"] for n in polo.json("/api/nodes")["nodes"]}
        self.assertEqual(nodes, {"0:0000.0000.0001": False, "0:0000.0000.0002": True})
        self.assertIn(b"pilot_nodes_online 1.0", metrics_text(polo.server.metrics))
        # Listed as offline for the retention period, then reaped.
        polo.clock.advance(silent_since + STALE_AFTER - 1 - polo.clock.seconds())
        polo.directory.touch(polo.directory.nodes[beating], polo.clock.seconds())
        polo.server.housekeeping()
        self.assertIn(stopped, polo.directory.nodes)
        polo.clock.advance(2)
        polo.server.housekeeping()
        self.assertNotIn(stopped, polo.directory.nodes)
        self.assertEqual(polo.json("/api/nodes")["total"], 1)

    def test_a_node_heard_again_is_online_again(self):
        polo = _polo(self)
        node_id = polo.add(1)
        polo.clock.advance(OFFLINE_AFTER + ONLINE_CHECK)
        self.assertEqual(polo.json("/api/stats?summary=1")["active_nodes"], 0)
        polo.driven.now = polo.clock.seconds()
        polo.driven.signed(identity(1), {"type": "heartbeat", "node_id": node_id})
        polo.clock.advance(ONLINE_CHECK)
        self.assertEqual(polo.json("/api/stats?summary=1")["active_nodes"], 1)


    def test_with_no_page_open_the_clock_alone_scans_nothing(self):
        polo = _polo(self)
        polo.add(1)
        looks = []
        index = polo.dashboard.index
        polo.dashboard.index = lambda: looks.append(1) or index()
        polo.clock.advance(10 * ONLINE_CHECK)
        self.assertEqual(looks, [])
        _open_events(self, polo)
        polo.clock.advance(ONLINE_CHECK)
        self.assertNotEqual(looks, [])


class ChartTests(TestCase):
    def test_the_charts_start_at_start_and_follow_every_change(self):
        polo = _polo(self)
        history = polo.dashboard.history
        self.assertEqual([s["online_nodes"] for s in history.hourly], [0])
        for number in (1, 2, 3):
            polo.add(number)
        polo.clock.advance(ONLINE_CHECK)
        hourly = polo.json("/api/stats?summary=1")["hourly"]
        self.assertEqual(len(hourly), 1)  # one stored sample per hour, as the reference
        html = polo.html("/fragment/overview")
        self.assertIn("now: 3 online", html)
        self.assertIn(">now</text>", html)
        self.assertEqual(html.count('<circle class="point"'), 4)  # two points a chart


class TrustGraphGeometryTests(TestCase):
    def _graph(self, count, hostname=lambda n: f"agent-{n}"):
        polo = _polo(self)
        for n in range(1, count + 1):
            polo.add(n, hostname=hostname(n), public=True)
        for n in range(1, count):
            polo.trust(polo.numbers[n], polo.numbers[n + 1])
        self.html = polo.html("/fragment/graph")
        return drawing.trust_graph(polo.dashboard.index())

    def _assert_labels_inside(self, graph):
        """Each label's extent (0.6 em a character, a font high) lies within the drawing."""
        font = drawing.GRAPH_FONT
        centre_x, centre_y = graph["width"] / 2, graph["height"] / 2
        for node in graph["nodes"]:
            text = node["row"].hostname or node["row"].address
            width = len(text) * font * 0.6
            if node["rotate"] is None:
                left = {"start": node["label_x"], "middle": node["label_x"] - width / 2,
                        "end": node["label_x"] - width}[node["anchor"]]
                corners = [(left, node["label_y"] - font), (left + width, node["label_y"] + font * 0.3)]
            else:
                # Along the radius, outwards from the label's point, half a font either side.
                dx, dy = node["x"] - centre_x, node["y"] - centre_y
                length = (dx * dx + dy * dy) ** 0.5
                ux, uy = dx / length, dy / length
                far_x, far_y = node["label_x"] + width * ux, node["label_y"] + width * uy
                corners = [(x + side * font / 2 * -uy, y + side * font / 2 * ux)
                           for x, y in ((node["label_x"], node["label_y"]), (far_x, far_y))
                           for side in (-1, 1)]
            for x, y in corners:
                self.assertTrue(0 <= x <= graph["width"] and 0 <= y <= graph["height"], (text, x, y))

    def test_a_few_nodes_make_a_small_graph_and_many_a_larger_one(self):
        few = self._graph(2)
        many = self._graph(40)
        self.assertLess(few["width"], 300)
        self.assertLess(few["height"], 200)
        self.assertGreater(many["width"], 2 * few["width"])
        self._assert_labels_inside(few)
        self._assert_labels_inside(many)
        # Crowded: labels run along the radii, so neighbours at the top and bottom do not overlap.
        self.assertEqual({node["rotate"] is None for node in few["nodes"]}, {True})
        self.assertEqual({node["rotate"] is None for node in many["nodes"]}, {False})
        self.assertIn('transform="rotate(', self.html)

    def test_long_labels_fit_at_every_angle(self):
        for count in (3, 7, 9, 60):
            graph = self._graph(count, hostname=lambda n: f"a-rather-long-hostname-{n:02d}")
            self._assert_labels_inside(graph)
        html = _polo(self).html("/fragment/graph")
        self.assertIn("No trust links yet.", html)
