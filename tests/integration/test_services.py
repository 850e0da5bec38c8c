"""The built-in services with real processes: data exchange, federated pub/sub, task submission.

Every daemon is a real ``twistd pilot-daemon`` registered at a real
rendezvous; commands are the real ``pilotctl`` (or the SDK over the control
socket).  Waits are bounded polls; nothing asserts on wall time.
"""

import base64
import io
import json
import os
import struct
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pilotnet.cli.runner import run as run_pilotctl
from pilotnet.wire import dataexchange, tasksubmit
from pilotnet.wire.address import PORT_DATA_EXCHANGE, PORT_TASK_SUBMIT
from tests.integration.processes import DaemonProcess, PilotctlMixin, RendezvousProcess, _Collect, wait_until


async def read_replies(stream):
    """The data exchange service's TEXT replies until it closes the connection."""
    data = b""
    while True:
        chunk = await stream.read()
        if not chunk:
            return [frame.payload.decode() for frame in dataexchange.DataFrameReader().feed(data)]
        data += chunk


class NetworkMixin(PilotctlMixin):
    """A rendezvous and named daemons, pilotctl on each, and mutual trust between them."""

    timeout = 180

    async def start(self, *names, options=None):
        """Daemons named ``names``; ``options`` maps a name to extra ``pilot-daemon`` flags."""
        base = self.mktemp()
        self.rendezvous = await RendezvousProcess(self, os.path.join(base, "rendezvous")).start()
        daemons = []
        for name in names:
            extra = (options or {}).get(name, ())
            daemons.append(await DaemonProcess(self, os.path.join(base, name), self.rendezvous, *extra,
                                               hostname=name).start())
        return daemons

    async def trust_each_other(self, *daemons):
        """Mutual handshakes between every pair (they approve themselves): federation uses the trust list."""
        clients = {daemon: await daemon.connect() for daemon in daemons}
        for daemon in daemons:
            for other in daemons:
                if other is not daemon:
                    await clients[daemon].handshake(str(other.node_id), "services test")

        async def all_trusted():
            for daemon in daemons:
                trusted = {peer["node_id"] for peer in await clients[daemon].trusted()}
                if not {d.node_id for d in daemons if d is not daemon} <= trusted:
                    return False
            return True

        await wait_until(all_trusted, "mutual trust between every pair")
        return clients


