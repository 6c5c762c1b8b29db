"""Laws of shadow documents (shadows/document.py), property-tested with Hypothesis: delta and
merge agree, versions only grow, limits always hold, metadata mirrors state, parsing fails
only with ShadowError, and ``clear_desired_on_match`` leaves nothing satisfied behind.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from shadows.document import (
    SECTIONS,
    Shadow,
    ShadowLimits,
    UpdateRequest,
    UpdateRules,
    apply_update,
    delete_document,
    delta,
    depth,
    get_document,
    leaf_metadata,
    merge,
    merge_with_metadata,
    parse_token_request,
    parse_update,
    prune_satisfied,
    select_metadata,
    state_size,
)
from shadows.errors import ShadowError

laws = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

LIMITS = ShadowLimits()

# Half the keys come from three letters, so patches and sections meet at the same keys; the
# other half are any text (the empty key and non-ASCII included).
keys = st.sampled_from("abc") | st.sampled_from(["", "é", "k\U0001f600"]) | st.text(max_size=4)
scalars = (
    st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)


@cache
def values(levels: int) -> SearchStrategy[Any]:
    """JSON values with at most ``levels`` levels of objects and arrays; no nulls."""
    if levels == 0:
        return scalars
    return scalars | st.lists(values(levels - 1), max_size=3) | objects(levels)


@cache
def objects(levels: int) -> SearchStrategy[dict[str, Any]]:
    """Objects (the outermost counts as a level) as stored in desired or reported."""
    return st.dictionaries(keys, values(levels - 1) if levels > 1 else scalars, max_size=4)


@cache
def patches(levels: int) -> SearchStrategy[dict[str, Any]]:
    """Update sections: like ``objects`` but any key may be null (delete it)."""
    inner: SearchStrategy[Any] = st.none() | scalars
    if levels > 1:
        inner = inner | st.lists(values(levels - 2), max_size=3) | patches(levels - 1)
    return st.dictionaries(keys, inner, max_size=4)


sections = st.none() | patches(LIMITS.max_depth)


@st.composite
def update_states(draw: st.DrawFn, levels: int = LIMITS.max_depth) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name in SECTIONS:
        if draw(st.booleans()):
            state[name] = draw(st.none() | patches(levels))
    return state


def request(state: dict[str, Any], version: int | None = None) -> UpdateRequest:
    """An UpdateRequest as parse_update makes it from ``state`` (so it is valid)."""
    document: dict[str, Any] = {"state": state}
    if version is not None:
        document["version"] = version
    return parse_update(json.dumps(document).encode(), LIMITS)


def mirrors(state: Any, meta: Any) -> bool:
    """``meta`` has exactly the shape of ``state``: leaves are ``{"timestamp": int}``, arrays
    one entry per element, objects the same keys."""
    if isinstance(state, dict):
        return (
            isinstance(meta, dict)
            and meta.keys() == state.keys()
            and all(mirrors(state[k], meta[k]) for k in state)
        )
    if isinstance(state, list):
        return (
            isinstance(meta, list)
            and len(meta) == len(state)
            and all(mirrors(s, m) for s, m in zip(state, meta, strict=True))
        )
    return (
        isinstance(meta, dict) and meta.keys() == {"timestamp"} and type(meta["timestamp"]) is int
    )


def has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(has_null(v) for v in value)
    return False


def timestamps(meta: Any) -> list[int]:
    if isinstance(meta, list):
        return [t for m in meta for t in timestamps(m)]
    if isinstance(meta, dict):
        if meta.keys() == {"timestamp"} and isinstance(meta["timestamp"], int):
            return [meta["timestamp"]]
        return [t for m in meta.values() for t in timestamps(m)]
    return []


def check_shadow(shadow: Shadow, limits: ShadowLimits = LIMITS) -> None:
    """What every stored shadow satisfies."""
    assert state_size(shadow.desired, shadow.reported) <= limits.max_state_bytes
    assert depth(shadow.desired) <= limits.max_depth
    assert depth(shadow.reported) <= limits.max_depth
    assert shadow.metadata.keys() == shadow.state().keys()
    assert mirrors(shadow.state(), shadow.metadata)
    assert not has_null(shadow.state())
    json.dumps(shadow.state(), allow_nan=False, ensure_ascii=False).encode("utf-8")


# -- (1) applying the delta to reported satisfies desired -----------------------------------


@laws
@given(desired=objects(LIMITS.max_depth), reported=objects(LIMITS.max_depth))
def test_delta_applied_to_reported_satisfies_desired(
    desired: dict[str, Any], reported: dict[str, Any]
) -> None:
    before = copy.deepcopy((desired, reported))
    difference = delta(desired, reported)
    assert delta(desired, merge(reported, difference)) == {}
    assert (desired, reported) == before
    # Keys only in reported never appear: the delta is a part of desired.
    assert difference.keys() <= desired.keys()
    assert merge(desired, difference) == desired


@laws
@given(desired=objects(LIMITS.max_depth), reported=objects(LIMITS.max_depth))
def test_delta_of_self_is_empty_and_merge_of_desired_satisfies(
    desired: dict[str, Any], reported: dict[str, Any]
) -> None:
    assert delta(desired, desired) == {}
    assert delta(desired, merge(reported, desired)) == {}


@laws
@given(desired=objects(LIMITS.max_depth), reported=objects(LIMITS.max_depth))
@example(desired={"a": {}}, reported={"a": {"b": 1}})
def test_prune_satisfied_keeps_exactly_the_delta(
    desired: dict[str, Any], reported: dict[str, Any]
) -> None:
    meta = leaf_metadata(desired, 5)
    kept, kept_meta = prune_satisfied(desired, meta, reported)
    assert kept == delta(desired, reported)
    assert mirrors(kept, kept_meta)
    assert select_metadata(kept, meta) == kept_meta


# -- (2) merge: identity and idempotence ----------------------------------------------------


@laws
@given(base=objects(LIMITS.max_depth), patch=patches(LIMITS.max_depth))
@example(base={}, patch={"a": {"b": None}})
@example(base={"a": 5}, patch={"a": {"b": {"c": None}}})
def test_merge_identity_and_idempotence(base: dict[str, Any], patch: dict[str, Any]) -> None:
    before = copy.deepcopy((base, patch))
    assert merge(base, {}) == base
    once = merge(base, patch)
    assert merge(once, patch) == once
    assert (base, patch) == before
    # Nulls never reach the stored document, and no level grows deeper than its inputs.
    assert not has_null(once)
    assert depth(once) <= max(depth(base), depth(patch))


@laws
@given(base=objects(LIMITS.max_depth), patch=patches(LIMITS.max_depth))
def test_merge_with_metadata_agrees_with_merge(base: dict[str, Any], patch: dict[str, Any]) -> None:
    state, meta = merge_with_metadata(base, leaf_metadata(base, 1), patch, 2)
    assert state == merge(base, patch)
    assert mirrors(state, meta)
    again, again_meta = merge_with_metadata(state, meta, patch, 3)
    assert again == state
    assert mirrors(again, again_meta)


# -- (3) versions only grow -----------------------------------------------------------------

Operation = tuple[str, dict[str, Any], int | None]
operations: SearchStrategy[list[Operation]] = st.lists(
    st.one_of(
        st.tuples(st.just("update"), update_states(), st.none() | st.integers(-1, 12)),
        st.tuples(st.just("delete"), st.just({}), st.none()),
    ),
    max_size=12,
)


@laws
@given(ops=operations)
def test_versions_strictly_increase(ops: list[Operation]) -> None:
    shadow: Shadow | None = None
    seen = 0
    now = 1000
    for kind, state, version in ops:
        now += 1
        if kind == "delete":
            if shadow is None or not shadow.exists:
                continue
            assert delete_document(shadow.version, now, None)["version"] == shadow.version
            shadow = Shadow(version=shadow.version, timestamp=now, exists=False)
            continue
        base = shadow.version if shadow is not None else 0
        try:
            outcome = apply_update(shadow, request(state, version), now, LIMITS)
        except ShadowError as exc:
            if exc.code == 413:
                continue
            assert exc.code == 409
            assert version is not None
            assert version != base
            continue
        assert version is None or version == base
        current = outcome.current
        assert current.version == base + 1
        assert current.version > seen
        assert current.exists
        assert outcome.accepted["version"] == current.version
        assert outcome.documents["current"]["version"] == current.version
        if outcome.delta is not None:
            assert outcome.delta["version"] == current.version
        if shadow is not None and shadow.exists:
            assert outcome.documents["previous"]["version"] == shadow.version
        else:
            assert "previous" not in outcome.documents
        seen = current.version
        shadow = current


# -- (4) documents never exceed the limits --------------------------------------------------

SMALL = ShadowLimits(max_state_bytes=200, max_depth=3)


@st.composite
def small_payloads(draw: st.DrawFn) -> bytes:
    """Update requests that often break SMALL's limits: too deep, too large, or fine."""
    state: dict[str, Any] = {}
    for name in SECTIONS:
        if draw(st.integers(0, 3)):
            state[name] = draw(st.none() | patches(5))
    document: dict[str, Any] = {"state": state}
    if draw(st.booleans()):
        document["clientToken"] = draw(st.text(max_size=3))
    return json.dumps(document).encode()


