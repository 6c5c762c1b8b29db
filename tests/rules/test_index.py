"""The rules' topic index against the broker's own filter matching."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.topics import matches
from rules.index import TopicIndex


def test_exact_plus_hash_and_parent_levels() -> None:
    index: TopicIndex[str] = TopicIndex(
        [
            ("sensors/+/telemetry", "plus"),
            ("sensors/#", "hash"),
            ("sensors/kitchen/telemetry", "exact"),
            ("other", "other"),
        ]
    )
    assert index.match("sensors/kitchen/telemetry") == ("plus", "hash", "exact")
    assert index.match("sensors") == ("hash",)
    assert index.match("sensors/a/b/c") == ("hash",)
    assert index.match("nothing") == ()
    assert len(index) == 4


def test_dollar_topics_need_a_dollar_filter() -> None:
    index: TopicIndex[str] = TopicIndex([("#", "all"), ("+/events/#", "plus"), ("$aws/#", "aws")])
    assert index.match("$aws/events/presence/connected/c1") == ("aws",)
    assert index.match("a/events/x") == ("all", "plus")


def test_an_entry_under_two_matching_filters_is_listed_once_in_insertion_order() -> None:
    index: TopicIndex[str] = TopicIndex()
    index.add("a/#", "first")
    index.add("a/b", "second")
    index.add("a/+", "first")
    assert index.match("a/b") == ("first", "second")


def test_the_cache_is_cleared_when_a_filter_is_added() -> None:
    index: TopicIndex[str] = TopicIndex([("a/b", "one")])
    assert index.match("a/b") == ("one",)
    index.add("a/+", "two")
    assert index.match("a/b") == ("one", "two")


LEVELS = st.sampled_from(["a", "b", "c", "$s"])
FILTER_LEVELS = st.sampled_from(["a", "b", "c", "$s", "+", "#"])


@given(
    st.lists(
        st.lists(FILTER_LEVELS, min_size=1, max_size=4)
        .filter(lambda levels: "#" not in levels[:-1])
        .map("/".join),
        max_size=8,
    ),
    st.lists(LEVELS, min_size=1, max_size=5).map("/".join),
)
def test_matches_exactly_what_the_broker_matches(filters: list[str], topic: str) -> None:
    index: TopicIndex[int] = TopicIndex((f, i) for i, f in enumerate(filters))
    expected = tuple(i for i, f in enumerate(filters) if matches(f, topic))
    assert index.match(topic) == expected