class ServiceTests(NetworkMixin, TestCase):
    # -- data exchange -------------------------------------------------------------------

    async def test_messages_and_files_arrive_with_their_content(self):
        alpha, beta = await self.start("alpha", "beta")
        sent = await self.ok(alpha, "send-message", beta.address, "--data", "hello beta")
        self.assertEqual(sent, {"target": beta.address, "type": "text", "bytes": 10, "ack": "ACK TEXT 10 bytes"})
        sent = await self.ok(alpha, "send-message", "beta", "--data", '{"n": 1}', "--type", "json")
        self.assertEqual(sent["ack"], "ACK JSON 8 bytes")
        inbox = await self.ok(beta, "inbox")
        self.assertEqual(inbox["total"], 2)
        by_type = {message["type"]: message for message in inbox["messages"]}
        self.assertEqual((by_type["TEXT"]["data"], by_type["TEXT"]["from"]), ("hello beta", alpha.address))
        self.assertEqual(json.loads(by_type["JSON"]["data"]), {"n": 1})
        human = await self.on(beta, "inbox")
        self.assertIn(f"from {alpha.address} type=TEXT", human.stdout)

        content = os.urandom(300 * 1024)
        source = Path(self.mktemp())
        source.mkdir()
        (source / "report.bin").write_bytes(content)
        for _ in range(2):
            human = await self.on(alpha, "send-file", beta.address, str(source / "report.bin"))
            self.assertEqual(human.code, 0, human)
            self.assertNotIn("\r", human.stderr)  # stderr is a pipe: no progress bar
            self.assertEqual(human.stdout.count("ACK FILE 307200 bytes"), 1, human)  # the final line, once
        received = await self.ok(beta, "received")
        self.assertEqual(received["total"], 2)  # the second did not overwrite the first
        for entry in received["files"]:
            self.assertTrue(entry["name"].startswith("report-") and entry["name"].endswith(".bin"), entry)
            self.assertEqual(Path(entry["path"]).read_bytes(), content)
        self.assertEqual(await self.ok(beta, "inbox", "--clear"), {"cleared": 2, "in_transfer": 0})
        self.assertEqual((await self.ok(beta, "inbox"))["total"], 0)

    async def test_hostile_file_names_are_neutralised(self):
        alpha, beta = await self.start("alpha", "beta")
        client = await alpha.connect()
        received = Path(beta.home) / "received"
        for hostile in ("../escaped.txt", "..", "sub/dir.txt", "/etc/passwd"):
            stream = await client.dial(beta.address, PORT_DATA_EXCHANGE)
            name = hostile.encode()
            payload = struct.pack(">H", len(name)) + name + b"owned"
            await stream.write(struct.pack(">II", 4, len(payload)) + payload)
            # The service refuses the frame, says so, and closes the connection without saving anything.
            [reply] = await read_replies(stream)
            self.assertTrue(reply.startswith("ERR refused: file name"), reply)
        self.assertFalse((Path(beta.home) / "escaped.txt").exists())
        self.assertFalse(Path(beta.home, "..", "escaped.txt").exists())
        self.assertEqual([p.name for p in received.iterdir()] if received.exists() else [], [])
        # A name with directories is sent as its base name by pilotctl.
        nested = Path(self.mktemp(), "deep")
        nested.mkdir(parents=True)
        (nested / "notes.txt").write_text("fine")
        await self.ok(alpha, "send-file", beta.address, str(nested / ".." / "deep" / "notes.txt"))
        [entry] = (await self.ok(beta, "received"))["files"]
        self.assertEqual(Path(entry["path"]).parent, received)
        self.assertEqual(Path(entry["path"]).read_text(), "fine")

    async def test_a_good_file_sent_with_a_refused_one_is_kept_and_quotas_hold(self):
        alpha, beta = await self.start("alpha", "beta", options={
            "beta": ["--received-max-files", "2", "--message-max-bytes", "1000"]})
        client = await alpha.connect()
        received = Path(beta.home) / "received"
        stream = await client.dial(beta.address, PORT_DATA_EXCHANGE)
        good = b"".join(dataexchange.encode_frame(dataexchange.TYPE_FILE, b"good content", "good.txt"))
        name = b"x/../../../victim.txt"
        hostile = struct.pack(">IIH", 4, 2 + len(name) + 5, len(name)) + name + b"owned"
        await stream.write(good + hostile)  # one write: both frames arrive in the same read
        replies = await read_replies(stream)
        self.assertEqual(replies[0], "ACK FILE 12 bytes")
        self.assertTrue(replies[1].startswith("ERR refused: file name 'x/../../../victim.txt'"), replies)
        [kept] = received.iterdir()
        self.assertEqual(kept.read_bytes(), b"good content")
        self.assertFalse(Path(beta.home, "..", "victim.txt").exists())
        # --received-max-files 2: the second file fits, the third is refused with a reason.
        stream = await client.dial(beta.address, PORT_DATA_EXCHANGE)
        await stream.write(good + good)
        replies = await read_replies(stream)
        self.assertEqual(replies[0], "ACK FILE 12 bytes")
        self.assertTrue(replies[1].startswith("ERR refused: received files are full"), replies)
        self.assertEqual(len(list(received.iterdir())), 2)
        # --message-max-bytes 1000: a bigger message is refused at its header, before its payload.
        stream = await client.dial(beta.address, PORT_DATA_EXCHANGE)
        await stream.write(struct.pack(">II", dataexchange.TYPE_TEXT, 1001))
        [reply] = await read_replies(stream)
        self.assertIn("TEXT message of 1001 bytes is larger than this node accepts (1000 bytes)", reply)

    # -- events --------------------------------------------------------------------------------

    async def wait_for_links(self, publisher_client, patterns):
        """Until the publisher's broker holds the peers' subscriptions (federation links) for ``patterns``."""
        async def linked():
            stats = await publisher_client.event_stats()
            held = [s["pattern"] for s in stats["subscribers"] if s["subscriber"].startswith("stream ")]
            return all(held.count(pattern) >= count for pattern, count in patterns.items())

        await wait_until(linked, f"federation links for {patterns}")

    async def test_pubsub_across_three_daemons(self):
        alpha, beta, gamma = await self.start("alpha", "beta", "gamma")
        clients = await self.trust_each_other(alpha, beta, gamma)
        events = clients[alpha].open_event_stream()
        own = await events.subscribe("metrics.*").ready  # the publisher's own subscription: never fed
        wildcard = await clients[beta].open_event_stream().subscribe("metrics.*").ready
        exact = await clients[gamma].open_event_stream().subscribe("metrics.cpu").ready
        also_exact = await clients[gamma].open_event_stream().subscribe("metrics.cpu").ready
        await self.wait_for_links(clients[alpha], {"metrics.*": 1, "metrics.cpu": 1})

        for topic, data in [("metrics.cpu", b"41"), ("metrics.cpu.load", b"0.7"), ("metrics", b"no"),
                            ("other.cpu", b"no"), ("metricsX.cpu", b"no")]:
            await events.publish(topic, data)
        # The last one through pilotctl, on alpha's local broker.
        await self.ok(alpha, "publish", "metrics.cpu", "--data", "end")

        async def until_end(subscription):
            seen = []
            while not seen or seen[-1].data != b"end":
                seen.append(await subscription.get().addTimeout(30, reactor))
            return [(event.topic, event.data) for event in seen]

        self.assertEqual(await until_end(wildcard),
                         [("metrics.cpu", b"41"), ("metrics.cpu.load", b"0.7"), ("metrics.cpu", b"end")])
        self.assertEqual(await until_end(exact), [("metrics.cpu", b"41"), ("metrics.cpu", b"end")])
        self.assertEqual(await until_end(also_exact), [("metrics.cpu", b"41"), ("metrics.cpu", b"end")])
        # No duplicates arrive later, and the publisher got nothing back.
        await events.publish("metrics.cpu", b"after")
        self.assertEqual((await exact.get().addTimeout(30, reactor)).data, b"after")
        self.assertEqual(len(exact._events), 0)
        # The publishing client got none of its own events; pilotctl's (another client) it did.
        self.assertEqual(list(own._events), [("metrics.cpu", b"end")])
        # A local client on alpha other than the publisher does get alpha's events.
        local = await (await alpha.connect()).open_event_stream().subscribe("metrics.*").ready
        await events.publish("metrics.mem", b"1")
        self.assertEqual((await local.get().addTimeout(30, reactor)).topic, "metrics.mem")

        # pilotctl subscribe (local broker, bounded) sees events published on another daemon.
        listening = ensureDeferred(self.ok(beta, "subscribe", "metrics.*", "--count", "2", "--timeout", "60s"))

        async def cli_linked():
            stats = await clients[beta].event_stats()
            return sum(1 for s in stats["subscribers"]
                       if s["pattern"] == "metrics.*" and s["subscriber"].startswith("local ")) >= 2

        await wait_until(cli_linked, "pilotctl's subscription on beta")
        await events.publish("metrics.disk", b"a")
        await events.publish("metrics.disk.io", b"b")
        received = await listening
        self.assertEqual(received, {"events": [{"topic": "metrics.disk", "data": "a", "bytes": 1},
                                               {"topic": "metrics.disk.io", "data": "b", "bytes": 1}],
                                    "timeout": False})

    async def test_a_stalled_subscriber_stalls_nobody_else(self):
        alpha, beta = await self.start("alpha", "beta")
        clients = await self.trust_each_other(alpha, beta)
        stalled = await (await beta.connect()).open_event_stream().subscribe("load").ready
        healthy = await clients[beta].open_event_stream().subscribe("load").ready
        await self.wait_for_links(clients[alpha], {"load": 1})
        events = clients[alpha].open_event_stream()
        payload = b"x" * 4096
        # 5.6 MB in all: more than the stalled subscriber's client buffer and broker queue together.
        # In batches the healthy subscriber keeps up with, so alpha's queue for beta never overflows.
        for batch in range(14):
            for n in range(100):
                await events.publish("load", payload)
            for n in range(100):
                await healthy.get().addTimeout(30, reactor)
        stats = await clients[beta].event_stats()
        records = {s["subscriber"]: s for s in stats["subscribers"]}
        self.assertGreater(records[f"local subscription {stalled.id}"]["dropped"], 0)
        self.assertEqual(records[f"local subscription {healthy.id}"]["dropped"], 0)

    async def test_pilotctl_at_a_named_node_speaks_port_1002(self):
        alpha, beta = await self.start("alpha", "beta")
        alpha_client = await alpha.connect()
        listening = ensureDeferred(self.on(beta, "subscribe", "alpha", "chat.*", "--count", "1", "--timeout", "30s"))

        async def subscribed():
            stats = await alpha_client.event_stats()
            return any(s["pattern"] == "chat.*" for s in stats["subscribers"])

        await wait_until(subscribed, "beta's subscription at alpha's broker")
        published = await self.ok(beta, "publish", alpha.address, "chat.room", "--data", "hi")
        self.assertEqual(published, {"target": alpha.address, "topic": "chat.room", "bytes": 2})
        result = await listening
        self.assertEqual(result.code, 0, result)
        self.assertEqual(result.stdout, "[chat.room] hi\n")
        self.assertIn(f'subscribed to "chat.*" on {alpha.address}', result.stderr)

    # -- tasks --------------------------------------------------------------------------------

    async def test_task_life_cycle(self):
        alpha, beta = await self.start("alpha", "beta")
        client = await alpha.connect()

        async def polo():
            return [(await client.lookup(node))["polo_score"] for node in (alpha.node_id, beta.node_id)]

        before = await polo()
        submitted = await self.ok(alpha, "task", "submit", "beta", "--task", "summarise the logs")
        self.assertEqual((submitted["status"], submitted["accepted"], submitted["message"]),
                         (200, True, "Task received with status NEW"))
        task_id = submitted["task_id"]
        mine = json.loads((Path(alpha.home) / "tasks" / "submitted" / f"{task_id}.json").read_text())
        self.assertEqual((mine["to_node"], mine["status"]), (beta.node_id, "NEW"))

        queue = await self.ok(beta, "task", "queue")
        self.assertEqual([(q["task_id"], q["from"]) for q in queue["queue"]], [(task_id, alpha.address)])
        accepted = await self.ok(beta, "task", "accept", "--id", task_id)
        self.assertEqual(accepted, {"task_id": task_id, "status": "ACCEPTED", "message": "Task accepted"})
        again = await self.on(beta, "task", "accept", "--id", task_id, "--json")
        self.assertEqual(again.error()["code"], "invalid_state")

        def submitted_status():
            return json.loads((Path(alpha.home) / "tasks" / "submitted" / f"{task_id}.json").read_text())["status"]

        await wait_until(lambda: submitted_status() == "ACCEPTED", "the submitter to learn of the acceptance")
        executing = await self.ok(beta, "task", "execute")
        self.assertEqual((executing["task_id"], executing["status"], executing["from"]),
                         (task_id, "EXECUTING", alpha.address))
        refused = await self.on(beta, "task", "send-results", "--id", task_id, "--file", __file__, "--json")
        self.assertEqual(refused.error()["code"], "invalid_argument")  # source code is not a result
        done = await self.ok(beta, "task", "send-results", "--id", task_id, "--results", "all quiet")
        self.assertEqual((done["status"], done["sent_to"], done["sent_type"]), ("SUCCEEDED", alpha.address, "text"))
        await wait_until(lambda: submitted_status() == "COMPLETED", "the submitter to store the results")
        # The submitter pays a point, the executor earns the reward (1 for so short a task).
        expected = [before[0] - 1, before[1] + 1]
        await wait_until(lambda: ensureDeferred(polo()).addCallback(lambda now: now == expected),
                         "the polo scores to move")
        result = Path(alpha.home) / "tasks" / "results" / f"{task_id}_result.txt"
        self.assertEqual(result.read_text(), "all quiet")
        listing = await self.ok(alpha, "task", "list", "--type", "submitted")
        self.assertEqual([(t["task_id"], t["status"]) for t in listing["tasks"]], [(task_id, "COMPLETED")])
        none_left = await self.on(beta, "task", "execute", "--json")
        self.assertEqual(none_left.error()["code"], "not_found")
        # alpha's polo score is now below beta's: beta refuses, and pilotctl exits non-zero with its reason.
        refused_task = await self.on(alpha, "task", "submit", "beta", "--task", "another", "--json")
        self.assertEqual((refused_task.code, refused_task.error()["code"]), (1, "refused"), refused_task)
        self.assertIn("Polo score too low", refused_task.error()["message"])

    async def test_the_task_demo_twice_from_a_new_node(self):
        """docs/services.md: two tasks in a row, then the executor works through them; then polo says no."""
        alpha, beta = await self.start("alpha", "beta")
        tasks = [await self.ok(alpha, "task", "submit", "beta", "--task", task)
                 for task in ("summarise the logs", "count the errors")]
        self.assertEqual([t["accepted"] for t in tasks], [True, True])
        for task in tasks:
            await self.ok(beta, "task", "accept", "--id", task["task_id"])
        for _ in tasks:
            executing = await self.ok(beta, "task", "execute")
            await self.ok(beta, "task", "send-results", "--id", executing["task_id"], "--results", "done")
        client = await alpha.connect()

        async def settled():
            listing = await self.ok(alpha, "task", "list", "--type", "submitted")
            scores = [(await client.lookup(node))["polo_score"] for node in (alpha.node_id, beta.node_id)]
            return {t["status"] for t in listing["tasks"]} == {"COMPLETED"} and scores == [-2, 2]

        await wait_until(settled, "both results stored and the polo scores moved")
        # Two points paid, two earned: a third task is refused, and pilotctl says so and why.
        refused = await self.on(alpha, "task", "submit", "beta", "--task", "one more", "--json")
        self.assertEqual(refused.code, 1, refused)
        error = refused.error()
        self.assertEqual(error["code"], "refused")
        self.assertIn("Polo score too low: submitter=-2, receiver=2", error["message"])
        self.assertIn("executing tasks", error["hint"])
        human = await self.on(alpha, "task", "submit", "beta", "--task", "one more")
        self.assertNotEqual(human.code, 0)
        self.assertIn("Polo score too low", human.stderr)

    async def test_results_only_from_the_executor_and_only_into_results(self):
        alpha, beta, gamma = await self.start("alpha", "beta", "gamma")
        task_id = (await self.ok(alpha, "task", "submit", "beta", "--task", "t"))["task_id"]
        home = Path(alpha.home)

        async def send_results(sender, document):
            stream = await (await sender.connect()).dial(alpha.address, PORT_TASK_SUBMIT)
            body = json.dumps({"task_id": task_id, "completed_at": "2026-01-01T00:00:00Z", **document}).encode()
            await stream.write(struct.pack(">II", tasksubmit.TYPE_SEND_RESULTS, len(body)) + body)
            self.assertEqual(await stream.read(), b"")  # one frame read, then the service closes

        # A request frame longer than its type needs is refused at its header, unread.
        stream = await (await gamma.connect()).dial(alpha.address, PORT_TASK_SUBMIT)
        await stream.write(struct.pack(">II", tasksubmit.TYPE_SUBMIT, tasksubmit.MAX_SUBMIT_FRAME + 1))
        self.assertEqual(await stream.read(), b"")
        owned = base64.b64encode(b"owned").decode()
        for name in ("x/../../../victim/requirements.txt", "../../victim.txt", ".bashrc.txt"):
            await send_results(beta, {"result_type": "file", "filename": name, "file_data": owned})
        await send_results(gamma, {"result_type": "text", "result_text": "forged by gamma"})
        self.assertFalse((home / "victim").exists() or (home.parent / "victim.txt").exists())
        self.assertFalse((home / "tasks" / "results").exists())
        submitted = home / "tasks" / "submitted" / f"{task_id}.json"
        self.assertEqual(json.loads(submitted.read_text())["status"], "NEW")
        # The executor's real results, by its pilotctl, are stored under a safe name.
        await self.ok(beta, "task", "accept", "--id", task_id)
        await self.ok(beta, "task", "execute")
        await self.ok(beta, "task", "send-results", "--id", task_id, "--results", "the real ones")
        await wait_until(lambda: json.loads(submitted.read_text())["status"] == "COMPLETED", "the results")
        self.assertEqual([p.name for p in (home / "tasks" / "results").iterdir()], [f"{task_id}_result.txt"])
        await send_results(beta, {"result_type": "text", "result_text": "replayed"})  # once only
        self.assertEqual((home / "tasks" / "results" / f"{task_id}_result.txt").read_text(), "the real ones")

    async def test_a_task_not_accepted_in_time_expires(self):
        alpha, beta = await self.start("alpha", "beta")
        task_id = (await self.ok(alpha, "task", "submit", beta.address, "--task", "late"))["task_id"]
        # pilotctl on beta, in this process, with a clock past the one-minute accept deadline.
        later = Clock()
        later.advance(reactor.seconds() + 61)
        stdout, stderr = io.StringIO(), io.StringIO()
        code = await run_pilotctl(["--json", "task", "accept", "--id", task_id],
                                  environ={"PILOT_HOME": beta.home, "PILOT_SOCKET": beta.socket_path},
                                  stdout=stdout, stderr=stderr, reactor=reactor, clock=later)
        self.assertEqual(code, 1)
        self.assertEqual(json.loads(stderr.getvalue())["code"], "expired")
        declined = await self.ok(beta, "task", "decline", "--id", task_id, "--justification", "too late")
        self.assertEqual(declined["status"], "DECLINED")
        missing = await self.on(beta, "task", "accept", "--id", "0" * 8 + "-0000-0000-0000-" + "0" * 12, "--json")
        self.assertEqual(missing.error()["code"], "not_found")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class ExampleTests(NetworkMixin, TestCase):
    """The example pipelines, each role a real process on a real daemon, checked by their output."""

    def example(self, daemon, script, *args):
        """Start ``examples/<script> args`` as an agent of ``daemon``; a Deferred of (exit code, stdout)."""
        collect = _Collect()
        env = dict(os.environ, PILOT_SOCKET=daemon.socket_path, PILOT_HOME=daemon.home)
        process = reactor.spawnProcess(collect, sys.executable, [sys.executable, str(EXAMPLES / script), *args],
                                       env=env)

        def kill():
            if collect.ended.called:
                return None
            process.signalProcess("KILL")
            return collect.ended

        self.addCleanup(kill)
        ended = Deferred()
        collect.ended.addCallback(lambda code: ended.callback((code, collect.stdout.decode(), collect.stderr.decode()))
                                  or code)
        return ended.addTimeout(60, reactor)

    async def links(self, client, *patterns):
        async def held():
            stats = await client.event_stats()
            linked = {s["pattern"] for s in stats["subscribers"] if s["subscriber"].startswith("stream ")}
            return set(patterns) <= linked

        await wait_until(held, f"federation links for {patterns}")

    async def test_monitoring_pipeline(self):
        alpha, beta = await self.start("alpha", "beta")
        clients = await self.trust_each_other(alpha, beta)
        aggregator = self.example(beta, "monitoring_pipeline.py", "aggregator", "--count", "4")
        alerter = self.example(alpha, "monitoring_pipeline.py", "alerter", "--count", "2")
        await self.links(clients[alpha], "metrics.*")
        await self.links(clients[beta], "alerts.*")
        for role, values in (("cpu", "50,95"), ("memory", "40,93")):
            code, out, err = await self.example(alpha, "monitoring_pipeline.py", role, "--values", values)
            self.assertEqual(code, 0, err)
        code, out, err = await aggregator
        self.assertEqual(code, 0, err)
        self.assertEqual(sorted(out.splitlines()), sorted([
            "aggregator ready", "metrics.cpu value=50 avg=50.0", "metrics.cpu value=95 avg=72.5",
            "metrics.memory value=40 avg=40.0", "metrics.memory value=93 avg=66.5"]))
        code, out, err = await alerter
        self.assertEqual(code, 0, err)
        self.assertEqual(sorted(out.splitlines()), [
            "ALERT cpu at 95 (threshold 80)", "ALERT memory at 93 (threshold 90)", "alerter ready"])

    async def test_workflow_pipeline(self):
        alpha, beta = await self.start("alpha", "beta")
        clients = await self.trust_each_other(alpha, beta)
        report = self.example(alpha, "workflow_pipeline.py", "report", "--count", "5")
        analyse = self.example(alpha, "workflow_pipeline.py", "analyse", "--count", "5")
        handle = self.example(beta, "workflow_pipeline.py", "handle", "--count", "5")
        await self.links(clients[beta], "pipeline.stage1.output", "pipeline.*.complete")
        await self.links(clients[alpha], "pipeline.stage2.result.*")
        code, out, err = await self.example(beta, "workflow_pipeline.py", "ingest", "--values", "12,97,40,99,3")
        self.assertEqual(code, 0, err)
        for stage in (analyse, handle):
            code, out, err = await stage
            self.assertEqual(code, 0, err)
        code, out, err = await report
        self.assertEqual(code, 0, err)
        self.assertEqual(sorted(out.splitlines()), [
            "REPORT item1 value=12 archived", "REPORT item2 value=97 escalated", "REPORT item3 value=40 archived",
            "REPORT item4 value=99 escalated", "REPORT item5 value=3 archived", "report ready"])
