"""broker/router.py, Router and SharedGroup: the subscription trie against the rules of [4.7]
and [3.3.5], and against brute force over topics.matches. RetainedStore is in
test_retained.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from broker.message import Message
from broker.router import (
    NO_LOCAL,
    RETAIN_AS_PUBLISHED,
    Router,
    SharedGroup,
    option_identifier,
    pack_options,
)
from broker.topics import matches


@dataclass(eq=False)
class Sub:
    """A subscriber that records what it was given (identity hash, like a Session)."""

    name: str
    online: bool = True
    got: list[tuple[str, int, bool]] = field(default_factory=list)

    def deliver(self, message: Message, qos: int, retain: bool) -> None:
        self.got.append((message.topic, qos, retain))

    def __repr__(self) -> str:
        return f"Sub({self.name!r})"


def subs_of(router: Router, topic: str) -> dict[str, int]:
    found, _ = router.match(topic)
    names = [s.name for s, _ in found]
    assert len(names) == len(set(names)), "a subscriber appears twice"
    return {s.name: q for s, q in found}


def groups_of(router: Router, topic: str) -> list[tuple[str, str]]:
    return sorted((g.name, g.filter) for g in router.match(topic)[1])


# --------------------------------------------------------------------------------------------
# Ordinary subscriptions
# --------------------------------------------------------------------------------------------


def test_exact_subscription() -> None:
    router = Router()
    a = Sub("a")
    assert router.subscribe(a, "sport/tennis", 1) is False
    assert subs_of(router, "sport/tennis") == {"a": 1}
    assert subs_of(router, "sport/tennis/x") == {}
    assert subs_of(router, "sport") == {}
    assert subs_of(router, "sport/Tennis") == {}
    assert router.match("other") == ([], [])


def test_single_level_wildcard() -> None:
    router = Router()
    router.subscribe(Sub("a"), "sport/+", 0)
    assert subs_of(router, "sport/tennis") == {"a": 0}
    assert subs_of(router, "sport/") == {"a": 0}
    assert subs_of(router, "sport") == {}
    assert subs_of(router, "sport/tennis/player1") == {}


def test_multi_level_wildcard_includes_parent_level() -> None:
    router = Router()
    router.subscribe(Sub("a"), "sport/#", 2)
    for topic in ("sport", "sport/", "sport/tennis", "sport/tennis/player1/score"):
        assert subs_of(router, topic) == {"a": 2}, topic
    assert subs_of(router, "sports") == {}
    assert subs_of(router, "other/sport") == {}


def test_hash_alone_matches_every_non_dollar_topic() -> None:
    router = Router()
    router.subscribe(Sub("a"), "#", 1)
    for topic in ("a", "/", "/finance", "a/b/c", "x$"):
        assert subs_of(router, topic) == {"a": 1}, topic


def test_plus_then_hash_matches_one_or_more_levels() -> None:
    router = Router()
    router.subscribe(Sub("a"), "+/tennis/#", 1)
    assert subs_of(router, "sport/tennis") == {"a": 1}
    assert subs_of(router, "sport/tennis/player1") == {"a": 1}
    assert subs_of(router, "sport/golf") == {}
    assert subs_of(router, "tennis") == {}


def test_dollar_topics_need_a_dollar_filter() -> None:
    # [4.7.2-1] a filter starting with a wildcard does not match a topic starting with '$'.
    router = Router()
    router.subscribe(Sub("hash"), "#", 0)
    router.subscribe(Sub("plus"), "+/x", 0)
    router.subscribe(Sub("plus-hash"), "+/#", 0)
    router.subscribe(Sub("sys-hash"), "$SYS/#", 1)
    router.subscribe(Sub("sys-plus"), "$SYS/+", 2)
    router.subscribe(Sub("sys-exact"), "$SYS/x", 0)
    router.subscribe(Sub("inner"), "a/+", 0)
    assert subs_of(router, "$SYS/x") == {"sys-hash": 1, "sys-plus": 2, "sys-exact": 0}
    assert subs_of(router, "$SYS") == {"sys-hash": 1}
    assert subs_of(router, "a/$SYS") == {"hash": 0, "plus-hash": 0, "inner": 0}
    assert subs_of(router, "b/x") == {"hash": 0, "plus": 0, "plus-hash": 0}


def test_overlapping_subscriptions_deliver_once_at_max_qos() -> None:
    # [3.3.5] one copy at the highest QoS of the matching subscriptions.
    router = Router()
    a = Sub("a")
    router.subscribe(a, "a/b", 0)
    router.subscribe(a, "a/+", 2)
    router.subscribe(a, "#", 1)
    router.subscribe(a, "a/#", 0)
    assert subs_of(router, "a/b") == {"a": 2}
    assert subs_of(router, "a/c") == {"a": 2}
    assert subs_of(router, "a") == {"a": 1}
    assert router.route(Message("a/b", b"x", 2)) == 1
    assert a.got == [("a/b", 2, False)]


def test_several_subscribers_each_get_their_own_qos() -> None:
    router = Router()
    a, b = Sub("a"), Sub("b")
    router.subscribe(a, "a/+", 1)
    router.subscribe(b, "a/b", 2)
    assert router.route(Message("a/b", b"x", 2)) == 2
    assert a.got == [("a/b", 1, False)]
    assert b.got == [("a/b", 2, False)]
    assert router.route(Message("a/c", b"x")) == 1
    assert b.got == [("a/b", 2, False)]


def test_unsubscribe_removes_only_that_subscription() -> None:
    router = Router()
    a, b = Sub("a"), Sub("b")
    router.subscribe(a, "a/b", 1)
    router.subscribe(a, "a/+", 0)
    router.subscribe(b, "a/b", 2)
    assert router.unsubscribe(a, "a/b") is True
    assert subs_of(router, "a/b") == {"a": 0, "b": 2}
    assert router.unsubscribe(a, "a/b") is False  # already gone
    assert router.unsubscribe(a, "x/y") is False  # never there
    assert router.unsubscribe(b, "a/+") is False  # someone else's filter
    assert router.unsubscribe(a, "a/b", exclusive=True) is False
    assert router.unsubscribe(a, "a/b", share_group="g") is False
    assert router.subscription_count == 2


def test_resubscribe_replaces_qos() -> None:
    router = Router()
    a = Sub("a")
    assert router.subscribe(a, "a/b", 2) is False
    assert router.subscribe(a, "a/b", 0) is True
    assert subs_of(router, "a/b") == {"a": 0}
    assert router.subscription_count == 1


def test_subscription_count() -> None:
    router = Router()
    a, b = Sub("a"), Sub("b")
    router.subscribe(a, "a", 0)
    router.subscribe(a, "b", 0)
    router.subscribe(b, "a", 0)
    router.subscribe(a, "a", 1)  # replacement, not a new one
    router.subscribe(a, "a", 0, share_group="g")
    router.subscribe(b, "a", 0, share_group="g")
    router.subscribe(a, "a", 0, exclusive=True)
    assert router.subscription_count == 6
    router.unsubscribe(a, "a", share_group="g")
    router.unsubscribe(a, "b")
    router.unsubscribe(a, "b")  # no-op
    assert router.subscription_count == 4


def test_route_passes_retain_false_and_counts_deliveries() -> None:
    router = Router()
    a, b, c = Sub("a"), Sub("b"), Sub("c")
    router.subscribe(a, "t", 1)
    router.subscribe(b, "t", 1, share_group="g")
    router.subscribe(c, "t", 1, share_group="g")
    assert router.route(Message("t", b"x", 1, retain=True)) == 2
    assert a.got == [("t", 1, False)]
    assert len(b.got) + len(c.got) == 1
    assert router.route(Message("nobody", b"x")) == 0


# --------------------------------------------------------------------------------------------
# Shared subscriptions
# --------------------------------------------------------------------------------------------


def route_names(router: Router, topic: str, members: list[Sub], n: int) -> list[str]:
    """Route ``n`` messages and return, per message, which member got it."""
    out = []
    for _ in range(n):
        before = {m.name: len(m.got) for m in members}
        router.route(Message(topic, b"x", 1))
        [winner] = [m.name for m in members if len(m.got) > before[m.name]]
        out.append(winner)
    return out


def test_shared_group_round_robin() -> None:
    router = Router()
    members = [Sub("a"), Sub("b"), Sub("c")]
    for m in members:
        router.subscribe(m, "s/+", 1, share_group="g")
    assert route_names(router, "s/x", members, 7) == ["a", "b", "c", "a", "b", "c", "a"]
    assert groups_of(router, "s/x") == [("g", "s/+")]
    assert subs_of(router, "s/x") == {}


def test_shared_group_prefers_online_members() -> None:
    router = Router()
    members = [Sub("a"), Sub("b", online=False), Sub("c")]
    for m in members:
        router.subscribe(m, "s", 1, share_group="g")
    assert route_names(router, "s", members, 4) == ["a", "c", "a", "c"]
    members[1].online = True
    members[0].online = False
    members[2].online = False
    assert route_names(router, "s", members, 2) == ["b", "b"]


def test_shared_group_with_every_member_offline_still_rotates() -> None:
    router = Router()
    members = [Sub("a", online=False), Sub("b", online=False)]
    for m in members:
        router.subscribe(m, "s", 1, share_group="g")
    assert route_names(router, "s", members, 4) == ["a", "b", "a", "b"]


def test_shared_group_member_qos_is_its_own() -> None:
    group = SharedGroup("g", "s")
    a, b = Sub("a"), Sub("b")
    group.members[a] = 0
    group.members[b] = 2
    assert group.pick() == (a, 0)
    assert group.pick() == (b, 2)
    assert group.pick() == (a, 0)


def test_two_groups_on_one_filter_each_get_one_copy() -> None:
    router = Router()
    g1 = [Sub("a"), Sub("b")]
    g2 = [Sub("c")]
    for m in g1:
        router.subscribe(m, "s/#", 1, share_group="g1")
    for m in g2:
        router.subscribe(m, "s/#", 1, share_group="g2")
    assert groups_of(router, "s/x") == [("g1", "s/#"), ("g2", "s/#")]
    for i in range(4):
        assert router.route(Message("s/x", b"x", 1)) == 2
        assert sum(len(m.got) for m in g1) == i + 1
        assert len(g2[0].got) == i + 1


def test_shared_and_ordinary_subscription_of_one_filter_both_deliver() -> None:
    router = Router()
    a, b = Sub("a"), Sub("b")
    router.subscribe(a, "s", 1)
    router.subscribe(b, "s", 1, share_group="g")
    assert subs_of(router, "s") == {"a": 1}
    assert groups_of(router, "s") == [("g", "s")]


def test_shared_group_disappears_with_its_last_member() -> None:
    router = Router()
    a, b = Sub("a"), Sub("b")
    router.subscribe(a, "s", 1, share_group="g")
    router.subscribe(b, "s", 1, share_group="g")
    assert router.unsubscribe(a, "s", share_group="g") is True
    assert route_names(router, "s", [a, b], 2) == ["b", "b"]
    assert router.unsubscribe(b, "s", share_group="g") is True
    assert router.match("s") == ([], [])
    assert router.unsubscribe(b, "s", share_group="g") is False


def test_shared_group_on_dollar_topic_follows_dollar_rules() -> None:
    router = Router()
    router.subscribe(Sub("a"), "#", 0, share_group="g")
    router.subscribe(Sub("b"), "$SYS/#", 0, share_group="h")
    assert groups_of(router, "$SYS/x") == [("h", "$SYS/#")]
    assert groups_of(router, "x") == [("g", "#")]


# --------------------------------------------------------------------------------------------
# Exclusive subscriptions
# --------------------------------------------------------------------------------------------


def test_exclusive_subscription_takes_the_topic() -> None:
    router = Router()
    plain, shared, owner = Sub("plain"), Sub("shared"), Sub("owner")
    router.subscribe(plain, "a/b", 2)
    router.subscribe(shared, "a/b", 1, share_group="g")
    router.subscribe(owner, "a/+", 1, exclusive=True)
    assert router.match("a/b") == ([(owner, 1)], [])
    assert router.route(Message("a/b", b"x", 2)) == 1
    assert owner.got == [("a/b", 1, False)]
    assert plain.got == []
    assert shared.got == []
    # Topics the exclusive filter does not cover are untouched.
    router.subscribe(plain, "a", 0)
    assert subs_of(router, "a") == {"plain": 0}
    # Without the exclusive subscription the others get the topic back.
    assert router.unsubscribe(owner, "a/+") is False  # not an ordinary subscription
    assert router.unsubscribe(owner, "a/+", exclusive=True) is True
    assert subs_of(router, "a/b") == {"plain": 2}
    assert groups_of(router, "a/b") == [("g", "a/b")]


def test_overlapping_exclusive_subscriptions_dedupe_at_max_qos() -> None:
    router = Router()
    a, b = Sub("a"), Sub("b")
    router.subscribe(a, "x/#", 0, exclusive=True)
    router.subscribe(a, "x/y", 2, exclusive=True)
    router.subscribe(b, "x/y", 1, exclusive=True)
    assert subs_of(router, "x/y") == {"a": 2, "b": 1}


# --------------------------------------------------------------------------------------------
# Cache and pruning
# --------------------------------------------------------------------------------------------


def test_match_cache_is_dropped_on_subscribe_and_unsubscribe() -> None:
    router = Router()
    a, b = Sub("a"), Sub("b")
    assert subs_of(router, "a/b") == {}
    router.subscribe(a, "a/+", 1)
    assert subs_of(router, "a/b") == {"a": 1}
    router.subscribe(b, "#", 0)
    assert subs_of(router, "a/b") == {"a": 1, "b": 0}
    router.subscribe(a, "a/+", 0)  # a QoS change is a change too
    assert subs_of(router, "a/b") == {"a": 0, "b": 0}
    router.unsubscribe(b, "#")
    assert subs_of(router, "a/b") == {"a": 0}
    router.subscribe(b, "a/b", 1, share_group="g")
    assert groups_of(router, "a/b") == [("g", "a/b")]
    router.unsubscribe(b, "a/b", share_group="g")
    assert groups_of(router, "a/b") == []
    router.subscribe(b, "a/b", 1, exclusive=True)
    assert subs_of(router, "a/b") == {"b": 1}
    router.unsubscribe(b, "a/b", exclusive=True)
    assert subs_of(router, "a/b") == {"a": 0}


def test_match_cache_is_bounded() -> None:
    router = Router(cache_size=3)
    router.subscribe(Sub("a"), "t/+", 1)
    for i in range(10):
        assert subs_of(router, f"t/{i}") == {"a": 1}
        assert len(router._cache) <= 3
    assert subs_of(router, "t/0") == {"a": 1}


def test_unsubscribing_everything_prunes_the_trie() -> None:
    router = Router()
    a, b = Sub("a"), Sub("b")
    filters = ["a/b/c", "a/b", "a/+/c", "#", "a/#", "$SYS/x", "/", "a//b"]
    for f in filters:
        router.subscribe(a, f, 1)
        router.subscribe(b, f, 0, share_group="g")
        router.subscribe(b, f, 0, exclusive=True)
    assert router.subscription_count == 3 * len(filters)
    for f in reversed(filters):
        assert router.unsubscribe(b, f, exclusive=True)
    for f in filters:
        assert router.unsubscribe(a, f)
        assert router.unsubscribe(b, f, share_group="g")
    assert router._root.children == {}
    assert router.subscription_count == 0
    assert router.match("a/b/c") == ([], [])


def test_pruning_keeps_nodes_that_still_hold_subscriptions() -> None:
    router = Router()
    a = Sub("a")
    router.subscribe(a, "a", 1)
    router.subscribe(a, "a/b/c", 2)
    router.subscribe(a, "a/b/d", 0, share_group="g")
    assert router.unsubscribe(a, "a/b/c")
    assert subs_of(router, "a") == {"a": 1}
    assert groups_of(router, "a/b/d") == [("g", "a/b/d")]
    assert router.unsubscribe(a, "a/b/d", share_group="g")
    assert list(router._root.children) == ["a"]
    assert router._root.children["a"].children == {}
    assert subs_of(router, "a") == {"a": 1}
    assert router.unsubscribe(a, "a")
    assert router._root.children == {}


# --------------------------------------------------------------------------------------------
# Property: the trie agrees with brute force over topics.matches
# --------------------------------------------------------------------------------------------

SUBSCRIBERS = [Sub(f"s{i}") for i in range(4)]
KINDS = ["plain", "plain", "plain", "exclusive", "g1", "g2"]

filter_levels = st.sampled_from(["a", "b", "", "$SYS", "+"])
topic_levels = st.sampled_from(["a", "b", "", "$SYS", "c"])
topic_filters = st.builds(
    lambda levels, hash_: "/".join(levels + ["#"] if hash_ else levels),
    st.lists(filter_levels, max_size=3),
    st.booleans(),
).filter(bool)
topic_names = st.lists(topic_levels, min_size=1, max_size=4).map("/".join).filter(bool)
subscriptions = st.tuples(
    st.integers(0, len(SUBSCRIBERS) - 1), topic_filters, st.integers(0, 2), st.sampled_from(KINDS)
)

Key = tuple[int, str, str]  # (subscriber index, filter, kind)


def brute_force(
    table: dict[Key, int], topic: str
) -> tuple[dict[str, int], list[tuple[str, str, dict[str, int]]]]:
    exclusive: dict[str, int] = {}
    plain: dict[str, int] = {}
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for (i, f, kind), qos in table.items():
        if not matches(f, topic):
            continue
        name = SUBSCRIBERS[i].name
        if kind == "exclusive":
            exclusive[name] = max(qos, exclusive.get(name, -1))
        elif kind == "plain":
            plain[name] = max(qos, plain.get(name, -1))
        else:
            groups.setdefault((kind, f), {})[name] = qos
    if exclusive:
        return exclusive, []
    return plain, sorted((g, f, members) for (g, f), members in groups.items())


def observed(
    router: Router, topic: str
) -> tuple[dict[str, int], list[tuple[str, str, dict[str, int]]]]:
    found, groups = router.match(topic)
    names = [s.name for s, _ in found]
    assert len(names) == len(set(names))
    return (
        {s.name: q for s, q in found},
        sorted((g.name, g.filter, {s.name: q for s, q in g.members.items()}) for g in groups),
    )


def apply(router: Router, table: dict[Key, int], key: Key, qos: int | None) -> None:
    """Subscribe (qos given) or unsubscribe (qos None) in both the router and the table."""
    i, f, kind = key
    share_group = kind if kind.startswith("g") else None
    exclusive = kind == "exclusive"
    if qos is None:
        removed = router.unsubscribe(
            SUBSCRIBERS[i], f, share_group=share_group, exclusive=exclusive
        )
        assert removed == (key in table)
        table.pop(key, None)
    else:
        replaced = router.subscribe(
            SUBSCRIBERS[i], f, qos, share_group=share_group, exclusive=exclusive
        )
        assert replaced == (key in table)
        table[key] = qos
    assert router.subscription_count == len(table)


@given(
    st.lists(subscriptions, max_size=12),
    st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=8),
    st.lists(topic_names, min_size=1, max_size=6),
)
def test_match_equals_brute_force(
    subs: list[tuple[int, str, int, str]],
    changes: list[tuple[int, bool]],
    topics: list[str],
) -> None:
    router = Router()
    table: dict[Key, int] = {}
    for i, f, qos, kind in subs:
        apply(router, table, (i, f, kind), qos)
    for topic in topics:
        assert observed(router, topic) == brute_force(table, topic), topic
    # Changes after matching: cached results must not survive them.
    keys = [(i, f, kind) for i, f, _, kind in subs]
    for pick, resubscribe in changes:
        if not keys:
            break
        key = keys[pick % len(keys)]
        apply(router, table, key, (pick % 3) if resubscribe else None)
        for topic in topics:
            assert observed(router, topic) == brute_force(table, topic), topic
    for key in list(table):
        apply(router, table, key, None)
    assert router._root.children == {}


def test_overlapping_subscriptions_with_options_keep_each_subscriptions_options() -> None:
    router = Router()
    a, b = Sub("a"), Sub("b")
    plain_low, plain_high = 0, 2
    with_id = pack_options(1, identifier=42)
    no_local = pack_options(2, no_local=True, retain_as_published=True)
    router.subscribe(a, "x/+", plain_low)
    router.subscribe(a, "x/#", plain_high)
    router.subscribe(b, "x/+", with_id)
    router.subscribe(b, "x/#", no_local)
    found = dict(router.match("x/y")[0])
    # Plain subscriptions merge to the highest QoS; with options, every one is kept.
    assert found[a] == plain_high
    assert sorted(found[b]) == sorted((with_id, no_local))  # type: ignore[arg-type]
    assert option_identifier(with_id) == 42
    assert with_id & 3 == 1 and no_local & (NO_LOCAL | RETAIN_AS_PUBLISHED) == 12


# --------------------------------------------------------------------------------------------
# may_match_under: may a topic beginning with these levels have a subscriber?
# --------------------------------------------------------------------------------------------


def test_may_match_under_follows_exact_levels_and_wildcards() -> None:
    router = Router()
    assert not router.may_match_under("$aws", "events")
    router.subscribe(Sub("shadows"), "$aws/things/+/shadow/update", 1)
    assert router.may_match_under("$aws")
    assert not router.may_match_under("$aws", "events")
    router.subscribe(Sub("watcher"), "$aws/+/presence/#", 1)
    assert router.may_match_under("$aws", "events")
    assert router.may_match_under("$aws", "events", "presence", "connected", "c1")
    assert not router.may_match_under("$aws", "events", "subscriptions")


def test_may_match_under_hash_and_first_level_wildcards() -> None:
    router = Router()
    router.subscribe(Sub("all"), "#", 0)
    router.subscribe(Sub("plus"), "+/events/#", 0)
    # [4.7.2-1] wildcards at the first level do not match '$' topics.
    assert not router.may_match_under("$aws", "events")
    assert router.may_match_under("plain", "topic")
    router.subscribe(Sub("aws-all"), "$aws/#", 0)
    assert router.may_match_under("$aws", "events", "presence")


@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "+", "#", "$x"]), min_size=1, max_size=4)
        .filter(lambda levels: "#" not in levels[:-1])
        .map("/".join),
        max_size=5,
    ),
    st.lists(st.sampled_from(["a", "b", "$x"]), min_size=1, max_size=3),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
)
def test_may_match_under_is_never_wrong_when_it_says_no(
    filters: list[str], prefix: list[str], rest: list[str]
) -> None:
    router = Router()
    for index, topic_filter in enumerate(filters):
        router.subscribe(Sub(str(index)), topic_filter, 0)
    topic = "/".join(prefix + rest)
    if not router.may_match_under(*prefix):
        assert subs_of(router, topic) == {}
