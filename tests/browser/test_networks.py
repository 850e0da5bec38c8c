"""The networks panel in Chromium: join rules, members online/total, the directory filtered to a network.

A real ``pilot-rendezvous``; nodes register and join over the registry
protocol while the page is open (the pattern of tests/browser/test_dashboard.py).
"""

import os
import time

from twisted.internet import reactor, threads
from twisted.internet.defer import ensureDeferred

from pilotnet.registry.challenges import sign_fresh_request
from pilotnet.registry.client import connect_registry
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, ChromiumTestCase, Fleet, _identity
from tests.integration.processes import RendezvousProcess

ADMIN_TOKEN = "browser-networks-admin"


class Team:
    """Nodes and one network on the registry (runs in the reactor thread)."""

    def __init__(self, client):
        self.client = client
        self.fleet = Fleet(client)
        self.network = None

    async def create(self, owner, name, **fields):
        reply = await self.client.request({"type": "create_network", "node_id": self.fleet.ids[owner],
                                           "name": name, "admin_token": ADMIN_TOKEN, **fields})
        return reply["network_id"]

    async def join(self, number, network):
        await self.client.request(sign_fresh_request(_identity(number), {
            "type": "join_network", "node_id": self.fleet.ids[number], "network_id": network}, time.time()))


class NetworksPanelInBrowserTests(ChromiumTestCase):
    timeout = 90

    async def test_networks_panel_and_the_directory_of_one_network(self):
        directory = os.path.abspath(self.mktemp())
        server = await RendezvousProcess(self, directory, "--admin-token", ADMIN_TOKEN,
                                         "--registrations-per-minute", "1000",
                                         "--http", "tcp:0:interface=127.0.0.1").start()
        client = await connect_registry(reactor, server.registry_endpoint)
        self.addCleanup(client.transport.abortConnection)
        team = Team(client)
        for number in range(1, 7):
            await team.fleet.add(number, ["team" if number <= 3 else "other"])
        research = await team.create(1, "research")
        await team.create(4, "vault", join_rule="token", token="hidden-token")
        for number in (2, 3):
            await team.join(number, research)
        url = f"http://127.0.0.1:{server.ports['http']['port']}/"

        def on_reactor(action, *args):
            return threads.blockingCallFromThread(reactor, lambda: ensureDeferred(action(*args)))

        errors = await threads.deferToThread(self._drive, url, research, on_reactor, team)
        self.assertEqual(errors, [])

    def _drive(self, url, research, on_reactor, team):
        from playwright.sync_api import expect, sync_playwright
        expect.set_options(timeout=WAIT_MS)
        errors = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                page.goto(url)
                expect(page.locator("#live-status")).to_have_text("Live")
                row = page.locator(f'tr.network[data-network="{research}"]')
                expect(row).to_contain_text("research")
                expect(row.locator("td").nth(2)).to_have_text("open")
                expect(row.locator("td").nth(3)).to_have_text("3 / 3")
                expect(page.locator("tr.network", has_text="vault").locator("td").nth(2)).to_have_text("token")
                assert "hidden-token" not in page.content()

                # The network's name opens the directory of its members.
                row.get_by_role("link", name="research").click()
                expect(page.locator("#directory-scope")).to_contain_text("Members of network research")
                expect(page.locator("#directory-count")).to_have_text("3 nodes matching")
                expect(page.get_by_label("Network", exact=True)).to_have_value(str(research))
                assert f"network={research}" in page.url

                # Live: a node joining shows in the panel and in the filtered directory without a reload.
                on_reactor(team.join, 5, research)
                expect(page.locator("#directory-count")).to_have_text("4 nodes matching")
                expect(page.locator(f'tr.network[data-network="{research}"] td').nth(3)).to_have_text("4 / 4")

                # The filter combines with the others, and "all nodes" lifts it.
                page.get_by_label("Tag").fill("team")
                expect(page.locator("#directory-count")).to_have_text("3 nodes matching")
                page.get_by_label("Tag").fill("")
                page.get_by_role("link", name="all nodes").click()
                expect(page.locator("#directory-count")).to_have_text("6 nodes")
                expect(page.get_by_label("Network", exact=True)).to_have_value("")
                page.get_by_label("Network", exact=True).select_option(str(research))
                expect(page.locator("#directory-count")).to_have_text("4 nodes matching")
            finally:
                browser.close()
        return errors
