"""Shadow documents (shadows/document.py): parsing, merge, delta, metadata, versions and the
response documents, with AWS's exact codes and messages (shared/reference/aws-iot.md, 1.3-1.10).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from shadows.document import (
    AWS_RULES,
    Rejection,
    Shadow,
    ShadowLimits,
    UpdateOutcome,
    UpdateRequest,
    UpdateRules,
    accepted_document,
    apply_update,
    collect_rejections,
    delete_document,
    delta,
    delta_document,
    depth,
    documents_event,
    dumps,
    error_document,
    get_document,
    leaf_metadata,
    merge,
    merge_with_metadata,
    not_found,
    parse_token_request,
    parse_update,
    prune_satisfied,
    remove_paths,
    select_metadata,
    state_size,
    strip_nulls,
)
from shadows.errors import REST_EXCEPTIONS, ShadowError, ShadowErrorCode, bad_request

LIMITS = ShadowLimits()
NOW = 1_700_000_000
LATER = NOW + 60

INVALID_JSON = "Invalid JSON"
TOO_DEEP = "JSON contains too many levels of nesting; maximum is 6"
TOO_LARGE = "The payload exceeds the maximum size allowed"
NOT_UTF8 = "Unsupported documented encoding; supported encoding is UTF-8"
INVALID_NODE = "State contains an invalid node"


def raw(document: Any) -> bytes:
    return json.dumps(document).encode("utf-8")


def update(document: Any, limits: ShadowLimits = LIMITS) -> UpdateRequest:
    return parse_update(raw(document), limits)


def refused(payload: bytes, limits: ShadowLimits = LIMITS) -> ShadowError:
    with pytest.raises(ShadowError) as info:
        parse_update(payload, limits)
    return info.value


def apply(
    shadow: Shadow | None,
    document: Any,
    now: int = LATER,
    rules: UpdateRules = AWS_RULES,
    limits: ShadowLimits = LIMITS,
) -> UpdateOutcome:
    return apply_update(shadow, update(document, limits), now, limits, rules)


def ts(t: int = LATER) -> dict[str, int]:
    return {"timestamp": t}


def nested(levels: int, leaf: Any = 1, *, array: bool = False) -> Any:
    """``levels`` levels of objects (or arrays) around ``leaf``; the outermost counts."""
    value = leaf
    for _ in range(levels):
        value = [value] if array else {"k": value}
    return value


def shadow_of(
    desired: dict[str, Any] | None = None,
    reported: dict[str, Any] | None = None,
    version: int = 3,
    t: int = NOW,
) -> Shadow:
    """A stored shadow with metadata stamped at ``t``, as updates would have left it."""
    desired = desired or {}
    reported = reported or {}
    metadata: dict[str, Any] = {}
    if desired:
        metadata["desired"] = leaf_metadata(desired, t)
    if reported:
        metadata["reported"] = leaf_metadata(reported, t)
    return Shadow(desired, reported, metadata, version, t)


# -- limits ---------------------------------------------------------------------------------


def test_default_limits_are_aws() -> None:
    assert LIMITS.max_state_bytes == 8192
    assert LIMITS.max_depth == 6
    assert LIMITS.max_client_token_bytes == 64
    assert LIMITS.max_request_bytes == 2 * 8192 + 4096
    assert ShadowLimits(max_state_bytes=100).max_request_bytes == 4296


# -- parse_update: accepted requests --------------------------------------------------------


def test_parse_the_reference_request() -> None:
    state: dict[str, Any] = {
        "desired": {"color": "red", "lights": {"r": 255}},
        "reported": {"color": "green", "obsolete": None},
    }
    document = {"state": state, "clientToken": "abc-123", "version": 41}
    request = update(document)
    assert request == UpdateRequest(state, 41, "abc-123", None)
    assert request.has_desired


@pytest.mark.parametrize(
    ("state", "has_desired"),
    [
        ({}, False),
        ({"reported": {"a": 1}}, False),
        ({"desired": {"a": 1}}, True),
        ({"desired": None}, True),
        ({"desired": {}}, True),
        ({"desired": None, "reported": None}, True),
    ],
)
def test_parse_sections(state: dict[str, Any], has_desired: bool) -> None:
    request = update({"state": state})
    assert request.state == state
    assert request.has_desired is has_desired
    assert request.version is None
    assert request.client_token is None


def test_parse_ignores_unknown_top_level_keys() -> None:
    request = update(
        {
            "state": {"reported": {"a": 1}},
            "metadata": {"reported": {"a": {"timestamp": 1}}},
            "timestamp": 5,
            "something": [1, None],
            "deep": nested(20),
        }
    )
    assert request == UpdateRequest({"reported": {"a": 1}})


def test_parse_accepts_null_version_and_token_as_absent() -> None:
    request = update({"state": {}, "version": None, "clientToken": None})
    assert request.version is None
    assert request.client_token is None


@pytest.mark.parametrize("version", [0, 1, 41, 2**40, -1])
def test_parse_integer_versions(version: int) -> None:
    assert update({"state": {}, "version": version}).version == version


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc-123",
        "a" * 64,
        "é" * 32,  # 64 bytes in 32 characters
        "€" * 21 + "a",  # 64 bytes
        "\U0001f600" * 16,  # 64 bytes in 16 characters
    ],
    ids=["empty", "plain", "64-ascii", "64-bytes-2", "64-bytes-3", "64-bytes-4"],
)
def test_parse_client_token_up_to_64_bytes(token: str) -> None:
    assert update({"state": {}, "clientToken": token}).client_token == token


def test_valid_surrogate_pairs_are_accepted() -> None:
    request = parse_update(b'{"state":{"desired":{"e":"\\ud83d\\ude00"}}}', LIMITS)
    assert request.state == {"desired": {"e": "\U0001f600"}}


# -- parse_update: refused requests ---------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", INVALID_JSON),
        (b"   ", INVALID_JSON),
        (b'{"state":', INVALID_JSON),
        (b'{"state":{}} trailing', INVALID_JSON),
        (b"{'state':{}}", INVALID_JSON),
        (b'{"state":{"desired":{"a":1,}}}', INVALID_JSON),
        (b'{"state":{"desired":{"a":NaN}}}', INVALID_JSON),
        (b'{"state":{"desired":{"a":Infinity}}}', INVALID_JSON),
        (b'{"state":{"desired":{"a":-Infinity}}}', INVALID_JSON),
        (b'{"state":{"desired":{"a":1e400}}}', INVALID_JSON),
        (b'{"state":{"desired":{"a":"\\ud800"}}}', INVALID_JSON),
        (b'{"state":{"desired":{"\\udc00":1}}}', INVALID_JSON),
        (b'{"state":{},"clientToken":"\\ud83d"}', INVALID_JSON),
        (b"[]", INVALID_JSON),
        (b"[{}]", INVALID_JSON),
        (b'"state"', INVALID_JSON),
        (b"42", INVALID_JSON),
        (b"null", INVALID_JSON),
        (b"true", INVALID_JSON),
        (raw({}), "Missing required node: state"),
        (raw({"desired": {"a": 1}}), "Missing required node: state"),
        (raw({"state": None}), "State node must be an object"),
        (raw({"state": []}), "State node must be an object"),
        (raw({"state": "on"}), "State node must be an object"),
        (raw({"state": 1}), "State node must be an object"),
        (raw({"state": {"desired": "on"}}), "Desired node must be an object"),
        (raw({"state": {"desired": [1]}}), "Desired node must be an object"),
        (raw({"state": {"desired": 0}}), "Desired node must be an object"),
        (raw({"state": {"desired": False}}), "Desired node must be an object"),
        (raw({"state": {"reported": "on"}}), "Reported node must be an object"),
        (raw({"state": {"reported": []}}), "Reported node must be an object"),
        (raw({"state": {"reported": 1.5}}), "Reported node must be an object"),
        (raw({"state": {"delta": {"a": 1}}}), INVALID_NODE),
        (raw({"state": {"metadata": {}}}), INVALID_NODE),
        (raw({"state": {"Desired": {}}}), INVALID_NODE),
        (raw({"state": {"desired": {}, "extra": None}}), INVALID_NODE),
        (raw({"state": {"desired": {"a": [1, None]}}}), INVALID_NODE),
        (raw({"state": {"reported": {"a": [None]}}}), INVALID_NODE),
        (raw({"state": {"desired": {"a": [[1, [None]]]}}}), INVALID_NODE),
        (raw({"state": {"desired": {"a": {"b": [{"c": [None]}]}}}}), INVALID_NODE),
        (raw({"state": {}, "version": "1"}), "Invalid version"),
        (raw({"state": {}, "version": 1.0}), "Invalid version"),
        (raw({"state": {}, "version": 1.5}), "Invalid version"),
        (raw({"state": {}, "version": True}), "Invalid version"),
        (raw({"state": {}, "version": False}), "Invalid version"),
        (raw({"state": {}, "version": [1]}), "Invalid version"),
        (raw({"state": {}, "version": {}}), "Invalid version"),
        (raw({"state": {}, "clientToken": 5}), "Invalid clientToken"),
        (raw({"state": {}, "clientToken": True}), "Invalid clientToken"),
        (raw({"state": {}, "clientToken": ["t"]}), "Invalid clientToken"),
        (raw({"state": {}, "clientToken": {}}), "Invalid clientToken"),
        (raw({"state": {}, "clientToken": "a" * 65}), "Invalid clientToken"),
        (raw({"state": {}, "clientToken": "é" * 33}), "Invalid clientToken"),
        (raw({"state": {}, "clientToken": "€" * 22}), "Invalid clientToken"),
        (raw({"state": {}, "clientToken": "\U0001f600" * 16 + "a"}), "Invalid clientToken"),
    ],
)
def test_parse_update_bad_request(payload: bytes, message: str) -> None:
    error = refused(payload)
    assert error.code is ShadowErrorCode.BAD_REQUEST
    assert error.message == message
    assert error.rest_exception == "InvalidRequestException"


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b'{"state":{"desired":{"a":"\xe9"}}}',  # Latin-1 "é"
        b'{"state":{"desired":{"a":"\xed\xa0\x80"}}}',  # a UTF-8-encoded surrogate
        b'{"state":{"desired":{"a":"\xc0\xaf"}}}',  # overlong
        '{"state":{}}'.encode("utf-16"),
    ],
    ids=["ff", "latin-1", "surrogate", "overlong", "utf-16"],
)
def test_parse_update_not_utf8(payload: bytes) -> None:
    error = refused(payload)
    assert error.code is ShadowErrorCode.UNSUPPORTED_ENCODING
    assert int(error.code) == 415
    assert error.message == NOT_UTF8
    assert error.rest_exception == "UnsupportedDocumentEncodingException"


def padded(size: int) -> bytes:
    """A valid update request of exactly ``size`` bytes."""
    head = b'{"state":{},"pad":"'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_request_size_limit_is_checked_before_parsing() -> None:
    limit = LIMITS.max_request_bytes
    assert parse_update(padded(limit), LIMITS).state == {}
    error = refused(padded(limit + 1))
    assert (error.code, error.message) == (413, TOO_LARGE)
    assert error.rest_exception == "RequestEntityTooLargeException"
    # Before parsing: not even invalid UTF-8 or JSON is looked at.
    error = refused(b"\xff" * (limit + 1))
    assert (error.code, error.message) == (413, TOO_LARGE)


def test_request_size_follows_the_state_limit() -> None:
    limits = ShadowLimits(max_state_bytes=100)
    assert parse_update(padded(limits.max_request_bytes), limits).state == {}
    assert refused(padded(limits.max_request_bytes + 1), limits).code == 413


@pytest.mark.parametrize(
    "error_doc",
    [
        {"state": {}, "version": "1"},
        {"version": 2},
        {"state": []},
        {"state": {"desired": 1}},
        {"state": {"reported": "x"}},
        {"state": {"delta": {}}},
        {"state": {"desired": {"a": [None]}}},
        {"state": {"desired": nested(7)}},
    ],
    ids=["version", "no-state", "state", "desired", "reported", "node", "null", "deep"],
)
def test_error_echoes_a_valid_client_token(error_doc: dict[str, Any]) -> None:
    error = refused(raw({**error_doc, "clientToken": "tok-1"}))
    assert error.code == 400
    assert error.client_token == "tok-1"
    assert error_document(error, NOW)["clientToken"] == "tok-1"


@pytest.mark.parametrize("token", [5, "a" * 65, None])
def test_error_does_not_echo_an_invalid_or_missing_token(token: Any) -> None:
    document: dict[str, Any] = {"state": {"desired": 1}}
    if token is not None:
        document["clientToken"] = token
    error = refused(raw(document))
    assert error.client_token is None
    assert "clientToken" not in error_document(error, NOW)


def test_invalid_token_wins_over_other_errors() -> None:
    error = refused(raw({"version": "x", "clientToken": 1}))
    assert error.message == "Invalid clientToken"


def test_token_limit_is_a_setting() -> None:
    limits = ShadowLimits(max_client_token_bytes=4)
    assert update({"state": {}, "clientToken": "abcd"}, limits).client_token == "abcd"
    assert refused(raw({"state": {}, "clientToken": "abcde"}), limits).message == (
        "Invalid clientToken"
    )


# -- nesting depth --------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["desired", "reported"])
@pytest.mark.parametrize("array", [False, True], ids=["objects", "arrays"])
def test_depth_at_the_limit_passes_and_one_more_fails(section: str, array: bool) -> None:
    # The section object is the first level: {"k": ...} five times inside it makes six.
    at_limit = {"k": nested(5, array=array)}
    assert depth(at_limit) == 6
    assert update({"state": {section: at_limit}}).state == {section: at_limit}
    too_deep = {"k": nested(6, array=array)}
    error = refused(raw({"state": {section: too_deep}, "clientToken": "t"}))
    assert (error.code, error.message, error.client_token) == (400, TOO_DEEP, "t")


def test_mixed_objects_and_arrays_count_alike() -> None:
    at_limit = {"a": [{"b": [{"c": [1]}]}]}
    assert depth(at_limit) == 6
    assert update({"state": {"desired": at_limit}}).state["desired"] == at_limit
    too_deep = {"a": [{"b": [{"c": [[1]]}]}]}
    assert refused(raw({"state": {"desired": too_deep}})).message == TOO_DEEP


def test_depth_is_checked_per_branch() -> None:
    section = {"shallow": 1, "wide": {"a": 1, "b": 2}, "deep": nested(5)}
    assert depth(section) == 6
    assert update({"state": {"reported": section}}).state["reported"] == section
    section["deep2"] = nested(6)
    assert refused(raw({"state": {"reported": section}})).message == TOO_DEEP


def test_depth_limit_is_a_setting_and_the_message_says_it() -> None:
    limits = ShadowLimits(max_depth=8)
    assert update({"state": {"desired": nested(8)}}, limits).state["desired"] == nested(8)
    error = refused(raw({"state": {"desired": nested(9)}}), limits)
    assert error.message == "JSON contains too many levels of nesting; maximum is 8"


def test_thousands_of_brackets_are_too_deep_not_a_crash() -> None:
    # 10,000 levels fit in the default request size and exhaust json's recursion.
    payload = b"[" * 10_000 + b"]" * 10_000
    assert len(payload) <= LIMITS.max_request_bytes
    error = refused(payload)
    assert (error.code, error.message) == (400, TOO_DEEP)


@pytest.mark.parametrize("inside_desired", [False, True])
def test_100000_nested_brackets(inside_desired: bool) -> None:
    brackets = b"[" * 100_000 + b"]" * 100_000
    payload = b'{"state":{"desired":{"a":' + brackets + b"}}}" if inside_desired else brackets
    # With AWS's limits the payload is simply too large ...
    assert refused(payload).code == 413
    # ... and with room for it, too deep: json's RecursionError never escapes.
    limits = ShadowLimits(max_state_bytes=200_000)
    error = refused(payload, limits)
    assert (error.code, error.message) == (400, TOO_DEEP)


@pytest.mark.parametrize(
    ("value", "levels"),
    [
        (1, 0),
        ("s", 0),
        (None, 0),
        ({}, 1),
        ([], 1),
        ({"a": 1}, 1),
        ({"a": {"b": 1}, "c": 2}, 2),
        ({"a": [1, [2, {"b": 3}]]}, 4),
        (nested(6), 6),
        (nested(6, array=True), 6),
    ],
)
def test_depth(value: Any, levels: int) -> None:
    assert depth(value) == levels


# -- parse_token_request --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "token"),
    [
        (b"", None),
        (b"  \n", None),
        (b"{}", None),
        (b'{"clientToken":"t-1"}', "t-1"),
        (b'{"clientToken":null}', None),
        (b'{"clientToken":"t-2","state":"ignored","version":"x"}', "t-2"),
        (b"[]", None),
        (b'"text"', None),
        (b"7", None),
        (raw({"clientToken": "é" * 32}), "é" * 32),
        # The body of a get or delete is ignored but for its token: no JSON, no token.
        (b"{", None),
        (b"not json", None),
        (b'{"clientToken":NaN}', None),
        (b"[" * 10_000 + b"]" * 10_000, None),
    ],
)
def test_token_request(payload: bytes, token: str | None) -> None:
    assert parse_token_request(payload, LIMITS) == token


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (raw({"clientToken": 1}), 400, "Invalid clientToken"),
        (raw({"clientToken": "a" * 65}), 400, "Invalid clientToken"),
        (b"\xff\xfe", 415, NOT_UTF8),
        (b"{" * (LIMITS.max_request_bytes + 1), 413, TOO_LARGE),
    ],
)
def test_token_request_refused(payload: bytes, code: int, message: str) -> None:
    with pytest.raises(ShadowError) as info:
        parse_token_request(payload, LIMITS)
    assert (info.value.code, info.value.message) == (code, message)
    assert info.value.client_token is None


# -- merge ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "patch", "result"),
    [
        pytest.param({}, {}, {}, id="empty"),
        pytest.param({"a": 1}, {}, {"a": 1}, id="identity"),
        pytest.param({"a": 1}, {"b": 2}, {"a": 1, "b": 2}, id="add"),
        pytest.param({"a": 1}, {"a": "x"}, {"a": "x"}, id="replace-scalar"),
        pytest.param({"a": 1, "b": 2}, {"a": None}, {"b": 2}, id="null-deletes"),
        pytest.param({"a": 1}, {"zz": None}, {"a": 1}, id="null-on-missing"),
        pytest.param(
            {"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}, {"a": {"b": 3, "c": 2}}, id="nested"
        ),
        pytest.param(
            {"a": {"b": {"c": 1, "d": 2}}},
            {"a": {"b": {"c": None}}},
            {"a": {"b": {"d": 2}}},
            id="nested-null",
        ),
        pytest.param({"a": {"b": 1}, "c": 1}, {"a": {"b": None}}, {"c": 1}, id="emptied-removed"),
        pytest.param(
            {"a": {"b": {"c": 1}}, "x": 1},
            {"a": {"b": {"c": None}}},
            {"x": 1},
            id="emptied-chain-removed",
        ),
        pytest.param(
            {"a": {"b": {"c": 1}, "s": 1}},
            {"a": {"b": {"c": None}}},
            {"a": {"s": 1}},
            id="sibling-kept",
        ),
        pytest.param({"a": [1, 2, 3]}, {"a": [4]}, {"a": [4]}, id="array-replaced-whole"),
        pytest.param(
            {"a": [{"x": 1}, {"y": 2}]}, {"a": [{"z": 3}]}, {"a": [{"z": 3}]}, id="array-objects"
        ),
        pytest.param({"a": {"b": 1}}, {"a": [1]}, {"a": [1]}, id="object-to-array"),
        pytest.param({"a": [1]}, {"a": {"b": 1}}, {"a": {"b": 1}}, id="array-to-object"),
        pytest.param({"a": 1}, {"a": {"b": 1}}, {"a": {"b": 1}}, id="scalar-to-object"),
        pytest.param({"a": {"b": 1}}, {"a": 2}, {"a": 2}, id="object-to-scalar"),
        pytest.param(
            {}, {"a": {"b": None, "c": {"d": None, "e": 1}}}, {"a": {"c": {"e": 1}}}, id="new-strip"
        ),
        pytest.param({}, {"a": {"b": None}}, {}, id="new-only-nulls"),
        pytest.param({"a": 5}, {"a": {"b": None}}, {}, id="scalar-to-only-nulls"),
        pytest.param({}, {"a": {}}, {"a": {}}, id="empty-object-is-a-value"),
        pytest.param({"a": {"b": 1}}, {"a": {}}, {"a": {"b": 1}}, id="empty-object-merges"),
        pytest.param({"a": False}, {"a": 0}, {"a": 0}, id="bool-to-int"),
    ],
)
def test_merge(base: dict[str, Any], patch: dict[str, Any], result: dict[str, Any]) -> None:
    before = copy.deepcopy((base, patch))
    assert merge(base, patch) == result
    assert merge(result, patch) == result  # the same patch again changes nothing
    assert (base, patch) == before


def test_merge_reference_example() -> None:
    """The request of reference 1.3 applied to an existing document."""
    desired = {"lights": {"g": 0}, "mode": "auto"}
    reported = {"color": "blue", "obsolete": True, "lights": {"r": 0}}
    state = update(
        {
            "state": {
                "desired": {"color": "red", "lights": {"r": 255}},
                "reported": {"color": "green", "obsolete": None},
            }
        }
    ).state
    assert merge(desired, state["desired"]) == {
        "lights": {"g": 0, "r": 255},
        "mode": "auto",
        "color": "red",
    }
    assert merge(reported, state["reported"]) == {"color": "green", "lights": {"r": 0}}


def test_merge_aws_docs_nested_color() -> None:
    """AWS docs: updating one channel of a nested colour keeps the others."""
    reported = {"color": {"r": 255, "g": 255, "b": 0}}
    assert merge(reported, {"color": {"b": 255}}) == {"color": {"r": 255, "g": 255, "b": 255}}
    assert merge(reported, {"color": None}) == {}


def test_strip_nulls() -> None:
    value = {"a": None, "b": {"c": None, "d": [1, {"e": 2}]}, "f": {"g": None}, "h": {}}
    assert strip_nulls(value) == {"b": {"d": [1, {"e": 2}]}, "h": {}}


def test_merge_with_metadata_stamps_only_what_the_patch_sets() -> None:
    base = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}
    meta = leaf_metadata(base, NOW)
    patch = {"b": {"c": 5, "x": {"y": True}}, "e": None, "f": ["p", "q"]}
    before = copy.deepcopy((base, meta, patch))
    state, state_meta = merge_with_metadata(base, meta, patch, LATER)
    assert state == {"a": 1, "b": {"c": 5, "d": 3, "x": {"y": True}}, "f": ["p", "q"]}
    assert state_meta == {
        "a": ts(NOW),
        "b": {"c": ts(LATER), "d": ts(NOW), "x": {"y": ts(LATER)}},
        "f": [ts(LATER), ts(LATER)],
    }
    assert (base, meta, patch) == before


def test_merge_with_metadata_removes_metadata_of_emptied_objects() -> None:
    base = {"a": {"b": {"c": 1}}, "z": 1}
    state, meta = merge_with_metadata(base, leaf_metadata(base, NOW), {"a": {"b": {"c": None}}}, 9)
    assert state == {"z": 1}
    assert meta == {"z": ts(NOW)}


def test_merge_with_metadata_replaces_metadata_on_type_change() -> None:
    base = {"a": {"b": 1}, "c": [1, 2]}
    state, meta = merge_with_metadata(base, leaf_metadata(base, NOW), {"a": 5, "c": {"d": 1}}, 9)
    assert state == {"a": 5, "c": {"d": 1}}
    assert meta == {"a": ts(9), "c": {"d": ts(9)}}


# -- delta ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "reported", "expected"),
    [
        pytest.param({}, {}, {}, id="empty"),
        pytest.param({"a": 1}, {"a": 1}, {}, id="equal"),
        pytest.param({"a": 1}, {}, {"a": 1}, id="missing-in-reported"),
        pytest.param({}, {"a": 1}, {}, id="only-in-reported-never-appears"),
        pytest.param({"a": 1}, {"a": 1, "b": 2}, {}, id="extra-reported-ignored"),
        pytest.param({"a": 1}, {"a": 2}, {"a": 1}, id="different"),
        pytest.param(
            {"lights": {"color": {"r": 255, "g": 255}}},
            {"lights": {"color": {"r": 255, "g": 0}}},
            {"lights": {"color": {"g": 255}}},
            id="reference-nested-path",
        ),
        pytest.param(
            {"color": "RED", "state": "STOP"},
            {"color": "GREEN", "engine": "ON"},
            {"color": "RED", "state": "STOP"},
            id="reference-get",
        ),
        pytest.param(
            {"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 2, "d": 3}}, {}, id="nested-equal"
        ),
        pytest.param({"a": [1, 2, 3]}, {"a": [1, 2]}, {"a": [1, 2, 3]}, id="array-whole"),
        pytest.param({"a": [1, 2]}, {"a": [2, 1]}, {"a": [1, 2]}, id="array-order"),
        pytest.param({"a": [1, 2]}, {"a": [1, 2]}, {}, id="array-equal"),
        pytest.param(
            {"a": [{"x": 1}, {"y": 2}]},
            {"a": [{"x": 1}, {"y": 3}]},
            {"a": [{"x": 1}, {"y": 2}]},
            id="array-of-objects-whole",
        ),
        pytest.param({"a": {"b": 1}}, {"a": 1}, {"a": {"b": 1}}, id="object-vs-scalar"),
        pytest.param({"a": 1}, {"a": {"b": 1}}, {"a": 1}, id="scalar-vs-object"),
        pytest.param({"a": {"b": 1}}, {"a": [1]}, {"a": {"b": 1}}, id="object-vs-array"),
        pytest.param({"a": "1"}, {"a": 1}, {"a": "1"}, id="string-vs-number"),
        pytest.param({"a": True}, {"a": 1}, {"a": True}, id="true-vs-1"),
        pytest.param({"a": 0}, {"a": False}, {"a": 0}, id="0-vs-false"),
        pytest.param({"a": [True]}, {"a": [1]}, {"a": [True]}, id="bool-in-array"),
        pytest.param({"a": {"b": False}}, {"a": {"b": 0}}, {"a": {"b": False}}, id="nested-bool"),
        # Numbers compare by value, as in the JSON data model.
        pytest.param({"a": 1.0}, {"a": 1}, {}, id="1.0-equals-1"),
        pytest.param({"a": {}}, {}, {"a": {}}, id="empty-object-missing"),
        pytest.param({"a": {}}, {"a": {"b": 1}}, {}, id="empty-object-satisfied"),
        pytest.param({"a": {}}, {"a": 1}, {"a": {}}, id="empty-object-vs-scalar"),
    ],
)
def test_delta(desired: dict[str, Any], reported: dict[str, Any], expected: dict[str, Any]) -> None:
    before = copy.deepcopy((desired, reported))
    assert delta(desired, reported) == expected
    assert (desired, reported) == before


def test_key_deleted_from_reported_reappears_in_delta() -> None:
    shadow = shadow_of({"a": 1, "b": 2}, {"a": 1, "b": 2})
    assert "delta" not in get_document(shadow, NOW, None)["state"]
    outcome = apply(shadow, {"state": {"reported": {"a": None}}})
    # A reported-only update publishes no /update/delta, but the delta is there ...
    assert outcome.delta is None
    assert get_document(outcome.current, LATER, None)["state"]["delta"] == {"a": 1}
    # ... and the next desired update publishes it whole.
    again = apply(outcome.current, {"state": {"desired": {"c": 3}}}, now=LATER + 1)
    assert again.delta is not None
    assert again.delta["state"] == {"a": 1, "c": 3}


# -- metadata -------------------------------------------------------------------------------


def test_leaf_metadata_shape() -> None:
    value = {"a": 1, "b": {"c": "x", "n": None}, "d": [1, {"e": 2}, [3, 4]], "f": [], "g": {}}
    assert leaf_metadata(value, 7) == {
        "a": ts(7),
        "b": {"c": ts(7), "n": ts(7)},
        "d": [ts(7), {"e": ts(7)}, [ts(7), ts(7)]],
        "f": [],
        "g": {},
    }
    assert leaf_metadata(None, 7) == ts(7)
    assert leaf_metadata("x", 7) == ts(7)


def test_select_metadata() -> None:
    meta = leaf_metadata({"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": 3}, 5)
    tree = {"b": {"d": [9]}, "e": 1}
    assert select_metadata(tree, meta) == {"b": {"d": [ts(5), ts(5)]}, "e": ts(5)}
    assert select_metadata({"missing": 1}, meta) == {}
    assert select_metadata({}, meta) == {}


# -- apply_update ---------------------------------------------------------------------------


def test_first_update_creates_version_1() -> None:
    outcome = apply(None, {"state": {"desired": {"a": 1}}, "clientToken": "t"})
    assert outcome.previous is None
    assert outcome.current == Shadow({"a": 1}, {}, {"desired": {"a": ts()}}, 1, LATER)
    assert outcome.current.exists


def test_every_accepted_update_increments_the_version_by_one() -> None:
    shadow = shadow_of({"a": 1}, version=7)
    requests: list[dict[str, Any]] = [
        {"state": {}},
        {"state": {"desired": {"a": 1}}},
        {"state": {"reported": {}}},
    ]
    for request in requests:
        outcome = apply(shadow, request)
        assert outcome.current.version == shadow.version + 1
        assert outcome.accepted["version"] == outcome.current.version
        assert outcome.documents["current"]["version"] == outcome.current.version
        shadow = outcome.current


def test_update_reference_example_accepted_document() -> None:
    """Reference 1.4: accepted carries only what the request contained, with metadata."""
    shadow = shadow_of({"mode": "auto"}, {"color": "blue"}, version=41)
    outcome = apply(
        shadow,
        {
            "state": {"desired": {"color": "red", "lights": {"r": 255}}},
            "clientToken": "abc-123",
            "version": 41,
        },
    )
    assert outcome.accepted == {
        "state": {"desired": {"color": "red", "lights": {"r": 255}}},
        "metadata": {"desired": {"color": ts(), "lights": {"r": ts()}}},
        "version": 42,
        "timestamp": LATER,
        "clientToken": "abc-123",
    }
    assert outcome.current.desired == {"mode": "auto", "color": "red", "lights": {"r": 255}}
    assert outcome.current.metadata == {
        "desired": {"mode": ts(NOW), "color": ts(), "lights": {"r": ts()}},
        "reported": {"color": ts(NOW)},
    }


def test_accepted_metadata_mirrors_the_request_including_nulls() -> None:
    shadow = shadow_of({"a": 1}, {"b": 2, "c": {"d": 1}})
    request = {
        "state": {"desired": None, "reported": {"b": None, "c": {"d": None, "e": [1, 2]}}},
    }
    outcome = apply(shadow, request)
    assert outcome.accepted == {
        "state": request["state"],
        "metadata": {
            "desired": ts(),
            "reported": {"b": ts(), "c": {"d": ts(), "e": [ts(), ts()]}},
        },
        "version": 4,
        "timestamp": LATER,
    }
    assert outcome.current.state() == {"reported": {"c": {"e": [1, 2]}}}


def test_accepted_document_builder() -> None:
    request = UpdateRequest({"reported": {"x": 1}}, None, "tok")
    assert accepted_document(request, 5, 2) == {
        "state": {"reported": {"x": 1}},
        "metadata": {"reported": {"x": ts(5)}},
        "version": 2,
        "timestamp": 5,
        "clientToken": "tok",
    }


@pytest.mark.parametrize("section", ["desired", "reported"])
def test_null_section_removes_the_section(section: str) -> None:
    shadow = shadow_of({"a": 1}, {"b": 2})
    outcome = apply(shadow, {"state": {section: None}})
    other = "reported" if section == "desired" else "desired"
    assert section not in outcome.current.state()
    assert section not in outcome.current.metadata
    assert outcome.current.state() == {other: shadow.state()[other]}
    assert outcome.current.metadata == {other: shadow.metadata[other]}
    assert outcome.delta is None
    assert outcome.current.version == shadow.version + 1


def test_both_sections_null_leaves_an_empty_shadow() -> None:
    outcome = apply(shadow_of({"a": 1}, {"b": 2}), {"state": {"desired": None, "reported": None}})
    assert outcome.current.exists
    assert get_document(outcome.current, LATER, None) == {
        "state": {},
        "metadata": {},
        "version": 4,
        "timestamp": LATER,
    }


def test_deleting_the_last_key_removes_the_section() -> None:
    outcome = apply(shadow_of({"a": {"b": 1}}), {"state": {"desired": {"a": {"b": None}}}})
    assert outcome.current.desired == {}
    assert outcome.current.metadata == {}
    assert outcome.documents["current"]["state"] == {}


def test_ignored_top_level_keys_are_not_stored() -> None:
    outcome = apply(None, {"state": {"reported": {"a": 1}}, "extra": {"b": 2}, "metadata": {}})
    assert outcome.current.state() == {"reported": {"a": 1}}
    assert outcome.accepted["state"] == {"reported": {"a": 1}}


@pytest.mark.parametrize(
    ("shadow", "version"),
    [
        (shadow_of({"a": 1}, version=3), 2),
        (shadow_of({"a": 1}, version=3), 4),
        (shadow_of({"a": 1}, version=3), 0),
        (None, 1),
        (Shadow(version=5, exists=False), 0),
        (Shadow(version=5, exists=False), 6),
    ],
    ids=["older", "newer", "zero", "new-shadow", "deleted-reset", "deleted-next"],
)
def test_version_conflict(shadow: Shadow | None, version: int) -> None:
    before = copy.deepcopy(shadow)
    with pytest.raises(ShadowError) as info:
        apply(shadow, {"state": {"desired": {"a": 2}}, "version": version, "clientToken": "c"})
    error = info.value
    assert (error.code, error.message, error.client_token) == (409, "Version conflict", "c")
    assert error.rest_exception == "ConflictException"
    assert error_document(error, NOW) == {
        "code": 409,
        "message": "Version conflict",
        "timestamp": NOW,
        "clientToken": "c",
    }
    assert shadow == before


@pytest.mark.parametrize(
    ("shadow", "version", "expected"),
    [
        (shadow_of({"a": 1}, version=3), 3, 4),
        (None, 0, 1),
        (Shadow(version=5, exists=False), 5, 6),
    ],
    ids=["current", "new-shadow", "deleted"],
)
def test_matching_version_is_accepted(shadow: Shadow | None, version: int, expected: int) -> None:
    outcome = apply(shadow, {"state": {"desired": {"a": 2}}, "version": version})
    assert outcome.current.version == expected


def test_version_continues_after_a_delete() -> None:
    live = shadow_of({"a": 1}, {"b": 2}, version=4)
    assert delete_document(live.version, LATER, "d") == {
        "version": 4,
        "timestamp": LATER,
        "clientToken": "d",
    }
    # A deleted shadow keeps its version (and, here, stale state that must not come back).
    deleted = replace(live, exists=False, timestamp=LATER)
    outcome = apply(deleted, {"state": {"reported": {"c": 3}}}, now=LATER + 1)
    assert outcome.previous is None
    assert outcome.current == Shadow({}, {"c": 3}, {"reported": {"c": ts(LATER + 1)}}, 5, LATER + 1)
    assert "previous" not in outcome.documents
    assert outcome.documents["current"]["version"] == 5


def test_state_size_limit() -> None:
    limits = ShadowLimits(max_state_bytes=100)
    # '{"a":""}' is 8 bytes, so 92 characters make exactly 100.
    at_limit = {"a": "x" * 92}
    assert state_size(at_limit, {}) == 100
    outcome = apply(None, {"state": {"desired": at_limit}}, limits=limits)
    assert state_size(outcome.current.desired, outcome.current.reported) == 100
    shadow = outcome.current
    before = copy.deepcopy(shadow)
    with pytest.raises(ShadowError) as info:
        apply(shadow, {"state": {"reported": {"b": 1}}, "clientToken": "big"}, limits=limits)
    error = info.value
    assert (error.code, error.message, error.client_token) == (413, TOO_LARGE, "big")
    assert shadow == before
    # Shrinking back under the limit is always possible.
    smaller = apply(shadow, {"state": {"desired": {"a": "x"}, "reported": {"b": 1}}}, limits=limits)
    assert smaller.current.state() == {"desired": {"a": "x"}, "reported": {"b": 1}}


def test_state_size_counts_both_sections_and_not_metadata() -> None:
    limits = ShadowLimits(max_state_bytes=20)
    # {"k":[1,1,1,1,1,1]} is 19 bytes with metadata many times larger.
    desired = {"k": [1] * 6}
    assert state_size(desired, {}) == 19
    outcome = apply(None, {"state": {"desired": desired}}, limits=limits)
    assert outcome.current.desired == desired
    assert len(dumps(outcome.current.metadata)) > 100
    with pytest.raises(ShadowError) as too_large:
        apply(None, {"state": {"desired": desired, "reported": {"b": 1}}}, limits=limits)
    assert too_large.value.code == 413


@pytest.mark.parametrize(
    ("desired", "reported", "size"),
    [
        ({}, {}, 0),
        ({"a": 1}, {}, 7),
        ({}, {"a": 1}, 7),
        ({"a": 1}, {"b": "é"}, 7 + 10),
        ({"a": [1, 2]}, {}, 11),
    ],
)
def test_state_size(desired: dict[str, Any], reported: dict[str, Any], size: int) -> None:
    assert state_size(desired, reported) == size


def test_dumps_is_compact_utf8() -> None:
    assert dumps({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'.encode()


# -- /update/delta --------------------------------------------------------------------------


def test_delta_document_reference_example() -> None:
    shadow = shadow_of(
        {"lights": {"color": {"r": 255, "g": 0}}}, {"lights": {"color": {"r": 255, "g": 0}}}, 17
    )
    outcome = apply(
        shadow,
        {"state": {"desired": {"lights": {"color": {"g": 255}}}}, "clientToken": "abc-123"},
        now=LATER,
    )
    assert outcome.delta == {
        "version": 18,
        "timestamp": LATER,
        "state": {"lights": {"color": {"g": 255}}},
        "metadata": {"lights": {"color": {"g": ts()}}},
        "clientToken": "abc-123",
    }


def test_delta_carries_the_whole_current_delta() -> None:
    shadow = shadow_of({"old": 1, "same": 2}, {"same": 2})
    outcome = apply(shadow, {"state": {"desired": {"new": [1, 2]}}})
    assert outcome.delta is not None
    assert outcome.delta["state"] == {"old": 1, "new": [1, 2]}
    # Untouched keys keep their older desired timestamps.
    assert outcome.delta["metadata"] == {"old": ts(NOW), "new": [ts(), ts()]}
    assert "clientToken" not in outcome.delta


@pytest.mark.parametrize(
    "request_doc",
    [
        {"state": {"reported": {"a": 2}}},
        {"state": {}},
        {"state": {"desired": {"a": 2}, "reported": {"a": 2}}},
        {"state": {"desired": None}},
        {"state": {"desired": {"b": None, "a": None}}},
    ],
    ids=["reported-only", "empty", "satisfied", "desired-null", "desired-emptied"],
)
def test_no_delta_document(request_doc: dict[str, Any]) -> None:
    # The stored shadow has a delta; only the request decides whether one is published.
    shadow = shadow_of({"a": 1, "b": 1}, {"b": 1})
    assert get_document(shadow, NOW, None)["state"]["delta"] == {"a": 1}
    outcome = apply(shadow, request_doc)
    assert outcome.delta is None


def test_reported_only_update_publishes_no_delta_even_when_one_exists() -> None:
    outcome = apply(shadow_of({"a": 1}, {"a": 1}), {"state": {"reported": {"a": 2}}})
    assert outcome.delta is None
    assert delta(outcome.current.desired, outcome.current.reported) == {"a": 1}


def test_delta_document_builder() -> None:
    meta = leaf_metadata({"a": 1, "b": {"c": 1, "d": 2}}, 3)
    assert delta_document({"b": {"d": 2}}, meta, 9, 10, None) == {
        "version": 9,
        "timestamp": 10,
        "state": {"b": {"d": 2}},
        "metadata": {"b": {"d": ts(3)}},
    }


# -- /update/documents ----------------------------------------------------------------------


def test_documents_event_for_a_new_shadow_has_no_previous() -> None:
    outcome = apply(None, {"state": {"reported": {"a": 1}}, "clientToken": "n"})
    assert outcome.documents == {
        "current": {
            "state": {"reported": {"a": 1}},
            "metadata": {"reported": {"a": ts()}},
            "version": 1,
        },
        "timestamp": LATER,
        "clientToken": "n",
    }


def test_documents_event_previous_and_current() -> None:
    shadow = shadow_of({"a": 1}, {"b": 1}, version=41)
    outcome = apply(shadow, {"state": {"reported": {"a": 1}}})
    assert outcome.previous == shadow
    assert outcome.documents == {
        "previous": {
            "state": {"desired": {"a": 1}, "reported": {"b": 1}},
            "metadata": {"desired": {"a": ts(NOW)}, "reported": {"b": ts(NOW)}},
            "version": 41,
        },
        "current": {
            "state": {"desired": {"a": 1}, "reported": {"b": 1, "a": 1}},
            "metadata": {"desired": {"a": ts(NOW)}, "reported": {"b": ts(NOW), "a": ts()}},
            "version": 42,
        },
        "timestamp": LATER,
    }
    # Snapshots never carry a delta, even when there is one.
    assert "delta" not in outcome.documents["previous"]["state"]


def test_documents_event_builder() -> None:
    current = shadow_of({"a": 1}, version=2)
    assert documents_event(None, current, 5, None) == {
        "current": {"state": {"desired": {"a": 1}}, "metadata": current.metadata, "version": 2},
        "timestamp": 5,
    }


# -- /get/accepted --------------------------------------------------------------------------


def test_get_document_reference_example() -> None:
    shadow = shadow_of(
        {"color": "RED", "state": "STOP"}, {"color": "GREEN", "engine": "ON"}, version=17
    )
    assert get_document(shadow, LATER, "tok") == {
        "state": {
            "desired": {"color": "RED", "state": "STOP"},
            "reported": {"color": "GREEN", "engine": "ON"},
            "delta": {"color": "RED", "state": "STOP"},
        },
        "metadata": {
            "desired": {"color": ts(NOW), "state": ts(NOW)},
            "reported": {"color": ts(NOW), "engine": ts(NOW)},
        },
        "version": 17,
        "timestamp": LATER,
        "clientToken": "tok",
    }


@pytest.mark.parametrize(
    ("desired", "reported", "state_keys"),
    [
        ({}, {}, []),
        ({"a": 1}, {}, ["desired", "delta"]),
        ({}, {"a": 1}, ["reported"]),
        ({"a": 1}, {"a": 1}, ["desired", "reported"]),
        ({"a": 1}, {"a": 2}, ["desired", "reported", "delta"]),
    ],
)
def test_get_document_sections_only_when_non_empty(
    desired: dict[str, Any], reported: dict[str, Any], state_keys: list[str]
) -> None:
    document = get_document(shadow_of(desired, reported), LATER, None)
    assert sorted(document["state"]) == sorted(state_keys)
    assert sorted(document["metadata"]) == sorted(k for k in state_keys if k != "delta")
    assert "clientToken" not in document
    assert set(document) == {"state", "metadata", "version", "timestamp"}


# -- delete, errors, not found --------------------------------------------------------------


def test_delete_document() -> None:
    assert delete_document(4, 1591057529, None) == {"version": 4, "timestamp": 1591057529}
    assert delete_document(4, 1, "t") == {"version": 4, "timestamp": 1, "clientToken": "t"}


def test_error_document_shape() -> None:
    document = error_document(bad_request("Invalid JSON"), NOW)
    assert document == {"code": 400, "message": "Invalid JSON", "timestamp": NOW}
    assert type(document["code"]) is int
    assert json.loads(dumps(document)) == document


def test_error_document_detail_only_when_published() -> None:
    hidden = bad_request(INVALID_NODE, "t", detail="desired.a[1] is null")
    assert error_document(hidden, NOW) == {
        "code": 400,
        "message": INVALID_NODE,
        "timestamp": NOW,
        "clientToken": "t",
    }
    assert str(hidden) == f"{INVALID_NODE}: desired.a[1] is null"
    shown = bad_request("Schema", detail="a: not a number", publish_detail=True)
    assert error_document(shown, NOW)["detail"] == "a: not a number"


def test_parse_errors_keep_their_detail_unpublished() -> None:
    error = refused(raw({"state": {"desired": {"a": [1, None]}}}))
    assert error.detail is not None
    assert "detail" not in error_document(error, NOW)


@pytest.mark.parametrize(
    ("thing", "shadow_name", "message"),
    [
        ("lamp", None, "No shadow exists with name: 'lamp'"),
        ("lamp", "config", "No shadow exists with name: 'lamp~config'"),
        ("a:b_c-d", "$x", "No shadow exists with name: 'a:b_c-d~$x'"),
    ],
)
def test_not_found(thing: str, shadow_name: str | None, message: str) -> None:
    error = not_found(thing, shadow_name, "tk")
    assert (error.code, error.message, error.client_token) == (404, message, "tk")
    assert error.rest_exception == "ResourceNotFoundException"
    assert error_document(error, NOW) == {
        "code": 404,
        "message": message,
        "timestamp": NOW,
        "clientToken": "tk",
    }


def test_shadow_error_with_token() -> None:
    error = bad_request("Invalid version")
    echoed = error.with_token("t")
    assert echoed.client_token == "t"
    assert (echoed.code, echoed.message) == (error.code, error.message)
    assert error.with_token(None) is error
    assert echoed.with_token("other") is echoed


@pytest.mark.parametrize("code", list(ShadowErrorCode))
def test_every_code_has_a_rest_exception(code: ShadowErrorCode) -> None:
    assert ShadowError(code, "m").rest_exception == REST_EXCEPTIONS[code]


# -- beyond AWS: clear_desired_on_match -----------------------------------------------------

CLEAR = UpdateRules(clear_desired_on_match=True)


def test_clear_desired_on_match_removes_satisfied_keys() -> None:
    shadow = shadow_of({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}, {})
    outcome = apply(shadow, {"state": {"reported": {"a": 1, "b": {"c": 2}, "e": [2]}}}, rules=CLEAR)
    assert outcome.current.desired == {"b": {"d": 3}, "e": [1]}
    assert outcome.current.metadata["desired"] == {"b": {"d": ts(NOW)}, "e": [ts(NOW)]}
    assert delta(outcome.current.desired, outcome.current.reported) == {"b": {"d": 3}, "e": [1]}
    # The request itself is acknowledged as sent.
    assert outcome.accepted["state"] == {"reported": {"a": 1, "b": {"c": 2}, "e": [2]}}


def test_clear_desired_on_match_all_satisfied_removes_desired() -> None:
    shadow = shadow_of({"a": 1, "b": {"c": 2}}, {"x": 0})
    outcome = apply(shadow, {"state": {"reported": {"a": 1, "b": {"c": 2}}}}, rules=CLEAR)
    assert outcome.current.state() == {"reported": {"x": 0, "a": 1, "b": {"c": 2}}}
    assert "desired" not in outcome.current.metadata
    assert "delta" not in get_document(outcome.current, LATER, None)["state"]


def test_clear_desired_on_match_only_when_the_device_reports() -> None:
    shadow = shadow_of({}, {"a": 1})
    outcome = apply(shadow, {"state": {"desired": {"a": 1}}}, rules=CLEAR)
    assert outcome.current.desired == {"a": 1}
    assert outcome.delta is None


def test_clear_desired_on_match_same_update_desired_and_reported() -> None:
    outcome = apply(
        None, {"state": {"desired": {"a": 1, "b": 2}, "reported": {"a": 1}}}, rules=CLEAR
    )
    assert outcome.current.desired == {"b": 2}
    assert outcome.delta is not None
    assert outcome.delta["state"] == {"b": 2}


@pytest.mark.parametrize(
    ("desired", "reported", "kept"),
    [
        ({}, {"a": 1}, {}),
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {}, {"a": 1}),
        ({"a": 1}, {"a": True}, {"a": 1}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, {"a": {"c": 2}}),
        ({"a": {"b": 1}}, {"a": 5}, {"a": {"b": 1}}),
        ({"a": [1, 2]}, {"a": [1, 2]}, {}),
        ({"a": {}}, {"a": {"z": 1}}, {}),
        ({"a": {}}, {}, {"a": {}}),
    ],
)
def test_prune_satisfied(
    desired: dict[str, Any], reported: dict[str, Any], kept: dict[str, Any]
) -> None:
    meta = leaf_metadata(desired, 3)
    state, state_meta = prune_satisfied(desired, meta, reported)
    assert state == kept
    assert state == delta(desired, reported)
    assert state_meta == leaf_metadata(kept, 3)


# -- beyond AWS: rejections -----------------------------------------------------------------

RECORD = UpdateRules(record_rejections=True)
RECORD_KEEP = UpdateRules(record_rejections=True, clear_rejected=False)


def test_record_rejections_clears_refused_desired_keys() -> None:
    shadow = shadow_of({"speed": 300, "mode": {"fan": "max", "heat": 2}, "ok": 1})
    outcome = apply(
        shadow,
        {
            "state": {"reported": {"ok": 1}},
            "rejected": {"speed": "above 200", "mode": {"fan": 3}, "nobody-asked": "x"},
        },
        rules=RECORD,
    )
    assert outcome.rejections == (
        Rejection(("speed",), 300, "above 200"),
        Rejection(("mode", "fan"), "max", "3"),
    )
    assert outcome.current.desired == {"mode": {"heat": 2}, "ok": 1}
    assert outcome.current.metadata["desired"] == {"mode": {"heat": ts(NOW)}, "ok": ts(NOW)}
    assert outcome.current.reported == {"ok": 1}


def test_record_rejections_keeps_refused_keys_when_asked() -> None:
    shadow = shadow_of({"speed": 300})
    outcome = apply(shadow, {"state": {}, "rejected": {"speed": "no"}}, rules=RECORD_KEEP)
    assert outcome.rejections == (Rejection(("speed",), 300, "no"),)
    assert outcome.current.desired == {"speed": 300}
    assert outcome.current.metadata == shadow.metadata


def test_rejected_subtree_removes_it_whole() -> None:
    shadow = shadow_of({"mode": {"fan": 1, "heat": 2}, "x": 1})
    outcome = apply(shadow, {"state": {}, "rejected": {"mode": "unsupported"}}, rules=RECORD)
    assert outcome.rejections == (Rejection(("mode",), {"fan": 1, "heat": 2}, "unsupported"),)
    assert outcome.current.desired == {"x": 1}


@pytest.mark.parametrize("rules", [AWS_RULES, UpdateRules()], ids=["AWS_RULES", "default"])
@pytest.mark.parametrize("rejected", [{"speed": "no"}, "no", [1], 5, None])
def test_default_rules_ignore_rejected(rules: UpdateRules, rejected: Any) -> None:
    """With the default rules nothing differs from AWS: ``rejected`` is an unknown key."""
    shadow = shadow_of({"speed": 300, "a": 1}, {"a": 1})
    with_rejected = apply(
        shadow,
        {"state": {"reported": {"a": 1}}, "rejected": rejected, "clientToken": "t"},
        rules=rules,
    )
    without = apply(shadow, {"state": {"reported": {"a": 1}}, "clientToken": "t"}, rules=rules)
    assert with_rejected == without
    assert with_rejected.rejections == ()
    assert with_rejected.current.desired == {"speed": 300, "a": 1}


def test_default_rules_keep_satisfied_desired() -> None:
    shadow = shadow_of({"a": 1})
    outcome = apply(shadow, {"state": {"reported": {"a": 1}}})
    assert outcome.current.desired == {"a": 1}


def test_rejections_truncate_long_reasons() -> None:
    found = collect_rejections({"a": "r" * 5000}, {"a": 1})
    assert found == [Rejection(("a",), 1, "r" * 1024)]


@pytest.mark.parametrize(
    ("rejected", "desired", "found"),
    [
        ({}, {"a": 1}, []),
        ({"a": "no"}, {}, []),
        ({"a": "no"}, {"a": 1}, [Rejection(("a",), 1, "no")]),
        ({"a": {"b": "no"}}, {"a": {"b": [1], "c": 2}}, [Rejection(("a", "b"), [1], "no")]),
        ({"a": {"zz": "no"}}, {"a": {"b": 1}}, []),
        ({"a": {"b": "no"}}, {"a": 5}, [Rejection(("a",), 5, '{"b": "no"}')]),
        ({"a": None}, {"a": 1}, [Rejection(("a",), 1, "null")]),
        ({"a": 42}, {"a": 1}, [Rejection(("a",), 1, "42")]),
    ],
)
def test_collect_rejections(
    rejected: dict[str, Any], desired: dict[str, Any], found: list[Rejection]
) -> None:
    assert collect_rejections(rejected, desired) == found


def test_remove_paths() -> None:
    tree = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    meta = leaf_metadata(tree, 4)
    state, state_meta = remove_paths(tree, meta, [("a", "c", "d"), ("e",)])
    assert state == {"a": {"b": 1}}
    assert state_meta == {"a": {"b": ts(4)}}
    state, state_meta = remove_paths(tree, meta, [("a", "b"), ("a", "c")])
    assert state == {"e": 3}
    assert state_meta == {"e": ts(4)}
    assert remove_paths(tree, meta, []) == (tree, meta)
    assert tree == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
