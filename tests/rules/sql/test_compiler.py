"""The compiler: AST -> closures, the checks made before any message, and templates.

The corpus (test_corpus.py) holds the statement -> output examples; these tests pin the
compiler's own decisions and the shape of its API.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.sql import (
    DEFAULT_VERSION,
    UNDEFINED,
    VERSIONS,
    EvalContext,
    RuleSqlError,
    check_template,
    compile_expression,
    compile_rule,
    get_version,
    substitute,
    values,
)
from rules.sql import compiler as compiler_module
from rules.sql.functions import lookup

V15 = "2015-10-08"
V16 = "2016-03-23"


def ctx(payload: Any = None, topic: str = "a/b", **kwargs: Any) -> EvalContext:
    if isinstance(payload, bytes):
        raw = payload
    else:
        raw = json.dumps({} if payload is None else payload).encode()
    return EvalContext(topic=topic, payload=raw, **kwargs)


def run(sql: str, payload: Any = None, version: str = V16, **kwargs: Any) -> Any:
    return compile_rule(sql, version).evaluate(ctx(payload, **kwargs))


def error_of(sql: str, version: str = V16) -> RuleSqlError:
    with pytest.raises(RuleSqlError) as caught:
        compile_rule(sql, version)
    return caught.value


# -- the compiled rule -------------------------------------------------------------------------


def test_compiled_rule_carries_what_the_engine_needs() -> None:
    rule = compile_rule("SELECT temp FROM 'sensors/+/telemetry' WHERE temp > 50", V16)
    assert rule.topic_filter == "sensors/+/telemetry"
    assert rule.version is VERSIONS[V16]
    assert rule.statement.where is not None
    assert rule.external is False
    assert compile_rule("SELECT a").topic_filter is None  # Basic Ingest only


def test_a_rule_without_a_version_gets_2015_10_08() -> None:
    assert DEFAULT_VERSION == V15
    assert compile_rule("SELECT a FROM 'x'").version.name == V15
    assert run("SELECT VALUE sql_version() FROM 'x'", version=None) == V15  # type: ignore[arg-type]


def test_external_functions_mark_the_rule() -> None:
    rule = compile_rule("SELECT * FROM 'a' WHERE get_thing_shadow('t', 'arn').state.x = 1", V16)
    assert rule.external is True
    assert compile_rule("SELECT aws_lambda('arn', *) AS o FROM 'a'", V16).external is True


def test_evaluate_where_and_select() -> None:
    rule = compile_rule("SELECT temp AS t FROM 'a' WHERE temp > 50", V16)
    hot, cold = ctx({"temp": 60}), ctx({"temp": 10})
    assert rule.evaluate(hot) == {"t": 60}
    assert rule.evaluate(cold) is None
    assert rule.where(hot) is True and rule.where(cold) is False
    assert rule.select(cold) == {"t": 10}  # select ignores WHERE
    assert compile_rule("SELECT a FROM 'x'").where(ctx({})) is True


def test_select_value_null_is_told_apart_by_where_and_select() -> None:
    # evaluate() answers None for "no message" and for a VALUE that is JSON null alike.
    rule = compile_rule("SELECT VALUE a FROM 'x' WHERE true", V16)
    message = ctx({"a": None})
    assert rule.evaluate(message) is None
    assert rule.where(message) is True
    assert rule.select(message) is None


# -- output keys and Undefined -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "payload", "expected"),
    [
        ("SELECT color FROM 'x'", {"color": "red"}, {"color": "red"}),
        ("SELECT a.b FROM 'x'", {"a": {"b": 1}}, {"b": 1}),
        ("SELECT a.b.c FROM 'x'", {"a": {"b": {"c": 2}}}, {"c": 2}),
        ("SELECT upper(c) FROM 'x'", {"c": "r"}, {"_1": "R"}),
        ("SELECT a, b + 1, 'k' FROM 'x'", {"a": 0, "b": 1}, {"a": 0, "_2": 2, "_3": "k"}),
        ("SELECT arr[0] FROM 'x'", {"arr": [3]}, {"_1": 3}),
        ("SELECT a AS x.y FROM 'x'", {"a": 1}, {"x": {"y": 1}}),
        ("SELECT a AS x, b AS x.y FROM 'x'", {"a": 1, "b": 2}, {"x": {"y": 2}}),
    ],
)
def test_output_keys(sql: str, payload: Any, expected: Any) -> None:
    assert run(sql, payload) == expected


def test_undefined_values_leave_their_keys_out() -> None:
    out = run(
        "SELECT a, missing, a.b AS ab, upper(missing) AS u, {'k': missing} AS o FROM 'x'", {"a": 1}
    )
    assert out == {"a": 1, "o": {}}


def test_aliases_are_not_visible_in_where() -> None:
    assert run("SELECT temp AS t FROM 'x' WHERE t > 1", {"temp": 5}) is None
    assert run("SELECT temp AS t FROM 'x' WHERE temp > 1", {"temp": 5}) == {"t": 5}


@pytest.mark.parametrize(
    ("where", "passes"),
    [
        ("true", True),
        ("false", False),
        ("'true'", False),  # a String is not the Boolean true
        ("1", False),
        ("missing", False),
        ("missing > 1", False),
        ("NOT missing", False),
        ("false AND missing", False),
        ("true OR missing", False),  # Undefined: values.op_or follows AWS's OR table
        ("'TRUE' AND true", True),
    ],
)
def test_only_a_boolean_true_passes_where(where: str, passes: bool) -> None:
    assert compile_rule(f"SELECT * FROM 'x' WHERE {where}", V16).where(ctx({})) is passes


def test_select_star_is_a_copy_of_the_shared_document() -> None:
    message = ctx({"a": {"b": 1}})
    out = compile_rule("SELECT *, 2 AS c FROM 'x'", V16).evaluate(message)
    assert out == {"a": {"b": 1}, "c": 2}
    out["a"]["b"] = 99
    assert message.document == {"a": {"b": 1}}
    alone = compile_rule("SELECT * FROM 'x'", V16).evaluate(message)
    assert alone == {"a": {"b": 1}} and alone is not message.document


def test_folded_literals_are_fresh_for_every_message() -> None:
    rule = compile_rule("SELECT [1, 2] AS a, {'k': 1} AS o FROM 'x'", V16)
    first, second = rule.evaluate(ctx({})), rule.evaluate(ctx({}))
    assert first == second
    assert first["a"] is not second["a"] and first["o"] is not second["o"]


def test_constant_sub_expressions_are_folded() -> None:
    rule = compile_rule("SELECT VALUE 60 * 60 * 24 FROM 'x'", V16)
    assert rule.evaluate(ctx({})) == 86400


# -- versions ------------------------------------------------------------------------------------


def test_whole_decimals_per_version() -> None:
    sql = "SELECT VALUE cast(10 AS Double) FROM 'x'"
    assert type(run(sql, version=V15)) is float
    assert type(run(sql, version=V16)) is int


def test_cast_to_decimal_and_bool_only_from_2016() -> None:
    assert run("SELECT VALUE cast('1.5' AS Decimal) FROM 'x'", version=V16) == 1.5
    assert run("SELECT VALUE cast(1 AS Bool) FROM 'x'", version="beta") is True
    error = error_of("SELECT\n  cast(1 AS Boolean) AS b FROM 'x'", V15)
    assert (error.line, error.column) == (2, 3)
    assert "cast to Boolean needs awsIotSqlVersion 2016-03-23" in error.message
    assert "2015-10-08" in error.message


def test_select_value_of_an_array_only_from_2016() -> None:
    assert run("SELECT VALUE arr FROM 'x'", {"arr": [1]}, V16) == [1]
    assert run("SELECT VALUE arr FROM 'x'", {"arr": [1]}, V15) is None
    assert compile_rule("SELECT VALUE arr FROM 'x'", V15).select(ctx({"arr": [1]})) is None


def test_is_undefined_under_2015_points_at_the_call() -> None:
    error = error_of("SELECT a FROM 'x' WHERE isUndefined(b)", V15)
    assert (error.line, error.column) == (1, 25)
    assert "isundefined() needs awsIotSqlVersion 2016-03-23" in str(error)
    assert "^" in str(error)


def test_version_flags_agree_with_the_function_table() -> None:
    is_undefined = lookup("isUndefined")
    assert is_undefined is not None
    for name, version in VERSIONS.items():
        assert version.name == name
        assert version.is_undefined_fn == (name in is_undefined.versions)


def test_beta_has_the_2016_flags() -> None:
    beta, v16 = VERSIONS["beta"], VERSIONS[V16]
    assert {f: getattr(beta, f) for f in beta.__slots__ if f != "name"} == {
        f: getattr(v16, f) for f in v16.__slots__ if f != "name"
    }


def test_unknown_version_lists_the_valid_ones() -> None:
    with pytest.raises(RuleSqlError, match="2015-10-08, 2016-03-23, beta"):
        get_version("2017-01-01")
    with pytest.raises(RuleSqlError, match="unknown awsIotSqlVersion"):
        compile_rule("SELECT a FROM 'x'", "latest")
    assert get_version(None).name == V15
    assert get_version(VERSIONS["beta"]) is VERSIONS["beta"]


@pytest.mark.parametrize(
    ("sql", "what", "column"),
    [
        ("SELECT (SELECT VALUE n FROM e) AS s FROM 'x'", "a nested SELECT", 8),
        ("SELECT [1] AS a FROM 'x'", "an array literal", 8),
        ("SELECT {'a': 1} AS a FROM 'x'", "an object literal", 8),
        ("SELECT encode(*, 'base64') AS a FROM 'x'", "encode()", 8),
    ],
)
def test_2016_constructs_refused_under_2015(sql: str, what: str, column: int) -> None:
    error = error_of(sql, V15)
    assert error.message.startswith(f"{what} needs awsIotSqlVersion 2016-03-23")
    assert (error.line, error.column) == (1, column)
    compile_rule(sql, V16)


# -- compile errors --------------------------------------------------------------------------------


def test_unknown_function_points_at_the_call() -> None:
    error = error_of("SELECT a,\n       temp_c(a) AS t FROM 'x'")
    assert (error.line, error.column) == (2, 8)
    assert error.message == "unknown function temp_c()"
    assert str(error).splitlines()[-1] == "         ^"


def test_unknown_function_suggests_a_close_name() -> None:
    assert "did you mean substring()?" in error_of("SELECT substrng(a, 1) FROM 'x'").message


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("upper()", "upper() takes 1 argument, got 0"),
        ("upper(a, b)", "upper() takes 1 argument, got 2"),
        ("substring(a)", "substring() takes 2 to 3 arguments, got 1"),
        ("topic(1, 2)", "topic() takes 0 to 1 arguments, got 2"),
        ("newuuid(1)", "newuuid() takes 0 arguments, got 1"),
        ("sql_version(1)", "sql_version() takes 0 arguments, got 1"),
    ],
)
def test_wrong_argument_count(call: str, message: str) -> None:
    error = error_of(f"SELECT {call} AS x FROM 'x'")
    assert error.message == message
    assert (error.line, error.column) == (1, 8)


def test_get_dynamodb_is_refused_with_a_clear_message() -> None:
    error = error_of(
        "SELECT *, get_dynamodb('InServiceDevices', 'deviceId', id, 'arn:aws:iam::1:role/r')"
        ".location AS location FROM 'some/topic'"
    )
    assert (error.line, error.column) == (1, 11)
    assert "get_dynamodb() needs Amazon DynamoDB, which thingcore does not have" in error.message


def test_unknown_cast_type() -> None:
    error = error_of("SELECT cast(a AS Float) AS f FROM 'x'")
    assert "cast to unknown type 'Float'" in error.message
    assert "Decimal, Bool, Boolean" in error.message


def test_syntax_errors_come_from_the_parser() -> None:
    error = error_of("SELECT a FROM 'x' WHERE")
    assert (error.line, error.column) == (1, 24)


# -- nested SELECT and CASE ------------------------------------------------------------------------

SENML = {
    "e": [
        {"n": "temperature", "v": 22.5},
        {"n": "light", "v": 135},
        {"n": "acidity", "v": 7},
    ]
}


def test_nested_select_resolves_names_against_each_element() -> None:
    rule = "SELECT (SELECT n, v * 2 AS v2 FROM e WHERE v < 100) AS s, topic() AS t FROM 'x'"
    assert run(rule, SENML, topic="x") == {
        "s": [{"n": "temperature", "v2": 45.0}, {"n": "acidity", "v2": 14}],
        "t": "x",
    }


def test_nested_select_star_and_encode_star_are_the_element() -> None:
    assert run("SELECT VALUE (SELECT VALUE * FROM e WHERE v = 7) FROM 'x'", SENML) == [
        {"n": "acidity", "v": 7}
    ]
    out = run("SELECT VALUE (SELECT VALUE encode(*, 'base64') FROM e WHERE v = 7) FROM 'x'", SENML)
    assert out == ["eyJuIjoiYWNpZGl0eSIsInYiOjd9"]  # base64 of the element's compact JSON


def test_nested_select_over_an_object_and_over_nothing() -> None:
    assert run("SELECT VALUE (SELECT a FROM o) FROM 'x'", {"o": {"a": 1}}) == {"a": 1}
    assert run("SELECT VALUE (SELECT a FROM o WHERE a > 5) FROM 'x'", {"o": {"a": 1}}) == b""
    assert run("SELECT (SELECT a FROM o) AS s FROM 'x'", {"o": 3}) == {}


def test_case_forms() -> None:
    simple = "SELECT VALUE CASE a WHEN 1 THEN 'one' WHEN 2 THEN 'two' ELSE 'many' END FROM 'x'"
    assert run(simple, {"a": 2}) == "two"
    assert run(simple, {"a": 2.0}) == "two"
    assert run(simple, {"a": 9}) == "many"
    assert run(simple, {}) == b""  # an Undefined subject: Undefined, an empty payload
    searched = "SELECT VALUE CASE WHEN a > 1 THEN 'big' WHEN a > 0 THEN 'small' END FROM 'x'"
    assert run(searched, {"a": 5}) == "big"
    assert run(searched, {"a": 0.5}) == "small"
    assert run(searched, {"a": -1}) == b""


# -- binary payloads ------------------------------------------------------------------------------

BINARY = b"\x00\x01\xff\xfe"


def test_select_star_of_a_binary_payload_is_its_bytes() -> None:
    assert run("SELECT * FROM 'x'", BINARY) == BINARY
    assert run("SELECT VALUE * FROM 'x'", BINARY) == BINARY


def test_names_on_a_binary_payload_are_undefined() -> None:
    assert run("SELECT a, topic() AS t FROM 'x'", BINARY) == {"t": "a/b"}
    assert run("SELECT * FROM 'x' WHERE a = 1", BINARY) is None


def test_encode_star_encodes_the_raw_bytes_even_of_json() -> None:
    spaced = b'{ "a" : 1 }'
    out = compile_rule("SELECT encode(*, 'base64') AS d FROM 'x'", V16).evaluate(
        EvalContext(topic="x", payload=spaced)
    )
    assert out == {"d": "eyAiYSIgOiAxIH0="}
    assert run("SELECT encode(*, 'base64') AS d FROM 'x'", BINARY) == {"d": "AAH//g=="}


def test_star_with_other_items_on_a_binary_payload_gives_the_items() -> None:
    assert run("SELECT *, 1 AS one FROM 'x'", BINARY) == {"one": 1}


# -- fast paths agree with the value model ---------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=False),
    st.text(max_size=5),
    st.sampled_from(["1", "-2.5", "1e3", "abc", "true"]),
)
OPERATORS = {
    ">": values.op_gt,
    ">=": values.op_ge,
    "<": values.op_lt,
    "<=": values.op_le,
    "=": values.op_eq,
    "<>": values.op_ne,
}


@given(
    x=JSON_SCALARS,
    op=st.sampled_from(sorted(OPERATORS)),
    const=st.sampled_from(["50", "-1.5", "0", "'red'", "'50'"]),
)
@settings(max_examples=400, deadline=None)
def test_comparison_with_a_constant_matches_the_operator(x: Any, op: str, const: str) -> None:
    expression = compile_expression(f"x {op} {const}", V16)
    right = compile_expression(const, V16)(ctx({}))
    message = EvalContext(topic="a", payload=b"")
    message._parsed, message._document = True, {"x": x}
    got = expression(message)
    want = OPERATORS[op](x, right)
    assert got is want or got == want, (x, op, const, got, want)


JSON = st.recursive(
    JSON_SCALARS.filter(lambda v: v == v),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "e", "n", "v"]), children, max_size=3)
    ),
    max_leaves=10,
)
RULES = [
    compile_rule(sql, V16)
    for sql in (
        "SELECT * FROM 'x'",
        "SELECT *, a AS z FROM 'x' WHERE b > 1 OR NOT a",
        "SELECT a.b, e[0].n, upper(a), a + b AS s, a * b AS m FROM 'x'",
        "SELECT (SELECT VALUE n FROM e WHERE v > 0) AS ns FROM 'x'",
        "SELECT VALUE CASE a WHEN 1 THEN b ELSE e END FROM 'x'",
        "SELECT concat(a, b) AS c, get(e, 0) AS g, cast(a AS String) AS s FROM 'x'",
        "SELECT VALUE transform('enrichArray', a, e) FROM 'x'",
    )
]


@given(payload=JSON)
@settings(max_examples=200, deadline=None)
def test_any_json_payload_evaluates_to_json_or_nothing(payload: Any) -> None:
    raw = json.dumps(payload).encode()
    for rule in RULES:
        out = rule.evaluate(EvalContext(topic="x", payload=raw))
        if not isinstance(out, bytes):
            json.dumps(out, allow_nan=False)


# -- substitution templates ----------------------------------------------------------------------


def test_substitute_expands_templates_against_the_message() -> None:
    message = ctx({"device": {"id": "d-1"}, "n": 3}, topic="my/iot/topic", client_id="c1")
    assert substitute("${topic()}/republish", message, V16) == "my/iot/topic/republish"
    assert substitute("a/${topic(2)}/${device.id}/${n + 1}", message, V16) == "a/iot/d-1/4"
    assert substitute("${clientid()}${clientid()}", message, V16) == "c1c1"
    assert substitute("no templates", message, V16) == "no templates"


def test_substitute_string_forms() -> None:
    message = ctx({"o": {"k": [1, "x"]}, "f": 10.0, "z": None, "t": True})
    assert substitute("${o}", message, V16) == '{"k":[1,"x"]}'
    assert substitute("${f}", message, V16) == "10"
    assert substitute("${f}", message, V15) == "10.0"
    assert substitute("[${missing}][${z}]", message, V16) == "[][]"
    assert substitute("${t}", message, V16) == "true"


def test_substitute_leaves_dollars_alone() -> None:
    message = ctx({}, topic="t")
    assert substitute("$$aws/things/${topic()}/shadow/update", message, V16) == (
        "$$aws/things/t/shadow/update"
    )
    assert substitute("cost: $5 {x} ${topic()}", message, V16) == "cost: $5 {x} t"


def test_substitute_finds_the_closing_brace_past_literals() -> None:
    message = ctx({})
    assert substitute("${get({'a': '}'}, 'a')}!", message, V16) == "}!"
    assert substitute('${"{" + "}"}', message, V16) == "{}"


def test_template_errors_point_into_the_template() -> None:
    with pytest.raises(RuleSqlError) as caught:
        substitute("key/${topic(2)}/${nope(1)}", ctx({}), V16)
    assert (caught.value.line, caught.value.column) == (1, 19)  # the n of nope
    assert caught.value.sql == "key/${topic(2)}/${nope(1)}"
    with pytest.raises(RuleSqlError, match="unterminated"):
        substitute("a/${topic(", ctx({}), V16)


def test_templates_are_cached_in_a_bounded_lru() -> None:
    cache = compiler_module._compile_template
    assert cache.cache_info().maxsize == 4096
    cache.cache_clear()
    for _ in range(3):
        substitute("${topic(1)}", ctx({}), V16)
    info = cache.cache_info()
    assert (info.hits, info.misses) == (2, 1)


def test_compile_expression() -> None:
    expression = compile_expression("upper(a) + topic(1)", V16)
    assert expression(ctx({"a": "x"}, topic="t/u")) == "Xt"
    assert compile_expression("missing", V16)(ctx({})) is UNDEFINED
    with pytest.raises(RuleSqlError, match="errorAction"):
        compile_expression("get_thing_shadow('t', 'arn')", V16, allow_external=False)
    assert compile_expression("get_thing_shadow('t', 'arn')", V16)(ctx({})) is UNDEFINED


@pytest.mark.parametrize("level", [-1, 0, 1, 2, 3, 4])
def test_topic_with_a_constant_level_matches_the_function(level: int) -> None:
    topic = lookup("topic")
    assert topic is not None
    message = ctx({}, topic="a/b/c")
    assert compile_expression(f"topic({level})", V16)(message) == topic.impl(message, level)


def test_check_template_validates_without_a_message() -> None:
    check_template("plain")
    check_template("${topic(1)}/${get_thing_shadow('t', 'arn').x}", V16)
    with pytest.raises(RuleSqlError) as caught:
        check_template("s3/${get_thing_shadow('t', 'arn')}", V16, allow_external=False)
    assert (caught.value.line, caught.value.column) == (1, 6)
    assert "errorAction" in caught.value.message
    with pytest.raises(RuleSqlError, match="unknown function"):
        check_template("${nope()}")
