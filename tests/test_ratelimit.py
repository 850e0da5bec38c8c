"""Token buckets: the per-key limiter and the per-connection bucket."""

from twisted.trial.unittest import SynchronousTestCase

from pilotnet.ratelimit import RateLimiter, TokenBucket


class TokenBucketTests(SynchronousTestCase):
    def test_starts_full_and_grants_at_most_what_it_holds(self):
        bucket = TokenBucket(10, 10)
        self.assertEqual(bucket.take(4, 100.0), 4)
        self.assertEqual(bucket.take(10, 100.0), 6)
        self.assertEqual(bucket.take(1, 100.0), 0)

    def test_refills_at_its_rate_up_to_the_burst(self):
        bucket = TokenBucket(10, 10)
        bucket.take(10, 100.0)
        self.assertEqual(bucket.take(7, 100.5), 5)
        self.assertEqual(bucket.take(50, 200.0), 10)

    def test_a_steady_rate_below_the_limit_is_always_granted(self):
        bucket = TokenBucket(100, 100)
        now = 0.0
        for _ in range(1000):
            self.assertEqual(bucket.take(9, now), 9)
            now += 0.1


class RateLimiterTests(SynchronousTestCase):
    def test_per_key_and_purged_when_idle(self):
        limiter = RateLimiter(burst=2, window=60.0)
        self.assertTrue(limiter.allow("a", 0.0))
        self.assertTrue(limiter.allow("a", 0.0))
        self.assertFalse(limiter.allow("a", 0.0))
        self.assertTrue(limiter.allow("b", 0.0))
        limiter.purge(200.0)
        self.assertEqual(len(limiter), 0)

    def test_a_bounded_table_forgets_the_least_recently_used_key(self):
        limiter = RateLimiter(burst=1, window=60.0, max_keys=3)
        for key in ("a", "b", "c"):
            self.assertTrue(limiter.allow(key, 0.0))
        self.assertFalse(limiter.allow("a", 1.0))  # "a" is now the most recently used
        self.assertTrue(limiter.allow("d", 1.0))  # evicts "b"
        self.assertEqual(len(limiter), 3)
        self.assertFalse(limiter.allow("a", 1.0))
        self.assertTrue(limiter.allow("b", 1.0))  # forgotten, so full again