@laws
@given(payloads=st.lists(small_payloads(), min_size=1, max_size=8))
def test_limits_always_hold(payloads: list[bytes]) -> None:
    shadow: Shadow | None = None
    now = 10
    for payload in payloads:
        now += 1
        before = copy.deepcopy(shadow)
        try:
            parsed = parse_update(payload, SMALL)
            outcome = apply_update(shadow, parsed, now, SMALL)
        except ShadowError as exc:
            assert exc.code in (400, 413)
            if exc.code == 400:
                assert exc.message == "JSON contains too many levels of nesting; maximum is 3"
            assert shadow == before
            continue
        check_shadow(outcome.current, SMALL)
        assert shadow == before  # the previous shadow is not mutated
        shadow = outcome.current


# -- (5) metadata mirrors state -------------------------------------------------------------


@laws
@given(states=st.lists(update_states(), min_size=1, max_size=6))
def test_metadata_mirrors_state(states: list[dict[str, Any]]) -> None:
    shadow: Shadow | None = None
    for now, state in enumerate(states, start=100):
        try:
            outcome = apply_update(shadow, request(state), now, LIMITS)
        except ShadowError as exc:
            assert exc.code == 413
            continue
        current = outcome.current
        check_shadow(current)
        # The accepted document mirrors the request, nulls included.
        assert outcome.accepted["state"] == state
        assert mirrors(state, outcome.accepted["metadata"])
        # Leaves carry the time of the update that set them: none is from the future.
        assert all(100 <= t <= now for t in timestamps(current.metadata))
        assert all(t == now for t in timestamps(outcome.accepted["metadata"]))
        document = get_document(current, now, None)
        assert mirrors(
            {k: v for k, v in document["state"].items() if k != "delta"}, document["metadata"]
        )
        if outcome.delta is not None:
            assert mirrors(outcome.delta["state"], outcome.delta["metadata"])
            assert outcome.delta["state"] == document["state"]["delta"]
        shadow = current


