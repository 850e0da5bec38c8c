"""Topic matching for the event stream broker: the documented wildcard rules."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.wire.topics import SubscriptionIndex, topic_matches

SETTINGS = settings(max_examples=300, deadline=None)

segments = st.sampled_from(["a", "b", "cpu", "*", "", "x*"])
names = st.lists(segments, min_size=1, max_size=4).map(".".join)

CASES = [
    # pattern, topic, matches
    ("*", "metrics", True),
    ("*", "metrics.cpu.load", True),
    ("*", "", True),
    ("metrics.*", "metrics.cpu", True),
    ("metrics.*", "metrics.cpu.load", True),
    ("metrics.*", "metrics", False),
    ("metrics.*", "metricsX.cpu", False),
    ("pipeline.*.complete", "pipeline.build.complete", True),
    ("pipeline.*.complete", "pipeline.complete", False),
    ("pipeline.*.complete", "pipeline.a.b.complete", False),
    ("pipeline.*.complete", "pipeline.build.failed", False),
    ("a.*.*", "a.b.c.d", True),
    ("a.*.*", "a.b", False),
    ("metrics.cpu", "metrics.cpu", True),
    ("metrics.cpu", "metrics.cpu.load", False),
    ("metrics.cpu", "metrics", False),
    ("cpu*", "cpu1", False),
    ("cpu*", "cpu*", True),
    ("metrics.*", "metrics.*", True),
    ("", "", True),
    ("", "a", False),
]


class TopicMatchesTests(SynchronousTestCase):
    def test_documented_examples(self):
        for pattern, topic, expected in CASES:
            self.assertEqual(topic_matches(pattern, topic), expected, (pattern, topic))

    @SETTINGS
    @given(names)
    def test_every_topic_matches_itself(self, topic):
        # Whatever the reference delivers (byte-equal topics), we deliver too.
        self.assertTrue(topic_matches(topic, topic))


class SubscriptionIndexTests(SynchronousTestCase):
    def test_documented_examples(self):
        for pattern, topic, expected in CASES:
            index = SubscriptionIndex()
            index.add(pattern, "s")
            self.assertEqual(index.match(topic), {"s"} if expected else set(), (pattern, topic))

    def test_each_subscriber_once(self):
        index = SubscriptionIndex()
        index.add("*", "s")
        index.add("a.*", "s")
        index.add("a.b", "t")
        self.assertEqual(index.match("a.b"), {"s", "t"})
        self.assertEqual(len(index), 3)

    def test_remove_prunes(self):
        index = SubscriptionIndex()
        index.add("a.*.c", 1)
        index.add("a.*", 2)
        index.remove("a.*.c", 1)
        index.remove("a.*.c", 1)
        index.remove("never.added", 3)
        self.assertEqual(index.match("a.b.c"), {2})
        index.remove("a.*", 2)
        self.assertEqual(len(index), 0)
        self.assertTrue(index._root.is_empty())

    @SETTINGS
    @given(st.lists(st.tuples(names, st.integers(0, 5)), max_size=12), st.lists(names, max_size=6),
           st.lists(st.integers(0, 11), max_size=4))
    def test_index_agrees_with_topic_matches(self, subscriptions, topics, removals):
        index = SubscriptionIndex()
        for pattern, subscriber in subscriptions:
            index.add(pattern, subscriber)
        live = set(subscriptions)
        for position in removals:
            if position < len(subscriptions):
                index.remove(*subscriptions[position])
                live.discard(subscriptions[position])
        self.assertEqual(len(index), len(live))
        for topic in topics:
            expected = {s for p, s in live if topic_matches(p, topic)}
            self.assertEqual(index.match(topic), expected, topic)
