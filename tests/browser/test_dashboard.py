"""The dashboard in a real browser: Chromium (Playwright) against a real ``pilot-rendezvous``.

Nodes register over the registry protocol while the page is open; the page
must follow without a reload.  Playwright's synchronous API runs in a worker
thread (``deferToThread``) and asks the reactor thread to act on the registry
with ``blockingCallFromThread``, so the rendezvous process and the test's
registry client keep running while the browser waits.
"""

import os
import time

from twisted.internet import reactor, threads
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SkipTest, TestCase

from pilotnet.crypto.identity import Identity
from pilotnet.registry.challenges import sign_fresh_request, sign_request
from pilotnet.registry.client import connect_registry
from pilotnet.registry.directory import Node, stored_node
from pilotnet.registry.store import RegistryStore
from tests.integration.processes import RendezvousProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 10_000
HOSTILE_TAG = "<img src=x onerror=window.__pwned=1>"
HOSTILE_VERSION = "<script>window.__pwned=2</script>"
SEEDED_ID = 900


def _identity(number):
    return Identity.from_seed(number.to_bytes(4, "big") * 8)


def _seed_hostile_node(path, public_key):
    """A node whose stored tag never passed validation (an old or imported store)."""
    node = Node(id=SEEDED_ID, public_key=public_key, tags=[HOSTILE_TAG], public=True,
                last_seen=time.time() + 3600)
    store = RegistryStore(path)
    store.write([("node", str(SEEDED_ID), stored_node(node)), ("key", public_key, SEEDED_ID)])
    store.close()



