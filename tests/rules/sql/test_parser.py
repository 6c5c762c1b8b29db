"""The parser (rules/sql/parser.py): every construct against a hand-built AST, AWS's documented
statements, the keyword-as-name rules, positions, limits, and ~40 broken statements with the
exact line, column and expected list of their error."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rules.sql import ast
from rules.sql.errors import RuleSqlError
from rules.sql.parser import MAX_DEPTH, MAX_NESTING, parse, parse_expression
from tests.rules.sql.trees import assert_same

END = "the end of the statement"

# -- builders: short names for hand-built trees -----------------------------------------------


def lit(value: str | int | Decimal | bool | None) -> ast.Literal:
    return ast.Literal(value)


def dec(text: str) -> ast.Literal:
    return ast.Literal(Decimal(text))


def n(name: str) -> ast.Identifier:
    return ast.Identifier(name)


def path(root: str, *names: str) -> ast.Expr:
    node: ast.Expr = ast.Identifier(root)
    for name in names:
        node = ast.Attribute(node, name)
    return node


def idx(target: ast.Expr, index: ast.Expr | int) -> ast.Index:
    return ast.Index(target, lit(index) if isinstance(index, int) else index)


def b(op: str, left: ast.Expr, right: ast.Expr) -> ast.Binary:
    return ast.Binary(op, left, right)


def neg(operand: ast.Expr) -> ast.Unary:
    return ast.Unary("-", operand)


def not_(operand: ast.Expr) -> ast.Unary:
    return ast.Unary("NOT", operand)


def call(name: str, *args: ast.Expr) -> ast.Call:
    return ast.Call(name, args)


STAR = ast.Star()


def item(expr: ast.Expr, alias: str | None = None) -> ast.SelectItem:
    return ast.SelectItem(expr, alias)


def select(
    *items: ast.SelectItem | ast.Expr,
    source: str | ast.Expr | None = None,
    where: ast.Expr | None = None,
    value: bool = False,
) -> ast.Select:
    made = tuple(i if isinstance(i, ast.SelectItem) else ast.SelectItem(i) for i in items)
    return ast.Select(made, source, where, value)


# -- expressions --------------------------------------------------------------------------------

EXPRESSIONS: list[tuple[str, ast.Expr]] = [
    # literals
    ("1", lit(1)),
    ("1.5", dec("1.5")),
    ("10.0", dec("10.0")),
    ("6.02e23", dec("6.02e23")),
    ("-1", lit(-1)),
    ("- 1", lit(-1)),
    ("-1.5", dec("-1.5")),
    ("+1", lit(1)),
    ("'x'", lit("x")),
    ('"x"', lit("x")),
    ("TRUE", lit(True)),
    ("false", lit(False)),
    ("Null", lit(None)),
    # names and paths
    ("temp", n("temp")),
    ("a.b.c", path("a", "b", "c")),
    ("a[0]", idx(n("a"), 0)),
    ("a.b[1].c", ast.Attribute(idx(path("a", "b"), 1), "c")),
    ("a[0][1]", idx(idx(n("a"), 0), 1)),
    ("a[i + 1]", idx(n("a"), b("+", n("i"), lit(1)))),
    ("a['k']", idx(n("a"), lit("k"))),
    ("a[-1]", idx(n("a"), lit(-1))),
    ("state.desired.value", path("state", "desired", "value")),
    ("a.end", path("a", "end")),
    ("a.SELECT.Null", path("a", "SELECT", "Null")),
    ("value", n("value")),
    ("Value.x", path("Value", "x")),
    ("cast", n("cast")),
    ("(a).b", path("a", "b")),
    ("'abc'[0]", idx(lit("abc"), 0)),
    ("5.x", ast.Attribute(lit(5), "x")),
    ("[1, 2][0]", idx(ast.ArrayLiteral((lit(1), lit(2))), 0)),
    # calls
    ("topic()", call("topic")),
    ("topic(2)", call("topic", lit(2))),
    ("TOPIC(2)", call("topic", lit(2))),
    ("isUndefined(a)", call("isundefined", n("a"))),
    ("get(a, 'k')", call("get", n("a"), lit("k"))),
    ("encode(*, 'base64')", call("encode", STAR, lit("base64"))),
    ("concat(a, b, 'c')", call("concat", n("a"), n("b"), lit("c"))),
    ("f(g(h(1)))", call("f", call("g", call("h", lit(1))))),
    (
        "f((SELECT VALUE x FROM a))",
        call("f", ast.SubQuery(select(n("x"), source=n("a"), value=True))),
    ),
    ("get(a, 0).b", ast.Attribute(call("get", n("a"), lit(0)), "b")),
    # cast
    ("cast(a AS Int)", ast.Cast(n("a"), "Int")),
    ("CAST(a.b AS String)", ast.Cast(path("a", "b"), "String")),
    ("cast(1 + 2 AS Decimal)", ast.Cast(b("+", lit(1), lit(2)), "Decimal")),
    ("cast(a AS boolean).x", ast.Attribute(ast.Cast(n("a"), "boolean"), "x")),
    # CASE
    (
        "CASE color WHEN 'green' THEN 'go' WHEN 'yellow' THEN 'caution' ELSE 'stop' END",
        ast.Case(
            n("color"),
            ((lit("green"), lit("go")), (lit("yellow"), lit("caution"))),
            lit("stop"),
        ),
    ),
    ("case a when 1 then 2 end", ast.Case(n("a"), ((lit(1), lit(2)),), None)),
    (
        "CASE WHEN t > 30 THEN 'hot' WHEN t < 0 THEN 'cold' END",
        ast.Case(
            None,
            (
                (b(">", n("t"), lit(30)), lit("hot")),
                (b("<", n("t"), lit(0)), lit("cold")),
            ),
            None,
        ),
    ),
    (
        "CASE WHEN a THEN CASE b WHEN 1 THEN 'x' END ELSE 'y' END",
        ast.Case(
            None,
            ((n("a"), ast.Case(n("b"), ((lit(1), lit("x")),), None)),),
            lit("y"),
        ),
    ),
    ("CASE a + 1 WHEN 2 THEN 3 END", ast.Case(b("+", n("a"), lit(1)), ((lit(2), lit(3)),), None)),
    # array and object literals
    ("[]", ast.ArrayLiteral(())),
    ("[1, 'a', [b]]", ast.ArrayLiteral((lit(1), lit("a"), ast.ArrayLiteral((n("b"),))))),
    ("{}", ast.ObjectLiteral(())),
    ('{"a": 1}', ast.ObjectLiteral((("a", lit(1)),))),
    (
        "{'latitude': get(ll, 0), \"longitude\": {'x': [y]}}",
        ast.ObjectLiteral(
            (
                ("latitude", call("get", n("ll"), lit(0))),
                ("longitude", ast.ObjectLiteral((("x", ast.ArrayLiteral((n("y"),))),))),
            )
        ),
    ),
    # unary
    ("NOT a", not_(n("a"))),
    ("not not a", not_(not_(n("a")))),
    ("-a", neg(n("a"))),
    ("- -a", neg(neg(n("a")))),
    ("--1", neg(lit(-1))),
    ("-(5)", neg(lit(5))),
    ("-(-5)", neg(lit(-5))),
    ("-5[0]", neg(idx(lit(5), 0))),
    ("-5.x", neg(ast.Attribute(lit(5), "x"))),
    ("-a.b[0]", neg(idx(path("a", "b"), 0))),
    ("+a", n("a")),
    ("-+5", neg(lit(5))),
    # precedence and associativity
    ("a OR b AND c", b("OR", n("a"), b("AND", n("b"), n("c")))),
    ("a AND b OR c", b("OR", b("AND", n("a"), n("b")), n("c"))),
    ("a OR b OR c", b("OR", b("OR", n("a"), n("b")), n("c"))),
    ("NOT a = b", not_(b("=", n("a"), n("b")))),
    ("NOT a AND b", b("AND", not_(n("a")), n("b"))),
    ("a AND NOT b OR c", b("OR", b("AND", n("a"), not_(n("b"))), n("c"))),
    ("NOT (a OR b)", not_(b("OR", n("a"), n("b")))),
    ("a = b + c * d", b("=", n("a"), b("+", n("b"), b("*", n("c"), n("d"))))),
    ("(a + b) * c", b("*", b("+", n("a"), n("b")), n("c"))),
    ("a - b - c", b("-", b("-", n("a"), n("b")), n("c"))),
    ("a - (b - c)", b("-", n("a"), b("-", n("b"), n("c")))),
    ("a / b % c * d", b("*", b("%", b("/", n("a"), n("b")), n("c")), n("d"))),
    ("-a * b", b("*", neg(n("a")), n("b"))),
    ("-2 * 3", b("*", lit(-2), lit(3))),
    ("a * -b", b("*", n("a"), neg(n("b")))),
    ("a + -1", b("+", n("a"), lit(-1))),
    ("a-1", b("-", n("a"), lit(1))),
    ("a < b = c", b("=", b("<", n("a"), n("b")), n("c"))),
    ("a <> b", b("<>", n("a"), n("b"))),
    ("a != b", b("<>", n("a"), n("b"))),
    ("a <= b AND a >= c", b("AND", b("<=", n("a"), n("b")), b(">=", n("a"), n("c")))),
    ("a.b * c[0] > 2", b(">", b("*", path("a", "b"), idx(n("c"), 0)), lit(2))),
    ("'a' + 1 = 'a1'", b("=", b("+", lit("a"), lit(1)), lit("a1"))),
    ("value > 5 and value < 10", b("AND", b(">", n("value"), lit(5)), b("<", n("value"), lit(10)))),
    # nested SELECT in expression position
    ("(SELECT VALUE n FROM e)", ast.SubQuery(select(n("n"), source=n("e"), value=True))),
    (
        "(SELECT v FROM e WHERE n = 'temperature')",
        ast.SubQuery(select(n("v"), source=n("e"), where=b("=", n("n"), lit("temperature")))),
    ),
    (
        "(SELECT *, x + 1 AS y FROM a.list)",
        ast.SubQuery(select(STAR, item(b("+", n("x"), lit(1)), "y"), source=path("a", "list"))),
    ),
    ("((a))", n("a")),
]


@pytest.mark.parametrize(("sql", "expected"), EXPRESSIONS, ids=[sql for sql, _ in EXPRESSIONS])
def test_expressions(sql: str, expected: ast.Expr) -> None:
    assert_same(parse_expression(sql), expected)
    # The same expression inside a statement, as a SELECT item and as the WHERE clause.
    assert_same(parse(f"SELECT {sql} AS x FROM 't'").items[0].expr, expected)
    assert_same(parse(f"SELECT * FROM 't' WHERE {sql}").where, expected)


# -- statements ---------------------------------------------------------------------------------

STATEMENTS: list[tuple[str, ast.Select]] = [
    # AWS's documented examples (reference 2.1, 2.2; SELECT-clause, JSON-extensions, literals,
    # nested-query and binary-payload pages).
    (
        "SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50",
        select(
            n("temp"),
            item(call("topic", lit(2)), "device"),
            source="sensors/+/telemetry",
            where=b(">", n("temp"), lit(50)),
        ),
    ),
    (
        "SELECT color AS rgb FROM 'topic/subtopic' WHERE temperature > 50",
        select(
            item(n("color"), "rgb"),
            source="topic/subtopic",
            where=b(">", n("temperature"), lit(50)),
        ),
    ),
    ("SELECT * FROM 'a/b'", select(STAR, source="a/b")),
    ("SELECT *, 15 as speed FROM 'a/b'", select(STAR, item(lit(15), "speed"), source="a/b")),
    ("SELECT VALUE color FROM 'a/b'", select(n("color"), source="a/b", value=True)),
    ("SELECT VALUE * FROM 'a/b'", select(STAR, source="a/b", value=True)),
    (
        "SELECT color as my_color, temperature as fahrenheit FROM 'topic/subtopic'",
        select(
            item(n("color"), "my_color"),
            item(n("temperature"), "fahrenheit"),
            source="topic/subtopic",
        ),
    ),
    (
        "SELECT foo.bar AS bar.baz FROM 'a/b'",
        select(item(path("foo", "bar"), "bar.baz"), source="a/b"),
    ),
    (
        "SELECT temp, md5(deviceid) AS hashed_id FROM 'topic/#'",
        select(n("temp"), item(call("md5", n("deviceid")), "hashed_id"), source="topic/#"),
    ),
    (
        'SELECT * from \'iot/rules\' WHERE get(get(get(mydata,"item2"),"0"),"my-key") = "myValue"',
        select(
            STAR,
            source="iot/rules",
            where=b(
                "=",
                call(
                    "get",
                    call("get", call("get", n("mydata"), lit("item2")), lit("0")),
                    lit("my-key"),
                ),
                lit("myValue"),
            ),
        ),
    ),
    (
        "SELECT {'latitude': get(lat_long, 0),'longitude':get(lat_long, 1)} as lat_long "
        "FROM 'topic/subtopic'",
        select(
            item(
                ast.ObjectLiteral(
                    (
                        ("latitude", call("get", n("lat_long"), lit(0))),
                        ("longitude", call("get", n("lat_long"), lit(1))),
                    )
                ),
                "lat_long",
            ),
            source="topic/subtopic",
        ),
    ),
    (
        "SELECT [lat,long] as lat_long FROM 'topic/subtopic'",
        select(
            item(ast.ArrayLiteral((n("lat"), n("long"))), "lat_long"),
            source="topic/subtopic",
        ),
    ),
    (
        "SELECT (SELECT VALUE n FROM e) AS sensors FROM 'my/topic'",
        select(
            item(ast.SubQuery(select(n("n"), source=n("e"), value=True)), "sensors"),
            source="my/topic",
        ),
    ),
    (
        "SELECT (SELECT v FROM e WHERE n = 'temperature') AS temperature FROM 'my/topic'",
        select(
            item(
                ast.SubQuery(
                    select(n("v"), source=n("e"), where=b("=", n("n"), lit("temperature")))
                ),
                "temperature",
            ),
            source="my/topic",
        ),
    ),
    (
        "SELECT CASE color WHEN 'green' THEN 'go' WHEN 'yellow' THEN 'caution' ELSE 'stop' END "
        "as instructions FROM 'topic/subtopic'",
        select(
            item(
                ast.Case(
                    n("color"),
                    ((lit("green"), lit("go")), (lit("yellow"), lit("caution"))),
                    lit("stop"),
                ),
                "instructions",
            ),
            source="topic/subtopic",
        ),
    ),
    (
        "SELECT encode(*, 'base64') AS data, timestamp() AS ts FROM 'a/+'",
        select(
            item(call("encode", STAR, lit("base64")), "data"),
            item(call("timestamp"), "ts"),
            source="a/+",
        ),
    ),
    (
        "SELECT * FROM 'a/b' WHERE decode(encode(*, 'base64'), 'base64').temperature > 50",
        select(
            STAR,
            source="a/b",
            where=b(
                ">",
                ast.Attribute(
                    call("decode", call("encode", STAR, lit("base64")), lit("base64")),
                    "temperature",
                ),
                lit(50),
            ),
        ),
    ),
    (
        "SELECT cast(temp AS Int) AS t, cast(flag AS Boolean) AS f "
        "FROM '$aws/things/+/shadow/update'",
        select(
            item(ast.Cast(n("temp"), "Int"), "t"),
            item(ast.Cast(n("flag"), "Boolean"), "f"),
            source="$aws/things/+/shadow/update",
        ),
    ),
    # FROM is optional (Basic Ingest); WHERE without FROM; double-quoted topic filter.
    ("SELECT *", select(STAR)),
    ("SELECT 1 AS one", select(item(lit(1), "one"))),
    ("SELECT a WHERE b", select(n("a"), where=n("b"))),
    ('SELECT a FROM "a/b"', select(n("a"), source="a/b")),
    ("select a from 'A/B' where b", select(n("a"), source="A/B", where=n("b"))),
    # VALUE as a name: only a keyword right after SELECT with an expression after it.
    ("SELECT value FROM 'a'", select(n("value"), source="a")),
    ("SELECT VALUE FROM 'a'", select(n("VALUE"), source="a")),
    ("SELECT value, b FROM 'a'", select(n("value"), n("b"), source="a")),
    ("SELECT value AS v FROM 'a'", select(item(n("value"), "v"), source="a")),
    ("SELECT value.x FROM 'a'", select(path("value", "x"), source="a")),
    ("SELECT value", select(n("value"))),
    ("SELECT value WHERE value > 1", select(n("value"), where=b(">", n("value"), lit(1)))),
    ("SELECT value * 2 AS d FROM 'a'", select(item(b("*", n("value"), lit(2)), "d"), source="a")),
    ("SELECT (value) - 32 FROM 'a'", select(b("-", n("value"), lit(32)), source="a")),
    ("SELECT VALUE -x FROM 'a'", select(neg(n("x")), source="a", value=True)),
    ("SELECT value = 1 FROM 'a'", select(b("=", n("value"), lit(1)), source="a")),
    ("SELECT VALUE value FROM 'a'", select(n("value"), source="a", value=True)),
    ("SELECT VALUE value * 2 FROM 'a'", select(b("*", n("value"), lit(2)), source="a", value=True)),
    ("SELECT VALUE (-x) FROM 'a'", select(neg(n("x")), source="a", value=True)),
    (
        "SELECT VALUE [a, b] FROM 'a'",
        select(ast.ArrayLiteral((n("a"), n("b"))), source="a", value=True),
    ),
    ("SELECT VALUE NOT a FROM 'a'", select(not_(n("a")), source="a", value=True)),
    ("SELECT VALUE *", select(STAR, value=True)),
    ("SELECT (value)[0] FROM 'a'", select(idx(n("value"), 0), source="a")),
    # Aliases: any word but FROM and WHERE, dotted.
    ("SELECT a AS value FROM 'x'", select(item(n("a"), "value"), source="x")),
    ("SELECT a AS end.Select.x1 FROM 'x'", select(item(n("a"), "end.Select.x1"), source="x")),
    (
        "SELECT a AS b, c AS b.c FROM 'x'",
        select(item(n("a"), "b"), item(n("c"), "b.c"), source="x"),
    ),
    # Nested SELECT inside nested SELECT, and in WHERE.
    (
        "SELECT (SELECT (SELECT VALUE z FROM y) AS ys FROM x) AS xs FROM 't'",
        select(
            item(
                ast.SubQuery(
                    select(
                        item(ast.SubQuery(select(n("z"), source=n("y"), value=True)), "ys"),
                        source=n("x"),
                    )
                ),
                "xs",
            ),
            source="t",
        ),
    ),
    (
        "SELECT * FROM 't' WHERE (SELECT VALUE v FROM list WHERE v > 1) <> []",
        select(
            STAR,
            source="t",
            where=b(
                "<>",
                ast.SubQuery(
                    select(n("v"), source=n("list"), where=b(">", n("v"), lit(1)), value=True)
                ),
                ast.ArrayLiteral(()),
            ),
        ),
    ),
    # Whitespace and line breaks anywhere between tokens.
    (
        "\n  SELECT\n    a ,\n    b AS c\n  FROM\n    'x'\n  WHERE\n    d\n",
        select(n("a"), item(n("b"), "c"), source="x", where=n("d")),
    ),
]


@pytest.mark.parametrize(("sql", "expected"), STATEMENTS, ids=[sql for sql, _ in STATEMENTS])
def test_statements(sql: str, expected: ast.Select) -> None:
    assert_same(parse(sql), expected)


def test_positions_point_at_the_first_token_of_each_node() -> None:
    sql = (
        "SELECT a,\n  topic(2) AS d,\n  x.y[0]\nFROM 't'\nWHERE\n  -5 < b + (SELECT VALUE c FROM e)"
    )
    statement = parse(sql)
    assert statement.pos == (1, 1)
    a, d, xy = statement.items
    assert (a.pos, a.expr.pos) == ((1, 8), (1, 8))
    assert isinstance(d.expr, ast.Call)
    assert (d.pos, d.expr.pos, d.expr.args[0].pos) == ((2, 3), (2, 3), (2, 9))
    assert isinstance(xy.expr, ast.Index)
    assert (xy.expr.pos, xy.expr.target.pos, xy.expr.index.pos) == ((3, 3), (3, 3), (3, 7))
    where = statement.where
    assert isinstance(where, ast.Binary)
    assert (where.pos, where.left.pos) == ((6, 3), (6, 3))
    right = where.right
    assert isinstance(right, ast.Binary)
    assert right.pos == (6, 8)
    assert isinstance(right.right, ast.SubQuery)
    assert (right.right.pos, right.right.query.pos) == ((6, 12), (6, 13))


def test_positions_of_other_nodes() -> None:
    expr = parse_expression("CASE WHEN NOT a THEN cast(b AS Int) END")
    assert isinstance(expr, ast.Case)
    condition, result = expr.whens[0]
    assert (expr.pos, condition.pos, result.pos) == ((1, 1), (1, 11), (1, 22))
    literal = parse_expression("  [ {'k': *}]".replace("*", "1"))
    assert isinstance(literal, ast.ArrayLiteral)
    assert (literal.pos, literal.items[0].pos) == ((1, 3), (1, 5))
    star = parse("SELECT *, encode(*, 'x')").items
    assert star[0].expr.pos == (1, 8)
    encoded = star[1].expr
    assert isinstance(encoded, ast.Call)
    assert encoded.args[0].pos == (1, 18)


def test_equality_ignores_positions() -> None:
    assert parse("SELECT a FROM 'x'") == parse("SELECT\n\n   a\n FROM 'x'")


def test_literal_types_are_kept() -> None:
    """``==`` would accept True for 1 and Decimal('1') for 1; the parser must not mix them."""
    values = [i.expr for i in parse("SELECT 1, 1.0, true, 'true', null, -0, -0.0").items]
    assert [type(v.value) for v in values if isinstance(v, ast.Literal)] == [
        int,
        Decimal,
        bool,
        str,
        type(None),
        int,
        Decimal,
    ]


def test_negative_decimals_are_exact() -> None:
    digits = "-1.2345678901234567890123456789012345678901234567890"
    expr = parse_expression(digits)
    assert isinstance(expr, ast.Literal)
    assert str(expr.value) == digits


# -- limits -------------------------------------------------------------------------------------


def test_nesting_up_to_the_limit_parses() -> None:
    depth = MAX_NESTING - 2
    assert_same(parse("SELECT " + "(" * depth + "a" + ")" * depth), select(n("a")))
    chain = " OR ".join(["a"] * (MAX_DEPTH - 10))
    assert parse(f"SELECT * WHERE {chain}").where is not None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * 40 + "a" + ")" * 40,
        "SELECT " + "NOT " * 40 + "a",
        "SELECT " + "- " * 40 + "a",
        "SELECT " + "f(" * 40 + "a" + ")" * 40,
        "SELECT " + "[" * 40 + "]" * 40,
        "SELECT " + "(SELECT " * 40 + "a FROM b)" * 40,
        "SELECT " + "(" * 10_000,
    ],
    ids=["parens", "not", "minus", "calls", "arrays", "selects", "ten-thousand"],
)
def test_deep_nesting_is_an_error_not_a_crash(sql: str) -> None:
    with pytest.raises(RuleSqlError, match=f"nested too deeply \\(more than {MAX_NESTING}"):
        parse(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * WHERE " + " OR ".join(["a"] * (MAX_DEPTH + 1)),
        "SELECT " + "a" + ".b" * (MAX_DEPTH + 1),
        "SELECT " + "a" + "[0]" * (MAX_DEPTH + 1),
        "SELECT " + " + ".join(["1"] * 5000),
    ],
    ids=["or-chain", "path", "index", "sum"],
)
def test_deep_trees_are_an_error(sql: str) -> None:
    with pytest.raises(RuleSqlError, match=f"nested too deeply \\(more than {MAX_DEPTH}"):
        parse(sql)


# -- errors -------------------------------------------------------------------------------------

ERRORS: list[tuple[str, int, int, str, tuple[str, ...]]] = [
    # (sql, line, column, message fragment, expected)
    ("", 1, 1, "expected SELECT at the start of the statement", ("SELECT",)),
    ("FROM 'a'", 1, 1, "expected SELECT", ("SELECT",)),
    (
        "SELECT",
        1,
        7,
        "expected '*', VALUE or an expression after SELECT",
        ("'*'", "VALUE", "an expression"),
    ),
    ("SELECT FROM 'a'", 1, 8, "after SELECT", ("'*'", "VALUE", "an expression")),
    (
        "SELECT a, FROM 'a'",
        1,
        11,
        "expected '*' or an expression after ','",
        ("'*'", "an expression"),
    ),
    # VALUE with no expression after it is the name "VALUE" (SELECT VALUE FROM 'a' parses).
    ("SELECT VALUE )", 1, 14, "expected ',', AS, FROM", ("','", "AS", "FROM", "WHERE", END)),
    (
        "SELECT temp FROM 'a/b' WHERE temp >",
        1,
        36,
        "expected an expression after '>'",
        ("an expression",),
    ),
    (
        "SELECT a b FROM 'x'",
        1,
        10,
        "expected ',', AS, FROM, WHERE or the end of the statement",
        ("','", "AS", "FROM", "WHERE", END),
    ),
    (
        "SELECT a AS b c",
        1,
        15,
        "expected ',', FROM, WHERE or the end of the statement",
        ("','", "FROM", "WHERE", END),
    ),
    ("SELECT * AS x FROM 'a'", 1, 10, "'*' takes no alias", ("','", "FROM", "WHERE", END)),
    ("SELECT * * 2", 1, 10, "expected ',', FROM, WHERE or the end", ("','", "FROM", "WHERE", END)),
    (
        "SELECT a FROM b",
        1,
        15,
        "expected the topic filter as a quoted string after FROM",
        ("a quoted topic filter",),
    ),
    ("SELECT a FROM", 1, 14, "expected the topic filter", ("a quoted topic filter",)),
    ("SELECT a FROM 'x' y", 1, 19, "expected WHERE or the end of the statement", ("WHERE", END)),
    (
        "SELECT a FROM 'x' WHERE b c",
        1,
        27,
        "expected an operator or the end of the statement",
        ("an operator", END),
    ),
    ("SELECT a FROM 'x' WHERE", 1, 24, "expected an expression after WHERE", ("an expression",)),
    (
        "SELECT (a + b FROM 'x'",
        1,
        15,
        "expected ')' to close the '(' opened at line 1, column 8",
        ("')'",),
    ),
    (
        "SELECT f(a b) FROM 'x'",
        1,
        12,
        "expected ',' or ')' to close the '(' opened at line 1, column 9",
        ("','", "')'"),
    ),
    ("SELECT f(a,) FROM 'x'", 1, 12, "expected an expression after ','", ("an expression",)),
    ("SELECT f(", 1, 10, "expected an expression after '('", ("an expression",)),
    (
        "SELECT a[0 FROM 'x'",
        1,
        12,
        "expected ']' to close the '[' opened at line 1, column 9",
        ("']'",),
    ),
    ("SELECT a[] FROM 'x'", 1, 10, "expected an expression after '['", ("an expression",)),
    ("SELECT [1, 2 FROM 'x'", 1, 14, "expected ',' or ']' to close the '['", ("','", "']'")),
    ("SELECT [1,]", 1, 11, "expected an expression after ','", ("an expression",)),
    ("SELECT {'a' 1}", 1, 13, "expected ':' after the key 'a'", ("':'",)),
    ("SELECT {a: 1}", 1, 9, "object keys are quoted strings: write 'a'", ("a string key",)),
    ("SELECT {1: 1}", 1, 9, "expected a string key in the object literal", ("a string key",)),
    (
        "SELECT {'a': 1",
        1,
        15,
        "expected ',' or '}' to close the '{' opened at line 1, column 8",
        ("','", "'}'"),
    ),
    ("SELECT a. FROM 'x'", 1, 11, "expected an attribute name after '.'", ("an attribute name",)),
    ("SELECT a.1 FROM 'x'", 1, 10, "expected an attribute name after '.'", ("an attribute name",)),
    ("SELECT a AS FROM 'x'", 1, 13, "expected a name after AS", ("a name",)),
    ("SELECT a AS 'b' FROM 'x'", 1, 13, "expected a name after AS", ("a name",)),
    ("SELECT a AS b. FROM 'x'", 1, 16, "expected a name after '.' in the alias", ("a name",)),
    (
        "SELECT CASE a THEN 1 END",
        1,
        15,
        "expected an operator or WHEN after the CASE value",
        ("an operator", "WHEN"),
    ),
    ("SELECT CASE END", 1, 13, "expected an expression after CASE", ("an expression",)),
    ("SELECT CASE WHEN a 1 END", 1, 20, "expected THEN after the WHEN value", ("THEN",)),
    (
        "SELECT CASE WHEN a THEN 1 FROM 'x'",
        1,
        27,
        "expected WHEN, ELSE or END to close the CASE opened at line 1, column 8",
        ("WHEN", "ELSE", "END"),
    ),
    (
        "SELECT CASE WHEN a THEN 1 ELSE 2 FROM 'x'",
        1,
        34,
        "expected END to close the CASE",
        ("END",),
    ),
    ("SELECT cast(a, Int)", 1, 14, "expected AS in cast(value AS type)", ("AS",)),
    ("SELECT cast(a AS 'Int')", 1, 18, "expected a type name after AS", ("a type name",)),
    (
        "SELECT cast(a AS Int FROM 'x'",
        1,
        22,
        "expected ')' to close the '(' opened at line 1, column 12",
        ("')'",),
    ),
    (
        "SELECT VALUE a, b FROM 'x'",
        1,
        15,
        "SELECT VALUE takes exactly one expression",
        ("FROM", "WHERE", END),
    ),
    ("SELECT VALUE a AS b FROM 'x'", 1, 16, "SELECT VALUE takes no alias", ()),
    (
        "SELECT (SELECT a FROM b WHERE c FROM 'x'",
        1,
        33,
        "expected an operator or ')' to close the '(' opened at line 1, column 8",
        ("an operator", "')'"),
    ),
    (
        "SELECT (SELECT a FROM b c)",
        1,
        25,
        "expected an operator, WHERE or ')'",
        ("an operator", "WHERE", "')'"),
    ),
    ("SELECT (SELECT a) FROM 'x'", 1, 17, "expected ',', AS or FROM", ("','", "AS", "FROM")),
    (
        "SELECT a = NOT b",
        1,
        12,
        "expected an expression after '='; NOT applies to a whole comparison",
        ("an expression",),
    ),
    ("SELECT a + WHERE", 1, 12, "expected an expression after '+'", ("an expression",)),
    ("SELECT end FROM 'x'", 1, 8, "after SELECT", ("'*'", "VALUE", "an expression")),
    (
        "SELECT 'a' FROM 'x' WHERE x.from = 1",
        1,
        29,
        "expected an attribute name after '.'",
        ("an attribute name",),
    ),
    # Multi-line statements: positions count lines; the end of input sits after the last token.
    (
        "SELECT a,\n       b\nFROM 'x'\nWHERE c >\n\n",
        4,
        10,
        "expected an expression after '>'",
        ("an expression",),
    ),
    (
        "SELECT a\nFROM 'x'\nWHERE f(1,\n  2",
        4,
        4,
        "expected ',' or ')' to close the '(' opened at line 3, column 8",
        ("','", "')'"),
    ),
    (
        "SELECT\n  a\n  b",
        3,
        3,
        "expected ',', AS, FROM, WHERE or the end",
        ("','", "AS", "FROM", "WHERE", END),
    ),
    ("SELECT CASE\n  WHEN a THEN 1\n  WHEN b 2\nEND", 3, 10, "expected THEN", ("THEN",)),
    (
        "SELECT *\r\nFROM 'a'\r\nWHERE )",
        3,
        7,
        "expected an expression after WHERE",
        ("an expression",),
    ),
]


@pytest.mark.parametrize(
    ("sql", "line", "column", "message", "expected"),
    ERRORS,
    ids=[repr(case[0])[:50] for case in ERRORS],
)
def test_errors(sql: str, line: int, column: int, message: str, expected: tuple[str, ...]) -> None:
    with pytest.raises(RuleSqlError) as caught:
        parse(sql)
    error = caught.value
    assert message in error.message
    assert (error.line, error.column) == (line, column)
    if expected:
        assert error.expected == expected
    # The rendering: message and position, the offending line, a caret under the column.
    rendered = str(error).split("\n")
    assert rendered[0] == f"{error.message} at line {line}, column {column}"
    source_line = sql.split("\n")[line - 1].rstrip("\r")
    assert rendered[1] == f"  {source_line}"
    assert rendered[2] == "  " + " " * (column - 1) + "^"


def test_the_documented_rendering() -> None:
    with pytest.raises(RuleSqlError) as caught:
        parse("SELECT temp FROM 'a/b' WHERE temp >")
    assert str(caught.value) == (
        "expected an expression after '>' at line 1, column 36\n"
        "  SELECT temp FROM 'a/b' WHERE temp >\n"
        "                                     ^"
    )


def test_lexical_errors_come_through_parse() -> None:
    with pytest.raises(RuleSqlError) as caught:
        parse("SELECT a FROM 'x' WHERE a || b")
    assert caught.value.pos == (1, 27)


def test_parse_expression_rejects_trailing_tokens() -> None:
    with pytest.raises(RuleSqlError) as caught:
        parse_expression("topic(2) x")
    assert caught.value.expected == ("an operator", END)
    assert caught.value.pos == (1, 10)
