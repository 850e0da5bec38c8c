"""Safe targets: schemes, link-local and metadata addresses, private ranges only when allowed."""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.errors import INVALID_ARGUMENT
from pilotnet.webhooks.targets import TargetRefused, check_address, check_url

REFUSED_ALWAYS = [
    "ftp://example.com/", "file:///etc/passwd", "gopher://example.com", "example.com/hook", "",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://169.254.1.2:8080/",
    "http://[fe80::1]/", "http://metadata.google.internal/computeMetadata/v1/", "http://METADATA.GOOGLE.INTERNAL./",
    "http://[::ffff:169.254.169.254]/", "http://user:pw@example.com/", "http://224.0.0.1/", "http:///nohost",
    "http://example.com/\n", "http://100.100.100.200/",
]
PRIVATE = ["http://127.0.0.1:8080/", "http://[::1]/", "http://10.1.2.3/", "https://192.168.1.1/",
           "http://172.16.0.1/", "http://[fd12::1]/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/"]


class CheckUrlTests(SynchronousTestCase):
    def test_forbidden_targets_are_refused_even_with_allow_private(self):
        for url in REFUSED_ALWAYS:
            for allow in (False, True):
                with self.assertRaises(TargetRefused, msg=url) as caught:
                    check_url(url, allow_private=allow)
                self.assertEqual(caught.exception.code, INVALID_ARGUMENT)

    def test_private_targets_need_the_option(self):
        for url in PRIVATE:
            with self.assertRaises(TargetRefused, msg=url):
                check_url(url)
            self.assertEqual(check_url(url, allow_private=True).url, url)

    def test_public_targets_and_names_pass(self):
        target = check_url("https://hooks.example.com/pilot?x=1")
        self.assertEqual((target.scheme, target.host, target.port), ("https", "hooks.example.com", 443))
        self.assertEqual(check_url("http://93.184.216.34:8080/").port, 8080)

    def test_resolved_addresses_are_checked_the_same_way(self):
        check_address("93.184.216.34")
        for address in ("169.254.169.254", "fe80::1%eth0", "::ffff:169.254.169.254"):
            self.assertRaises(TargetRefused, check_address, address, allow_private=True)
        self.assertRaises(TargetRefused, check_address, "127.0.0.1")
        check_address("127.0.0.1", allow_private=True)

    @given(st.text(max_size=300))
    def test_any_text_is_accepted_or_refused_cleanly(self, url):
        try:
            target = check_url(url, allow_private=True)
        except TargetRefused:
            return
        self.assertIn(target.scheme, ("http", "https"))

    @given(st.sampled_from(["http://", "https://"]), st.text(max_size=80), st.text(max_size=40))
    def test_url_shaped_text_is_accepted_or_refused_cleanly(self, scheme, host, rest):
        try:
            check_url(scheme + host + "/" + rest)
        except TargetRefused:
            pass
