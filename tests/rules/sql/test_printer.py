"""The printer (rules/sql/printer.py): canonical text, brackets only where needed, and the
round trips: random ASTs -> to_sql -> parse gives the AST back; real statements -> parse ->
print -> parse gives the same AST and the same text."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from rules.sql import ast
from rules.sql.lexer import KEYWORDS
from rules.sql.parser import parse, parse_expression
from rules.sql.printer import quote, to_sql
from tests.rules.sql.trees import assert_same

CANONICAL: list[tuple[str, str]] = [
    # (input, canonical text)
    (
        "select temp,topic(2) as device from 'sensors/+/telemetry' where temp>50",
        "SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50",
    ),
    ('SELECT * FROM "a/b"', "SELECT * FROM 'a/b'"),
    ("SELECT VALUE  color FROM 'a'", "SELECT VALUE color FROM 'a'"),
    ("SELECT TOPIC(2)", "SELECT topic(2)"),
    ("SELECT a != b", "SELECT a <> b"),
    ("SELECT +a", "SELECT a"),
    ("SELECT ((a + b))", "SELECT a + b"),
    ("SELECT (a + b) * c", "SELECT (a + b) * c"),
    ("SELECT a + (b * c)", "SELECT a + b * c"),
    ("SELECT a - (b - c)", "SELECT a - (b - c)"),
    ("SELECT (a - b) - c", "SELECT a - b - c"),
    ("SELECT a OR (b AND c)", "SELECT a OR b AND c"),
    ("SELECT (a OR b) AND c", "SELECT (a OR b) AND c"),
    ("SELECT NOT (a = b)", "SELECT NOT a = b"),
    ("SELECT (NOT a) = b", "SELECT (NOT a) = b"),
    ("SELECT NOT (a AND b)", "SELECT NOT (a AND b)"),
    ("SELECT -(a + b)", "SELECT -(a + b)"),
    ("SELECT -(5)", "SELECT -(5)"),
    ("SELECT - 5", "SELECT -5"),
    ("SELECT -(-5)", "SELECT -(-5)"),
    ("SELECT - - a", "SELECT -(-a)"),
    ("SELECT (-5)[0]", "SELECT (-5)[0]"),
    ("SELECT -(5[0])", "SELECT -5[0]"),
    ("SELECT (a + b).c, (a)[0]", "SELECT (a + b).c, a[0]"),
    ("SELECT a - -1", "SELECT a - -1"),
    ("SELECT 1.50, 2e3, 1E-7, 10.0", "SELECT 1.50, 2E+3, 1E-7, 10.0"),
    (
        "SELECT 'it''s', \"say \"\"hi\"\"\", 'both '' \"'",
        "SELECT \"it's\", 'say \"hi\"', 'both '' \"'",
    ),
    ("SELECT 'a\\\\d', 'tab\\there', '\\d'", "SELECT 'a\\\\d', 'tab\\there', '\\\\d'"),
    ("SELECT {\"a\": 1,'b':[1,2]}", "SELECT {'a': 1, 'b': [1, 2]}"),
    ("SELECT cast(a as int)", "SELECT cast(a AS int)"),
    (
        "select case a when 1 then 'x' else 'y' end as c",
        "SELECT CASE a WHEN 1 THEN 'x' ELSE 'y' END AS c",
    ),
    (
        "SELECT (select value n from e where n>1) as s from 't'",
        "SELECT (SELECT VALUE n FROM e WHERE n > 1) AS s FROM 't'",
    ),
    ("SELECT true, False, NULL", "SELECT TRUE, FALSE, NULL"),
    ("SELECT a.value, a.End", "SELECT a.value, a.End"),
    ("SELECT value * 2, value", "SELECT (value * 2), value"),
    ("SELECT value", "SELECT value"),
    ("SELECT (value)[0]", "SELECT (value[0])"),
    ("SELECT VALUE (-x)", "SELECT VALUE (-x)"),
    ("SELECT VALUE (-1 + x)", "SELECT VALUE (-1 + x)"),
    ("SELECT a AS b.c", "SELECT a AS b.c"),
]


@pytest.mark.parametrize(("sql", "canonical"), CANONICAL, ids=[c for _, c in CANONICAL])
def test_canonical_text(sql: str, canonical: str) -> None:
    statement = parse(sql)
    assert to_sql(statement) == canonical
    assert_same(parse(canonical), statement)


REAL_STATEMENTS = [
    "SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50",
    "SELECT * FROM 'a/b'",
    "SELECT *, 15 AS speed FROM 'a/b'",
    "SELECT VALUE color FROM 'a/b'",
    "SELECT foo.bar AS bar.baz FROM 'a/b'",
    "SELECT (SELECT VALUE n FROM e) AS sensors FROM 'my/topic'",
    "SELECT (SELECT v FROM e WHERE n = 'temperature') AS temperature FROM 'my/topic'",
    "SELECT CASE color WHEN 'green' THEN 'go' WHEN 'yellow' THEN 'caution' ELSE 'stop' END "
    "AS instructions FROM 'topic/subtopic'",
    "SELECT {'latitude': get(lat_long, 0), 'longitude': get(lat_long, 1)} AS lat_long FROM 'a'",
    "SELECT [lat, long] AS lat_long FROM 'topic/subtopic'",
    "SELECT * FROM 'iot/rules' WHERE get(get(get(mydata, 'item2'), '0'), 'my-key') = 'myValue'",
    "SELECT encode(*, 'base64') AS data, clientid() AS c, timestamp() AS ts FROM 'raw/#'",
    "SELECT * FROM 'a/b' WHERE decode(encode(*, 'base64'), 'base64').temperature > 50",
    "SELECT cast(temp AS Decimal) * 1.8 + 32 AS f FROM 't' WHERE isUndefined(temp) = FALSE",
    "SELECT state.reported.* FROM '$aws/things/+/shadow/update/accepted'".replace(".*", ""),
    "SELECT current.state.reported AS r, topic(3) AS thing "
    "FROM '$aws/things/+/shadow/update/documents' "
    "WHERE current.state.reported.temp <> previous.state.reported.temp",
    "SELECT clientId AS c, eventType AS e FROM '$aws/events/presence/+/+' "
    "WHERE eventType = 'disconnected' AND disconnectReason <> 'CLIENT_INITIATED_DISCONNECT'",
    "SELECT VALUE (SELECT VALUE r.v FROM readings AS r WHERE r.v > 0) FROM 'x'".replace(
        " AS r", ""
    ),
    "SELECT substring(msg, 0, 10) AS head, lower(trim(msg)) AS l, "
    "regexp_replace(msg, '\\s+', ' ') AS squeezed FROM 'logs/+'",
    "SELECT parse_time(\"yyyy-MM-dd'T'HH:mm:ss.SSSZ\", timestamp(), 'UTC') AS iso FROM 'a'",
    "SELECT get_thing_shadow(topic(2), 'config', 'arn:aws:iam::123456789012:role/r').state "
    "AS shadow FROM 'things/+/telemetry'",
    "SELECT transform('enrichArray', attributes, values) AS enriched FROM 'a'",
    "SELECT * FROM 'sensors/#' WHERE (temp > 30 OR humidity >= 80.5) AND NOT muted "
    "AND temp % 2 = 0 AND -temp < 10 AND sensor.readings[0].ok",
    "SELECT round(abs(-1.5)) AS r, mod(8, 3) AS m, 8 % 3 AS p, 7 / 2 AS q FROM 'math'",
    "SELECT concat(a, [1, 2], {'k': NULL}) AS c, nanvl(x, 0) AS n FROM 'lits'",
    "SELECT * WHERE startswith(topic(), 'a') OR endswith(topic(), 'z')",
    "SELECT value FROM 'v' WHERE value > 5",
    "SELECT VALUE value * 2 FROM 'v'",
    "SELECT\n  a,\n  b AS c\nFROM 't'\nWHERE d",
]


@pytest.mark.parametrize("sql", REAL_STATEMENTS)
def test_real_statements_round_trip(sql: str) -> None:
    first = parse(sql)
    text = to_sql(first)
    second = parse(text)
    assert_same(second, first)
    assert to_sql(second) == text  # canonical text is a fixed point


def test_expressions_print_on_their_own() -> None:
    assert to_sql(parse_expression("topic( 2 )+'/x'")) == "topic(2) + '/x'"
    assert to_sql(ast.SelectItem(ast.Identifier("a"), "b")) == "a AS b"
    assert to_sql(ast.Star()) == "*"


def test_quote() -> None:
    assert quote("plain") == "'plain'"
    assert quote("it's") == '"it\'s"'
    assert quote("both ' and \"") == "'both '' and \"'"
    assert quote("a\\b\nc\rd\te\x00f\x7f") == "'a\\\\b\\nc\\rd\\te\\u0000f\\u007f'"
    assert quote("😀 é") == "'😀 é'"


@pytest.mark.parametrize(
    "node",
    [
        ast.Identifier("end"),
        ast.Identifier("my-key"),
        ast.Identifier("2x"),
        ast.Identifier(""),
        ast.Attribute(ast.Identifier("a"), "from"),
        ast.Attribute(ast.Identifier("a"), "b c"),
        ast.Call("cast", (ast.Identifier("a"),)),
        ast.Call("my-fn", ()),
        ast.Cast(ast.Identifier("a"), "Big Int"),
        ast.Literal(Decimal("NaN")),
        ast.Literal(Decimal("-Infinity")),
        ast.Select((ast.SelectItem(ast.Identifier("a"), "where"),), None),
        ast.Select((ast.SelectItem(ast.Identifier("a"), "a..b"),), None),
    ],
    ids=repr,
)
def test_unwritable_nodes_are_refused(node: ast.Node) -> None:
    with pytest.raises(ValueError, match="AWS IoT SQL"):
        to_sql(node)


# -- the round-trip property --------------------------------------------------------------------

_WORDS = sorted(KEYWORDS)
_RESERVED = {word for word in KEYWORDS if word != "VALUE"}


def _mixed_case(word: str) -> SearchStrategy[str]:
    return st.sampled_from([word, word.lower(), word.capitalize()])


# Names: a few realistic ones (value and cast included: both are names in expressions), and
# random ones that are not reserved words.
plain_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True).filter(
    lambda s: s.upper() not in KEYWORDS
)
names = plain_names | st.sampled_from(["value", "Value", "cast", "temp", "topic", "state"])
# After '.' and in aliases any word but FROM and WHERE: keywords too.
member_names = names | st.sampled_from([w for w in _WORDS if w not in ("FROM", "WHERE")]).flatmap(
    _mixed_case
)
aliases = st.lists(member_names, min_size=1, max_size=3).map(".".join)
function_names = plain_names.map(str.lower).filter(
    lambda s: s != "cast" and s.upper() not in KEYWORDS
)
type_names = st.sampled_from(["String", "Int", "Integer", "Decimal", "Boolean", "Bool", "varchar"])

literals = st.builds(
    ast.Literal,
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
)
leaves: SearchStrategy[ast.Expr] = literals | st.builds(ast.Identifier, names)

BINARY_OPS = ["OR", "AND", "=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"]


def _small_tuple(
    inner: SearchStrategy[ast.Expr], min_size: int = 0
) -> SearchStrategy[tuple[ast.Expr, ...]]:
    return st.lists(inner, min_size=min_size, max_size=3).map(tuple)


def _selects(
    exprs: SearchStrategy[ast.Expr], sources: SearchStrategy[str | ast.Expr | None]
) -> SearchStrategy[ast.Select]:
    items = st.builds(ast.SelectItem, exprs, st.none() | aliases) | st.just(
        ast.SelectItem(ast.Star())
    )
    plain = st.builds(
        ast.Select,
        st.lists(items, min_size=1, max_size=3).map(tuple),
        sources,
        st.none() | exprs,
        st.just(False),
    )
    value = st.builds(
        ast.Select,
        (exprs | st.just(ast.Star())).map(lambda e: (ast.SelectItem(e),)),
        sources,
        st.none() | exprs,
        st.just(True),
    )
    return plain | value


def _extend(children: SearchStrategy[ast.Expr]) -> SearchStrategy[ast.Expr]:
    whens = st.lists(st.tuples(children, children), min_size=1, max_size=2).map(tuple)
    return st.one_of(
        st.builds(ast.Attribute, children, member_names),
        st.builds(ast.Index, children, children),
        st.builds(ast.Unary, st.sampled_from(["NOT", "-"]), children),
        st.builds(ast.Binary, st.sampled_from(BINARY_OPS), children, children),
        st.builds(ast.Call, function_names, _small_tuple(children | st.just(ast.Star()))),
        st.builds(ast.Cast, children, type_names | plain_names),
        st.builds(ast.Case, st.none() | children, whens, st.none() | children),
        st.builds(ast.ArrayLiteral, _small_tuple(children)),
        st.builds(
            ast.ObjectLiteral,
            st.lists(st.tuples(st.text(max_size=4), children), max_size=2).map(tuple),
        ),
        st.builds(ast.SubQuery, _selects(children, children)),
    )


expressions = st.recursive(leaves, _extend, max_leaves=10)
statements = _selects(expressions, st.none() | st.text(max_size=10))

roundtrip = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@roundtrip
@given(statements)
@example(
    ast.Select(
        (ast.SelectItem(ast.Index(ast.Identifier("value"), ast.Literal(0))),), "a/b", None, False
    )
)
@example(ast.Select((ast.SelectItem(ast.Unary("-", ast.Identifier("x"))),), None, None, True))
@example(ast.Select((ast.SelectItem(ast.Literal(Decimal("-0"))),), None, None, True))
@example(ast.Select((ast.SelectItem(ast.Star()),), None, ast.Identifier("value"), True))
def test_print_then_parse_gives_the_statement_back(statement: ast.Select) -> None:
    assert_same(parse(to_sql(statement)), statement)


@roundtrip
@given(expressions)
@example(ast.Unary("-", ast.Literal(5)))
@example(ast.Unary("-", ast.Literal(Decimal("-1.5"))))
@example(ast.Unary("-", ast.Index(ast.Literal(5), ast.Literal(0))))
@example(ast.Attribute(ast.Literal(-5), "x"))
@example(ast.Attribute(ast.Literal(Decimal("5")), "e5"))
@example(ast.Binary("=", ast.Unary("NOT", ast.Identifier("a")), ast.Literal(True)))
@example(ast.Binary("-", ast.Identifier("a"), ast.Unary("-", ast.Identifier("b"))))
@example(ast.Literal(True))
def test_print_then_parse_gives_the_expression_back(expr: ast.Expr) -> None:
    text = to_sql(expr)
    assert_same(parse_expression(text), expr)
    assert_same(parse(f"SELECT * WHERE {text}").where, expr)
