"""broker/router.py, RetainedStore: retained messages by topic [3.3.1.3], found by filter with
the matching rules of [4.7], bounded by ``max_messages``.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from broker.message import Message
from broker.router import RetainedStore
from broker.topics import matches


def msg(topic: str, payload: bytes = b"x") -> Message:
    return Message(topic, payload, 1, True)


def topics_matching(store: RetainedStore, topic_filter: str) -> list[str]:
    found = [m.topic for m in store.matching(topic_filter)]
    assert len(found) == len(set(found)), f"duplicates for {topic_filter!r}: {found}"
    return sorted(found)


def test_store_get_and_replace() -> None:
    store = RetainedStore(10)
    first, second = msg("a/b", b"1"), msg("a/b", b"2")
    assert store.get("a/b") is None
    assert store.store(first) is True
    assert store.get("a/b") is first
    assert store.store(second) is True
    assert store.get("a/b") is second
    assert len(store) == 1
    assert store.messages() == [second]


def test_empty_payload_clears() -> None:
    store = RetainedStore(10)
    store.store(msg("a/b"))
    store.store(msg("a/c"))
    assert store.store(msg("a/b", b"")) is True
    assert store.get("a/b") is None
    assert len(store) == 1
    assert topics_matching(store, "a/#") == ["a/c"]
    assert topics_matching(store, "a/b") == []
    # Clearing a topic that has nothing retained is fine and changes nothing.
    assert store.store(msg("x/y", b"")) is True
    assert store.store(msg("a", b"")) is True
    assert len(store) == 1


def test_exact_filter() -> None:
    store = RetainedStore(10)
    for t in ("a", "a/b", "a/b/c", "$SYS/x"):
        store.store(msg(t))
    assert topics_matching(store, "a/b") == ["a/b"]
    assert topics_matching(store, "$SYS/x") == ["$SYS/x"]
    assert topics_matching(store, "a/b/c/d") == []
    assert topics_matching(store, "b") == []


def test_wildcard_filters() -> None:
    store = RetainedStore(100)
    topics = ["sport", "sport/tennis", "sport/tennis/player1", "sport/golf", "/finance", "/", "x"]
    for t in topics:
        store.store(msg(t))
    assert topics_matching(store, "sport/+") == ["sport/golf", "sport/tennis"]
    assert topics_matching(store, "sport/#") == [
        "sport",  # '#' includes the parent level [4.7.1.2]
        "sport/golf",
        "sport/tennis",
        "sport/tennis/player1",
    ]
    assert topics_matching(store, "sport/tennis/#") == ["sport/tennis", "sport/tennis/player1"]
    assert topics_matching(store, "+") == ["sport", "x"]
    assert topics_matching(store, "+/+") == ["/", "/finance", "sport/golf", "sport/tennis"]
    assert topics_matching(store, "+/tennis/+") == ["sport/tennis/player1"]
    assert topics_matching(store, "#") == sorted(topics)
    assert topics_matching(store, "+/#") == sorted(topics)
    assert topics_matching(store, "nothing/#") == []


def test_dollar_topics_not_matched_by_leading_wildcards() -> None:
    store = RetainedStore(10)
    for t in ("$SYS", "$SYS/x", "$SYS/x/y", "a/$SYS", "a"):
        store.store(msg(t))
    assert topics_matching(store, "#") == ["a", "a/$SYS"]
    assert topics_matching(store, "+") == ["a"]
    assert topics_matching(store, "+/x") == []
    assert topics_matching(store, "+/#") == ["a", "a/$SYS"]
    assert topics_matching(store, "$SYS/#") == ["$SYS", "$SYS/x", "$SYS/x/y"]
    assert topics_matching(store, "$SYS/+") == ["$SYS/x"]
    assert topics_matching(store, "a/+") == ["a/$SYS"]


def test_max_messages_refuses_new_topics_only() -> None:
    store = RetainedStore(2)
    assert store.store(msg("a")) is True
    assert store.store(msg("b")) is True
    assert store.store(msg("c")) is False
    assert store.get("c") is None
    assert topics_matching(store, "#") == ["a", "b"]
    # Replacing a topic that is already retained does not grow the store.
    replacement = msg("a", b"new")
    assert store.store(replacement) is True
    assert store.get("a") is replacement
    assert len(store) == 2
    # Clearing makes room.
    assert store.store(msg("a", b"")) is True
    assert store.store(msg("c")) is True
    assert topics_matching(store, "#") == ["b", "c"]


def test_zero_capacity_store_keeps_nothing() -> None:
    store = RetainedStore(0)
    assert store.store(msg("a")) is False
    assert len(store) == 0
    assert store.matching("#") == []


def test_clear_prunes_the_trie() -> None:
    store = RetainedStore(10)
    store.store(msg("a/b/c"))
    store.store(msg("a/x"))
    store.store(msg("a/b/c", b""))
    assert store._root == {"a": {"x": {}}}
    store.store(msg("a/x", b""))
    assert store._root == {}
    assert len(store) == 0


def test_clearing_a_child_keeps_a_retained_parent() -> None:
    store = RetainedStore(10)
    store.store(msg("a"))
    store.store(msg("a/b"))
    store.store(msg("a/b", b""))
    assert store.get("a") is not None
    assert topics_matching(store, "a") == ["a"]
    assert topics_matching(store, "#") == ["a"]
    assert topics_matching(store, "+") == ["a"]
    assert topics_matching(store, "a/#") == ["a"]


# --------------------------------------------------------------------------------------------
# Property: matching equals brute force over the stored topics
# --------------------------------------------------------------------------------------------

topic_levels = st.sampled_from(["a", "b", "", "$SYS", "c"])
filter_levels = st.sampled_from(["a", "b", "", "$SYS", "+"])
topic_names = st.lists(topic_levels, min_size=1, max_size=4).map("/".join).filter(bool)
topic_filters = st.builds(
    lambda levels, hash_: "/".join(levels + ["#"] if hash_ else levels),
    st.lists(filter_levels, max_size=3),
    st.booleans(),
).filter(bool)


def check_against_brute_force(store: RetainedStore, filters: list[str]) -> None:
    stored = [m.topic for m in store.messages()]
    for f in filters:
        assert topics_matching(store, f) == sorted(t for t in stored if matches(f, t)), f


@given(
    st.lists(topic_names, max_size=15),
    st.lists(topic_filters, min_size=1, max_size=8),
    st.integers(1, 20),
)
def test_matching_equals_brute_force_after_stores(
    topics: list[str], filters: list[str], capacity: int
) -> None:
    store = RetainedStore(capacity)
    kept: set[str] = set()
    for t in topics:
        accepted = store.store(msg(t))
        assert accepted == (t in kept or len(kept) < capacity)
        if accepted:
            kept.add(t)
    assert sorted(m.topic for m in store.messages()) == sorted(kept)
    check_against_brute_force(store, filters)


@given(
    st.lists(st.tuples(topic_names, st.booleans()), max_size=20),
    st.lists(topic_filters, min_size=1, max_size=8),
)
@example([("a", False), ("a/b", False), ("a/b", True)], ["#"])
def test_matching_equals_brute_force_after_stores_and_clears(
    ops: list[tuple[str, bool]], filters: list[str]
) -> None:
    store = RetainedStore(1000)
    for topic, clear in ops:
        store.store(msg(topic, b"" if clear else b"x"))
    check_against_brute_force(store, filters)
    # Once every topic is cleared the trie is empty again.
    for m in store.messages():
        store.store(msg(m.topic, b""))
    assert store._root == {}