# -- (6) parsing fails only with ShadowError ------------------------------------------------

FRAGMENTS = [
    "{", "}", "[", "]", ":", ",", '"', " ", "\\", '"state"', '"desired"', '"reported"',
    '"delta"', '"clientToken"', '"version"', '"rejected"', "null", "true", "false", "0", "-1",
    "1.5", "1e400", "-1e-400", "NaN", "Infinity", '"\\ud800"', '"\\udc00\\ud800"',
    '"\\ud83d\\ude00"', '"\\u0000"', '"é"', "9" * 5000, "\x00", "\xff",
]  # fmt: skip

# Python strings json.dumps escapes as "\ud800": lone surrogates, and a pair that decodes whole.
awkward_strings = st.text(max_size=6) | st.sampled_from(["\ud800", "a\udfff", "\ud83d\ude00"])
# NaN and infinities: json.dumps writes NaN and Infinity, which are not JSON.
awkward_scalars = awkward_strings | st.floats() | st.integers() | st.booleans() | st.none()
awkward_values = st.recursive(
    awkward_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(awkward_strings | st.sampled_from(SECTIONS), inner, max_size=3)
    ),
    max_leaves=12,
)
awkward_requests = st.fixed_dictionaries(
    {"state": st.fixed_dictionaries({}, optional={s: awkward_values for s in SECTIONS})},
    optional={"clientToken": awkward_strings, "version": awkward_scalars},
)

