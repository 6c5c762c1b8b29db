"""broker/topics.py: topic name and filter validation, shared filters and matching [4.7].

U+0000 in a topic is the codec's concern (it refuses the string before topics.py sees it), so
it is tested in test_codec.py, not here.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.topics import (
    SharedFilter,
    TopicError,
    TopicLimits,
    has_wildcard,
    matches,
    parse_shared,
    validate_topic_filter,
    validate_topic_name,
)

# --------------------------------------------------------------------------------------------
# Validation tables
# --------------------------------------------------------------------------------------------

GOOD_FILTERS = [
    "sport/tennis/player1/#",
    "sport/tennis/#",
    "sport/#",
    "#",
    "+",
    "+/tennis/#",
    "sport/+/player1",
    "sport/+",
    "+/+",
    "/+",
    "/#",
    "$SYS/#",
    "$SYS/monitor/+",
    "/",
    "a//b",
    "a/b/c",
    " ",
    "sport/tennis/player1",
    "é/€/𝄞",
]

BAD_FILTERS = [
    "",
    "sport/tennis#",
    "sport/tennis/#/ranking",
    "sport+",
    "sport/+tennis",
    "sport/tennis+/x",
    "#/",
    "#/a",
    "##",
    "++",
    "a/#/#",
    "+#",
    "#+",
    "a/b#",
]

GOOD_NAMES = ["sport/tennis/player1", "/finance", "/", "$SYS/broker/uptime", " ", "a//b", "é€𝄞"]
BAD_NAMES = ["", "sport/+", "sport/#", "+", "#", "a+b", "a#b", "+/x"]


@pytest.mark.parametrize("text", GOOD_FILTERS)
def test_valid_filters(text: str) -> None:
    validate_topic_filter(text)  # raises on failure
    assert parse_shared(text) is None


@pytest.mark.parametrize("text", BAD_FILTERS)
def test_invalid_filters(text: str) -> None:
    with pytest.raises(TopicError):
        validate_topic_filter(text)


@pytest.mark.parametrize("text", GOOD_NAMES)
def test_valid_topic_names(text: str) -> None:
    validate_topic_name(text)
    validate_topic_filter(text)  # every topic name is also a valid filter
    assert not has_wildcard(text)


@pytest.mark.parametrize("text", BAD_NAMES)
def test_invalid_topic_names(text: str) -> None:
    with pytest.raises(TopicError):
        validate_topic_name(text)


def test_error_messages_cite_the_spec() -> None:
    with pytest.raises(TopicError, match=r"4\.7\.3-1"):
        validate_topic_name("")
    with pytest.raises(TopicError, match=r"4\.7\.1-1"):
        validate_topic_name("a/+")
    with pytest.raises(TopicError, match=r"4\.7\.1-2"):
        validate_topic_filter("a/#/b")
    with pytest.raises(TopicError, match=r"4\.7\.1-3"):
        validate_topic_filter("a+")


def test_length_limit_counts_utf8_bytes() -> None:
    limits = TopicLimits(max_length=10)
    for validate in (validate_topic_name, validate_topic_filter):
        validate("a" * 10, limits)
        validate("é" * 5, limits)  # 10 bytes
        validate("€" * 3, limits)  # 9 bytes
        with pytest.raises(TopicError, match="longer than 10 bytes"):
            validate("a" * 11, limits)
        with pytest.raises(TopicError, match="longer than 10 bytes"):
            validate("é" * 6, limits)  # 6 characters, 12 bytes
        with pytest.raises(TopicError, match="longer than 10 bytes"):
            validate("€" * 4, limits)  # 4 characters, 12 bytes
    tiny = TopicLimits(max_length=3)
    validate_topic_name("abc", tiny)
    with pytest.raises(TopicError):
        validate_topic_name("𝄞", tiny)  # one character, four bytes


def test_default_length_limit_is_65535_bytes() -> None:
    validate_topic_name("a" * 65535)
    with pytest.raises(TopicError):
        validate_topic_name("a" * 65536)
    with pytest.raises(TopicError):
        validate_topic_filter("é" * 32768)  # 65,536 bytes


def test_level_limit() -> None:
    limits = TopicLimits(max_levels=3)
    for validate in (validate_topic_name, validate_topic_filter):
        validate("a/b/c", limits)
        validate("//", limits)  # three empty levels
        with pytest.raises(TopicError, match="more than 3 levels"):
            validate("a/b/c/d", limits)
        with pytest.raises(TopicError, match="more than 3 levels"):
            validate("///", limits)
    validate_topic_filter("a/+/#", limits)
    with pytest.raises(TopicError):
        validate_topic_filter("a/+/b/#", limits)


def test_default_level_limit_is_128() -> None:
    validate_topic_name("/".join(["a"] * 128))
    with pytest.raises(TopicError):
        validate_topic_name("/".join(["a"] * 129))


# --------------------------------------------------------------------------------------------
# Shared subscriptions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$share/g/a/+", SharedFilter("g", "a/+")),
        ("$share/group-1/#", SharedFilter("group-1", "#")),
        ("$share/g/$SYS/#", SharedFilter("g", "$SYS/#")),
        ("$share/g//", SharedFilter("g", "/")),
        ("a/b", None),
        ("$SYS/#", None),
        ("$shared/g/a", None),
        ("$share", None),
    ],
)
def test_parse_shared(text: str, expected: SharedFilter | None) -> None:
    assert parse_shared(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "$share/",
        "$share/g",
        "$share/g/",
        "$share//a",
        "$share/g+/a",
        "$share/#/a",
        "$share/g/a/#/b",
    ],
)
def test_parse_shared_refuses_malformed(text: str) -> None:
    with pytest.raises(TopicError):
        parse_shared(text)


def test_parse_shared_applies_limits_to_the_inner_filter() -> None:
    limits = TopicLimits(max_levels=2)
    assert parse_shared("$share/g/a/b", limits) == SharedFilter("g", "a/b")
    with pytest.raises(TopicError, match="levels"):
        parse_shared("$share/g/a/b/c", limits)


# --------------------------------------------------------------------------------------------
# Matching tables
# --------------------------------------------------------------------------------------------

MATCHING = [
    # [4.7.1.2] multi-level wildcard, including the parent level.
    ("sport/tennis/player1/#", "sport/tennis/player1"),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking"),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"),
    ("sport/#", "sport"),
    ("sport/#", "sport/"),
    ("#", "sport"),
    ("#", "sport/tennis/player1"),
    ("#", "/"),
    ("#", "/finance"),
    # [4.7.1.3] single-level wildcard.
    ("sport/tennis/+", "sport/tennis/player1"),
    ("sport/tennis/+", "sport/tennis/player2"),
    ("sport/+", "sport/"),
    ("+", "sport"),
    ("+/+", "/finance"),
    ("/+", "/finance"),
    ("+/tennis/#", "sport/tennis"),
    ("+/tennis/#", "sport/tennis/player1/ranking"),
    ("sport/+/player1", "sport/tennis/player1"),
    ("+/#", "a"),
    # [4.7.2] topics starting with '$' match filters that start with '$'.
    ("$SYS/#", "$SYS/monitor/Clients"),
    ("$SYS/#", "$SYS"),
    ("$SYS/monitor/+", "$SYS/monitor/Clients"),
    ("$SYS/x", "$SYS/x"),
    ("a/$x", "a/$x"),
    ("+/$x", "a/$x"),
    # Exact, empty levels.
    ("a//b", "a//b"),
    ("a/+/b", "a//b"),
]

NOT_MATCHING = [
    ("sport/tennis/+", "sport/tennis/player1/ranking"),
    ("sport/+", "sport"),
    ("+", "/finance"),
    ("sport/tennis/player1/#", "sport/tennis"),
    ("sport/tennis", "sport/tennis/"),
    ("sport/tennis/", "sport/tennis"),
    ("ACCOUNTS", "Accounts"),  # case-sensitive [4.7.3]
    ("a/b", "a/b/c"),
    ("a/b/c", "a/b"),
    ("+/+", "a"),
    ("+/+", "a/b/c"),
    # [4.7.2-1] a leading wildcard never matches a '$' topic.
    ("#", "$SYS/x"),
    ("#", "$SYS"),
    ("+/x", "$SYS/x"),
    ("+", "$SYS"),
    ("+/#", "$SYS/x"),
    ("+/monitor/Clients", "$SYS/monitor/Clients"),
    ("$SYS/#", "$SYS2/x"),
]


@pytest.mark.parametrize(("topic_filter", "topic"), MATCHING)
def test_matching(topic_filter: str, topic: str) -> None:
    assert matches(topic_filter, topic)


@pytest.mark.parametrize(("topic_filter", "topic"), NOT_MATCHING)
def test_not_matching(topic_filter: str, topic: str) -> None:
    assert not matches(topic_filter, topic)


def test_has_wildcard() -> None:
    assert has_wildcard("a/+")
    assert has_wildcard("#")
    assert not has_wildcard("a/b")
    assert not has_wildcard("$SYS/x")


# --------------------------------------------------------------------------------------------
# Properties against reference implementations written here
# --------------------------------------------------------------------------------------------


def reference_matches(topic_filter: str, topic: str) -> bool:
    """[4.7] stated declaratively: compare a fixed number of levels, '#' taking the rest."""
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    if topic[:1] == "$" and flevels[0] in ("+", "#"):
        return False

    def level_ok(f: str, t: str) -> bool:
        return f == "+" or f == t

    if flevels[-1] == "#":
        head = flevels[:-1]
        # 'a/#' covers 'a' itself and anything below it.
        return len(tlevels) >= len(head) and all(map(level_ok, head, tlevels))
    return len(tlevels) == len(flevels) and all(map(level_ok, flevels, tlevels))


def reference_filter_valid(text: str) -> bool:
    if not text:
        return False
    levels = text.split("/")
    for i, level in enumerate(levels):
        if level == "#" and i == len(levels) - 1:
            continue
        if level == "+":
            continue
        if "+" in level or "#" in level:
            return False
    return True


name_levels = st.sampled_from(["a", "b", "", "$SYS", "$x", "A", "é"])
filter_levels = st.sampled_from(["a", "b", "", "$SYS", "$x", "+", "A"])

topic_names = (
    st.lists(name_levels, min_size=1, max_size=5).map("/".join).filter(bool)
)  # "" is not a topic name
topic_filters = st.builds(
    lambda levels, hash_: "/".join(levels + ["#"] if hash_ else levels),
    st.lists(filter_levels, min_size=0, max_size=4),
    st.booleans(),
).filter(bool)


@given(topic_filters, topic_names)
def test_matches_agrees_with_reference(topic_filter: str, topic: str) -> None:
    validate_topic_filter(topic_filter)
    validate_topic_name(topic)
    assert matches(topic_filter, topic) == reference_matches(topic_filter, topic)


@given(topic_names)
def test_a_topic_name_matches_itself_and_its_hash_parents(topic: str) -> None:
    assert matches(topic, topic)
    levels = topic.split("/")
    for i in range(len(levels)):
        prefix_filter = "/".join([*levels[:i], "#"])
        assert matches(prefix_filter, topic) == (i > 0 or not topic.startswith("$"))


@given(st.text(st.sampled_from("ab/+#"), max_size=8))
def test_filter_validation_agrees_with_reference(text: str) -> None:
    try:
        validate_topic_filter(text)
    except TopicError:
        valid = False
    else:
        valid = True
    assert valid == reference_filter_valid(text)


@given(st.text(st.sampled_from("ab/+#$"), max_size=8))
def test_name_validation_refuses_exactly_wildcards_and_empty(text: str) -> None:
    try:
        validate_topic_name(text)
    except TopicError:
        valid = False
    else:
        valid = True
    assert valid == (bool(text) and "+" not in text and "#" not in text)
