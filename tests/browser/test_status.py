"""The dashboard in Chromium, with real daemons: a stopped node turns offline on an open page
and stays listed; the charts, the trust graph, the versions and the request figure look right."""

import os

from twisted.internet import reactor, task, threads
from twisted.internet.defer import ensureDeferred

from pilotnet.registry.client import connect_registry
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, ChromiumTestCase, Fleet
from tests.integration.processes import DaemonProcess, RendezvousProcess

# Daemons heartbeat every second here, so a node is offline after three silent seconds.
OFFLINE_AFTER = "3"
# How many trust-graph labels reach outside the drawing, as the browser lays them out.
LABELS_OUTSIDE = """() => {
    const svg = document.querySelector("svg.graph");
    const frame = svg.getBoundingClientRect();
    return Array.from(svg.querySelectorAll("text.label")).map(t => t.getBoundingClientRect())
        .filter(b => b.left < frame.left || b.top < frame.top
                     || b.right > frame.right || b.bottom > frame.bottom).length;
}"""


class StatusInBrowserTests(ChromiumTestCase):
    timeout = 120

    async def test_a_stopped_node_turns_offline_and_the_overview_looks_right(self):
        directory = os.path.abspath(self.mktemp())
        server = await RendezvousProcess(
            self, directory, "--registrations-per-minute", "1000", "--offline-after", OFFLINE_AFTER,
            "--http", "tcp:0:interface=127.0.0.1").start()
        daemons = {}
        for name in ("alpha", "beta"):
            daemons[name] = await DaemonProcess(self, os.path.join(directory, name), server, "--keepalive", "1",
                                                hostname=name).start()
        client = await connect_registry(reactor, server.registry_endpoint)
        self.addCleanup(client.transport.abortConnection)
        fleet = Fleet(client)
        for number in (1, 2, 3):
            await fleet.add(number, ["graph"], version="1.2.0")
        await fleet.handshake(1, 2)
        await fleet.handshake(2, 3)
        # The three keep heartbeating until the page has counted them: a browser that starts slowly on a
        # busy machine must not see them offline already.  They stop before beta does.
        async def beat_fleet():
            for number in (1, 2, 3):
                await fleet.heartbeat(number)

        beating = task.LoopingCall(lambda: ensureDeferred(beat_fleet()))
        beating.start(1.0)
        self.addCleanup(lambda: beating.running and beating.stop())

        def stop_fleet():
            threads.blockingCallFromThread(reactor, beating.stop)

        url = f"http://127.0.0.1:{server.ports['http']['port']}/"
        screenshot = os.path.join(directory, "status.png")

        def stop_beta():
            return threads.blockingCallFromThread(reactor, lambda: ensureDeferred(daemons["beta"].stop()))

        async def chain_more():
            for number in range(4, 13):
                await fleet.add(number, ["graph"], version="1.2.0")
                await fleet.handshake(number - 1, number)

        def grow_graph():
            return threads.blockingCallFromThread(reactor, lambda: ensureDeferred(chain_more()))

        errors = await threads.deferToThread(self._drive, url, daemons["beta"].address, stop_fleet, stop_beta,
                                             grow_graph, screenshot)
        self.assertEqual(errors, [])
        self.assertGreater(os.path.getsize(screenshot), 10_000)

    def _drive(self, url, beta, stop_fleet, stop_beta, grow_graph, screenshot):
        from playwright.sync_api import expect, sync_playwright
        expect.set_options(timeout=WAIT_MS)
        errors = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.set_default_timeout(WAIT_MS)
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                page.goto(url)
                expect(page.locator("#live-status")).to_have_text("Live")
                expect(page.locator("#stat-active_nodes")).to_have_text("5")
                beta_row = page.locator(f'tr.node[data-address="{beta}"]')
                expect(beta_row).to_contain_text("Online")

                # Versions as the nodes sent them: our daemons' name, the others' numbers with a v.
                versions = page.locator("table.versions")
                expect(versions).to_contain_text("pilotnet/0.1.0")
                expect(versions).to_contain_text("v1.2.0")
                expect(versions).not_to_contain_text("vpilotnet")

                # Requests answered are counted in the last day's figure too, from the start.
                requests = page.locator("#stat-total_requests").get_attribute("title")
                assert requests != "0"
                expect(page.locator("#stat-req_per_day")).to_have_attribute("title", requests)

                # The charts have the start and "now" already.
                assert page.locator("#chart-hourly circle.point").count() >= 2
                expect(page.locator("#chart-hourly")).to_contain_text("now")

                # The trust graph is as large as its three nodes need, every label inside it.
                graph = page.locator("svg.graph")
                expect(graph.locator("text.label")).to_have_count(3)
                box = graph.bounding_box()
                assert box["width"] < 400 and box["height"] < 300, box
                assert page.evaluate(LABELS_OUTSIDE) == 0, "labels cut off"

                # The three stop heartbeating, then beta stops: its row turns offline without a reload,
                # and stays listed.
                stop_fleet()
                stop_beta()
                expect(beta_row.locator("td").nth(2)).to_have_text("Offline")
                # Only alpha still heartbeats.
                expect(page.locator("#stat-active_nodes")).to_have_text("1")
                expect(page.locator("#stat-total_nodes")).to_have_text("5")
                page.get_by_label("Online only").check()
                expect(beta_row).to_have_count(0)
                page.get_by_label("Online only").uncheck()
                expect(beta_row).to_have_count(1)

                # Twelve linked nodes: a larger graph, labels along the radii, none cut off.
                grow_graph()
                expect(graph.locator("text.label")).to_have_count(12)
                expect(graph.locator("text.label[transform]")).to_have_count(12)
                assert graph.bounding_box()["width"] > box["width"]
                assert page.evaluate(LABELS_OUTSIDE) == 0, "labels cut off"
                page.screenshot(path=screenshot, full_page=True)
            finally:
                browser.close()
        return errors