json_text = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
top_level = st.dictionaries(
    st.sampled_from(["state", "clientToken", "version", "rejected", "other"]),
    st.none() | values(3) | update_states(8),
    max_size=5,
)
arbitrary_payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    json_text.map(lambda text: text.encode("utf-8", "surrogatepass")),
    top_level.map(lambda document: json.dumps(document).encode()),
    values(8).map(lambda value: json.dumps(value).encode()),
    awkward_requests.map(lambda document: json.dumps(document).encode()),
)


@laws
@given(payload=arbitrary_payloads)
@example(payload=b'{"state":{},"clientToken":"\\ud800"}')
@example(payload=b'{"state":{"reported":{"a":"\\udfff"}}}')
@example(payload=b'{"state":{"reported":{"a":NaN,"b":1e999}}}')
def test_parse_update_raises_only_shadow_errors(payload: bytes) -> None:
    try:
        parsed = parse_update(payload, LIMITS)
    except ShadowError as exc:
        assert exc.code in (400, 413, 415)
    else:
        assert parsed.state.keys() <= set(SECTIONS)
        for section in parsed.state.values():
            assert section is None or isinstance(section, dict)
            assert depth(section) <= LIMITS.max_depth
        # Whatever is accepted can be written back as strict UTF-8 JSON.
        json.dumps(parsed.state, allow_nan=False, ensure_ascii=False).encode("utf-8")
        token = parsed.client_token
        assert token is None or len(token.encode("utf-8")) <= LIMITS.max_client_token_bytes
        assert parsed.version is None or type(parsed.version) is int
        try:
            check_shadow(apply_update(None, parsed, 1, LIMITS).current)
        except ShadowError as exc:
            assert exc.code in (409, 413)


@laws
@given(payload=arbitrary_payloads)
def test_parse_token_request_raises_only_shadow_errors(payload: bytes) -> None:
    try:
        token = parse_token_request(payload, LIMITS)
    except ShadowError as exc:
        assert exc.code in (400, 413, 415)
    else:
        assert token is None or len(token.encode("utf-8")) <= LIMITS.max_client_token_bytes


# -- (7) clear_desired_on_match -------------------------------------------------------------

CLEAR = UpdateRules(clear_desired_on_match=True)


@laws
@given(desired=objects(LIMITS.max_depth), reported=objects(LIMITS.max_depth))
@example(desired={"a": {}}, reported={"a": {"b": 1}})
def test_reporting_the_desired_values_clears_them(
    desired: dict[str, Any], reported: dict[str, Any]
) -> None:
    try:
        shadow = apply_update(
            None, request({"desired": desired, "reported": reported}), 1, LIMITS
        ).current
        outcome = apply_update(shadow, request({"reported": desired}), 2, LIMITS, CLEAR)
    except ShadowError as exc:
        assert exc.code == 413
        return
    current = outcome.current
    assert delta(current.desired, current.reported) == {}
    assert current.desired == {}
    assert "desired" not in current.metadata
    assert "delta" not in get_document(current, 2, None)["state"]
    check_shadow(current)


@laws
@given(
    desired=objects(LIMITS.max_depth),
    reported=objects(LIMITS.max_depth),
    report=patches(LIMITS.max_depth),
)
def test_clear_desired_on_match_leaves_only_the_delta(
    desired: dict[str, Any], reported: dict[str, Any], report: dict[str, Any]
) -> None:
    try:
        shadow = apply_update(
            None, request({"desired": desired, "reported": reported}), 1, LIMITS
        ).current
        outcome = apply_update(shadow, request({"reported": report}), 2, LIMITS, CLEAR)
    except ShadowError as exc:
        assert exc.code == 413
        return
    current = outcome.current
    # Whatever the device reported, desired keeps exactly what still differs.
    assert current.desired == delta(shadow.desired, current.reported)
    check_shadow(current)
