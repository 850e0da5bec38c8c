"""The route table: each message once, with its standby and admin-override properties."""

from twisted.trial import unittest

from pilotnet.registry.dispatch import Route, RouteTable
from pilotnet.registry.handlers import Registry

# The reference's list of what a standby answers (controlplane §1.13), plus our beacon_register.
REFERENCE_STANDBY_READS = {
    "lookup", "resolve", "resolve_hostname", "list_networks", "list_nodes", "heartbeat",
    "poll_handshakes", "beacon_list", "beacon_register", "get_polo_score", "check_trust",
    "poll_invites", "get_key_info", "get_network_policy", "get_member_role",
}


def answer(request, peer, now):
    return {"type": "ok"}


class RouteTableTests(unittest.TestCase):
    def test_a_kind_registered_twice_is_refused(self):
        table = RouteTable([Route("lookup", answer)])
        with self.assertRaises(ValueError):
            table.add_all([Route("lookup", answer, on_standby=True)])

    def test_replace_keeps_the_properties(self):
        table = RouteTable([Route("lookup", answer, on_standby=True)])
        table.replace("lookup", lambda *a: {"type": "other"})
        route = table.get("lookup")
        self.assertTrue(route.on_standby)
        self.assertEqual(route.handler({}, ("127.0.0.1", 1), 0.0), {"type": "other"})

    def test_a_kind_that_is_not_text_has_no_route(self):
        self.assertIsNone(RouteTable([Route("lookup", answer)]).get(["lookup"]))


class RegistryRoutesTests(unittest.TestCase):
    def test_standby_answers_what_the_reference_standby_answers(self):
        self.assertTrue(REFERENCE_STANDBY_READS <= Registry().routes.standby_kinds())

    def test_no_mutation_is_answered_by_a_standby(self):
        standby = Registry().routes.standby_kinds()
        for kind in ("register", "deregister", "set_hostname", "create_network", "report_trust",
                     "set_polo_score", "set_webhook"):
            self.assertNotIn(kind, standby)

    def test_the_admin_token_stands_in_only_where_the_route_says(self):
        overridable = {route.kind for route in Registry().routes if route.admin_override}
        self.assertEqual(overridable, {"set_visibility", "set_task_exec", "set_hostname",
                                       "set_tags", "deregister", "join_network", "leave_network",
                                       "invite_to_network", "set_key_expiry"})