class ChromiumTestCase(TestCase):
    """A test that drives the dashboard in Chromium (skipped where it is not installed; CI installs it)."""

    def setUp(self):
        if not os.path.exists(CHROMIUM):
            raise SkipTest(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")


class Fleet:
    """Nodes registered over the registry protocol (runs in the reactor thread)."""

    def __init__(self, client):
        self.client = client
        self.ids = {}

    async def add(self, number, tags, task_exec=False, polo=0, version="1.2.0"):
        who = _identity(number)
        reply = await self.client.request({
            "type": "register", "public_key": who.public_key_b64, "listen_addr": "127.0.0.1:4000",
            "version": version})
        node_id = self.ids[number] = reply["node_id"]
        await self.client.request(sign_fresh_request(
            who, {"type": "set_tags", "node_id": node_id, "tags": tags}, time.time()))
        if task_exec:
            await self.client.request(sign_fresh_request(
                who, {"type": "set_task_exec", "node_id": node_id, "enabled": True}, time.time()))
        if polo:
            await self.client.request({"type": "set_polo_score", "node_id": node_id,
                                       "polo_score": polo})
        return reply["address"]

    async def heartbeat(self, number):
        """One heartbeat of node ``number``, signed as a daemon signs it."""
        await self.client.request(sign_request(_identity(number), {
            "type": "heartbeat", "node_id": self.ids[number]}))

    async def handshake(self, a, b):
        await self.client.request(sign_fresh_request(_identity(a), {
            "type": "request_handshake", "from_node_id": self.ids[a], "to_node_id": self.ids[b],
            "justification": "browser test"}, time.time()))
        await self.client.request(sign_fresh_request(_identity(b), {
            "type": "respond_handshake", "node_id": self.ids[b], "peer_id": self.ids[a],
            "accept": True}, time.time()))


class DashboardInBrowserTests(ChromiumTestCase):
    timeout = 90

    async def test_live_directory_search_filters_sort_pages_graph_and_hostile_text(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        _seed_hostile_node(os.path.join(directory, "registry.db"), _identity(999).public_key_b64)
        server = await RendezvousProcess(
            self, directory, "--store", "registry.db", "--registrations-per-minute", "1000",
            "--http", "tcp:0:interface=127.0.0.1").start()
        client = await connect_registry(reactor, server.registry_endpoint)
        self.addCleanup(client.transport.abortConnection)
        fleet = Fleet(client)
        for number in range(1, 31):
            await fleet.add(number, ["fleet", "gpu" if number % 3 == 0 else "cpu"],
                            task_exec=number % 5 == 0, polo=number * 3 if number % 4 == 0 else 0,
                            version=HOSTILE_VERSION if number == 1 else "1.2.0")
        url = f"http://127.0.0.1:{server.ports['http']['port']}/"
        screenshot = os.path.join(directory, "dashboard.png")

        def on_reactor(action, *args):
            return threads.blockingCallFromThread(
                reactor, lambda: ensureDeferred(action(*args)))

        outcome = await threads.deferToThread(self._drive_browser, url, on_reactor, fleet,
                                              screenshot)
        self.assertEqual(outcome["errors"], [])
        self.assertTrue(os.path.getsize(screenshot) > 10_000)

    def _drive_browser(self, url, on_reactor, fleet, screenshot):
        from playwright.sync_api import expect, sync_playwright
        expect.set_options(timeout=WAIT_MS)
        errors = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.set_default_timeout(WAIT_MS)
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
                page.goto(url)
                expect(page.locator("#live-status")).to_have_text("Live")
                expect(page.locator("#stat-total_nodes")).to_have_text("31")

                # Pagination: 31 nodes, 25 a page.
                expect(page.locator("#page-info")).to_have_text("Page 1 of 2 (31 nodes)")
                page.get_by_role("link", name="Next →").click()
                expect(page.locator("#page-info")).to_have_text("Page 2 of 2 (31 nodes)")
                expect(page.locator("tr.node")).to_have_count(6)
                assert "page=2" in page.url

                # Hostile text is text: shown literally, no element made, no script run.
                expect(page.locator(".pill", has_text=HOSTILE_TAG)).to_have_count(1)
                expect(page.locator("code", has_text=HOSTILE_VERSION)).to_have_count(1)
                assert page.locator("main img, main script").count() == 0
                assert page.evaluate("window.__pwned") is None

                # Tag search: case-insensitive, leading # ignored; any change resets to page 1.
                page.get_by_label("Tag").fill("#GPU")
                expect(page.locator("#directory-count")).to_have_text("10 nodes matching")
                for row in page.locator("tr.node").all():
                    expect(row.locator(".pill", has_text="#gpu")).to_have_count(1)
                page.get_by_label("Tasks only").check()
                expect(page.locator("#directory-count")).to_have_text("2 nodes matching")
                expect(page.locator("tr.node .executor")).to_have_count(2)
                page.get_by_label("Tasks only").uncheck()
                page.get_by_label("Tag").fill("")
                page.get_by_label("Sort by").select_option("polo-desc")
                expect(page.locator("tr.node").first.locator(".polo")).to_have_text("84")
                expect(page.locator("tr.node").first.locator(".polo")).to_have_class("polo high")
                page.get_by_label("Online only").check()
                expect(page.locator("#directory-count")).to_have_text("31 nodes matching")
                page.get_by_label("Online only").uncheck()
                page.get_by_label("Sort by").select_option("address")

                # Live: a node that registers now appears without a reload.
                page.get_by_label("Tag").fill("newcomer")
                expect(page.locator("#directory-count")).to_have_text("0 nodes matching")
                expect(page.locator("td.empty")).to_have_text("No nodes matching filter")
                address = on_reactor(fleet.add, 31, ["newcomer"])
                expect(page.locator(f'tr.node[data-address="{address}"]')).to_have_count(1)
                expect(page.locator("#stat-total_nodes")).to_have_text("32")

                # The trust graph draws a link once a handshake is accepted.
                expect(page.locator("#graph-view")).to_contain_text("No trust links yet.")
                on_reactor(fleet.handshake, 2, 3)
                expect(page.locator("#graph-view line.edge")).to_have_count(1)
                expect(page.locator("#stat-total_trust_links")).to_have_text("1")
                page.get_by_label("Tag").fill("")
                expect(page.locator("#page-info")).to_have_text("Page 1 of 2 (32 nodes)")
                page.screenshot(path=screenshot, full_page=True)
                assert page.evaluate("window.__pwned") is None

                # Without JavaScript the form and links still work (server-side query).
                plain = browser.new_context(java_script_enabled=False).new_page()
                plain.goto(url)
                plain.get_by_label("Tag").fill("gpu")
                plain.get_by_label("Online only").check()
                plain.get_by_role("button", name="Apply").click()
                expect(plain.locator("#directory-count")).to_have_text("10 nodes matching")
                assert "tag=gpu" in plain.url and "online=1" in plain.url
            finally:
                browser.close()
        return {"errors": errors}


class ReconnectTests(ChromiumTestCase):
    """The live feed survives a registry restart: the page reconnects and keeps following."""

    timeout = 90

    async def test_page_follows_the_registry_across_a_restart(self):
        directory = os.path.abspath(self.mktemp())
        server = await RendezvousProcess(self, directory, "--store", "registry.db",
                                         "--http", "tcp:0:interface=127.0.0.1").start()
        http_port = server.ports["http"]["port"]
        url = f"http://127.0.0.1:{http_port}/"

        async def restart_and_register():
            await server.stop()
            again = RendezvousProcess(self, directory, "--store", "registry.db",
                                      "--http", f"tcp:{http_port}:interface=127.0.0.1")
            again.registry_port, again.beacon_port = server.registry_port, server.beacon_port
            await again.start()
            client = await connect_registry(reactor, again.registry_endpoint)
            self.addCleanup(client.transport.abortConnection)
            return await Fleet(client).add(1, ["after-restart"])

        def on_reactor(action):
            return threads.blockingCallFromThread(reactor, lambda: ensureDeferred(action()))

        errors = await threads.deferToThread(self._drive, url, on_reactor, restart_and_register)
        # While the registry was down the browser logged failed reconnection attempts; nothing else.
        self.assertEqual([e for e in errors if "ERR_CONNECTION_REFUSED" not in e and "EventSource" not in e],
                         [])

    def _drive(self, url, on_reactor, restart_and_register):
        from playwright.sync_api import expect, sync_playwright
        expect.set_options(timeout=WAIT_MS * 2)
        errors = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                page.goto(url)
                expect(page.locator("#live-status")).to_have_text("Live")
                expect(page.locator("#stat-total_nodes")).to_have_text("0")
                address = on_reactor(restart_and_register)
                expect(page.locator(f'tr.node[data-address="{address}"]')).to_have_count(1)
                expect(page.locator("#stat-total_nodes")).to_have_text("1")
                expect(page.locator("#live-status")).to_have_text("Live")
            finally:
                browser.close()
        return errors
