"""The network commands' human output (the reference's columns and wording) and their argument checks."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.cli.args import Args
from pilotnet.cli.commands import network_invites, network_membership
from pilotnet.cli.output import Output
from pilotnet.errors import INVALID_ARGUMENT, NOT_FOUND, PilotError


class Answers:
    """A context whose daemon answers each command from ``answers`` (a PilotError is raised)."""

    json = False

    def __init__(self, **answers):
        self.answers = answers
        self.asked = []

    def ask(self, spec, **arguments):
        self.asked.append((spec.name, arguments))
        answer = self.answers[spec.name]
        if isinstance(answer, PilotError):
            raise answer
        return {"result": answer}


def run(function, context, *argv):
    return function(context, Args(list(argv)))


class TextTests(SynchronousTestCase):
    def test_list_table(self):
        text = network_membership.list_text([{"id": 1, "name": "research", "join_rule": "open", "members": 3},
                                             {"id": 12, "name": "ops", "join_rule": "token", "members": 10}])
        self.assertEqual(text.splitlines(), ["ID  NAME      JOIN RULE  MEMBERS",
                                             "1   research  open       3",
                                             "12  ops       token      10"])
        self.assertTrue(network_membership.list_text([]).startswith("no networks\n"))

    def test_members_table(self):
        text = network_membership.members_text(3, [
            {"node_id": 5, "hostname": "alpha", "version": "pilotnet/0.9", "public": False},
            {"node_id": 6, "public": True}, {"node_id": 7, "offline": True}])
        self.assertEqual(text.splitlines(), ["NODE ID  HOSTNAME  VERSION       PUBLIC",
                                             "5        alpha     pilotnet/0.9  no",
                                             "6        -         -             yes",
                                             "7        -         -             offline"])
        self.assertEqual(network_membership.members_text(3, []), "network 3 has no members")

    def test_invites_table(self):
        text = network_invites.invites_text([{"network_id": 4, "inviter_id": 5, "timestamp": "2026-01-02T03:04:05Z"}])
        self.assertEqual(text.splitlines()[:2], ["NETWORK  INVITED BY  RECEIVED",
                                                 "4        5           2026-01-02T03:04:05Z"])
        self.assertEqual(network_invites.invites_text([]), "no pending invites")


class CommandTests(SynchronousTestCase):
    def test_join_sends_the_token_and_says_so(self):
        context = Answers(NetworkJoin={"type": "join_network_ok", "network_id": 3, "address": "3:0003.0000.0005"})
        result = run(network_membership.join, context, "3", "--token", "s3cret")
        self.assertEqual(context.asked, [("NetworkJoin", {"network_id": 3, "token": "s3cret"})])
        self.assertEqual(result, Output(context.answers["NetworkJoin"],
                                        "joined network 3\n  address on it: 3:0003.0000.0005"))

    def test_a_wrong_token_gets_a_hint(self):
        context = Answers(NetworkJoin=PilotError("invalid token for network 3", code=INVALID_ARGUMENT))
        error = self.assertRaises(PilotError, run, network_membership.join, context, "3", "--token", "x")
        self.assertEqual((error.code, error.message), (INVALID_ARGUMENT, "invalid token for network 3"))
        self.assertIn("--token", error.hint)

    def test_an_unknown_network_gets_the_list_hint(self):
        context = Answers(NetworkLeave=PilotError("network 9: network not found", code=NOT_FOUND))
        error = self.assertRaises(PilotError, run, network_membership.leave, context, "9")
        self.assertEqual((error.code, error.hint), (NOT_FOUND, "list the networks with: pilotctl network list"))

    def test_network_ids_are_checked_before_the_daemon_is_asked(self):
        for bad in ("0", "65536", "x", "-1"):
            context = Answers()
            error = self.assertRaises(PilotError, run, network_membership.members, context, bad)
            self.assertEqual(error.code, INVALID_ARGUMENT)
            self.assertEqual(context.asked, [])

    def test_leave_members_and_list(self):
        context = Answers(NetworkLeave={"type": "leave_network_ok", "network_id": 3},
                          NetworkMembers={"nodes": [{"node_id": 5}]}, NetworkList={"networks": []})
        self.assertEqual(run(network_membership.leave, context, "3").text, "left network 3")
        self.assertEqual(run(network_membership.members, context, "3").data,
                         {"network_id": 3, "nodes": [{"node_id": 5}]})
        self.assertEqual(run(network_membership.list_networks, context).data, {"networks": []})

    def test_invite_accept_reject(self):
        class Resolving(Answers):
            def resolve_now(self, target):
                from pilotnet.wire.address import Addr
                return Addr(0, 7)
        context = Resolving(NetworkInvite={"type": "invite_to_network_ok"},
                            NetworkRespondInvite={"type": "respond_invite_ok"},
                            NetworkInvites={"invites": [{"network_id": 4, "inviter_id": 5, "timestamp": 0}]})
        self.assertEqual(run(network_invites.invite, context, "4", "agent-c").text, "invited node 7 to network 4")
        context.answers["NetworkInvite"] = {"status": "already_invited"}
        self.assertEqual(run(network_invites.invite, context, "4", "agent-c").text,
                         "node 7 was already invited to network 4")
        self.assertEqual(run(network_invites.accept, context, "4").text, "accepted invite: joined network 4")
        self.assertEqual(run(network_invites.reject, context, "4").text, "rejected invite to network 4")
        self.assertEqual(run(network_invites.invites, context).data["invites"][0]["network_id"], 4)
        self.assertEqual(context.asked[-3:-1], [("NetworkRespondInvite", {"network_id": 4, "accept": True}),
                                                ("NetworkRespondInvite", {"network_id": 4, "accept": False})])


class InfoTextTests(SynchronousTestCase):
    def test_info_lists_our_networks_and_port_refusals(self):
        from pilotnet.cli.commands.node import _info_text

        text = _info_text({"node_id": 5, "address": "0:0000.0000.0005", "trust": {"port_refused_syns": 2},
                           "networks": [{"network_id": 3, "address": "3:0003.0000.0005", "members": 4,
                                         "allowed_ports": [80, 443]},
                                        {"network_id": 4, "address": "4:0004.0000.0005", "members": 2,
                                         "allowed_ports": []}]})
        lines = text.split("Networks:\n", 1)[1].splitlines()
        self.assertEqual([line.split() for line in lines[:3]], [
            ["ID", "ADDRESS", "MEMBERS", "ALLOWED", "PORTS"], ["3", "3:0003.0000.0005", "4", "80,443"],
            ["4", "4:0004.0000.0005", "2", "all"]])
        self.assertEqual(lines[3], "  Refused by allowed ports: 2 SYNs, 0 datagrams")
        self.assertNotIn("Networks:", _info_text({"node_id": 5, "networks": []}))
