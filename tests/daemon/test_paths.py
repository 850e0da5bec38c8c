"""Which peers get same-host segments, and how the kernel is asked."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.daemon.paths import LOOPBACK_MTU, SegmentSizes, is_on_this_host, route_mtu
from pilotnet.transport.config import StreamConfig
from pilotnet.wire.address import Addr

CONFIG = StreamConfig()


class KernelRouteTests(SynchronousTestCase):
    def test_loopback_addresses_stay_on_this_host(self):
        self.assertTrue(is_on_this_host("127.0.0.1"))
        self.assertTrue(is_on_this_host("127.3.2.1"))
        self.assertGreaterEqual(route_mtu("127.0.0.1"), LOOPBACK_MTU)

    def test_a_documentation_network_address_does_not(self):
        # Routed out of a network interface (MTU ~1500), or unroutable here: either way not local.
        self.assertFalse(is_on_this_host("198.51.100.7"))

    def test_names_are_never_resolved(self):
        self.assertFalse(is_on_this_host("localhost"))
        self.assertFalse(is_on_this_host("not an address"))


class SegmentSizesTests(SynchronousTestCase):
    def setUp(self):
        self.endpoints = {1: ("127.0.0.1", 4000), 2: ("203.0.113.9", 4000)}
        self.asked = []

        def on_this_host(host):
            self.asked.append(host)
            return host == "127.0.0.1"

        self.sizes = SegmentSizes(CONFIG, 32768, self.endpoints.get, on_this_host)

    def test_a_peer_on_this_host_gets_large_segments_and_a_buffer_for_them(self):
        config = self.sizes.config_for(Addr(0, 1))
        self.assertEqual(config.mss, 32768)
        self.assertGreaterEqual(config.receive_buffer, 16 * 32768)
        self.assertEqual(config.initial_rto, CONFIG.initial_rto)

    def test_remote_unknown_and_relayed_peers_keep_the_configured_segment_size(self):
        self.assertIs(self.sizes.config_for(Addr(0, 2)), CONFIG)
        self.assertIs(self.sizes.config_for(Addr(0, 3)), CONFIG)

    def test_the_kernel_is_asked_once_per_host(self):
        for _ in range(3):
            self.sizes.config_for(Addr(0, 1))
        self.assertEqual(self.asked, ["127.0.0.1"])

    def test_zero_or_a_smaller_local_size_turns_it_off(self):
        for local_mss in (0, 512):
            sizes = SegmentSizes(CONFIG, local_mss, self.endpoints.get, lambda host: True)
            self.assertIs(sizes.config_for(Addr(0, 1)), CONFIG)
