"""The tokenizer (rules/sql/lexer.py): kinds, values, positions and lexical errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rules.sql.errors import RuleSqlError
from rules.sql.lexer import KEYWORDS, Token, TokenKind, tokenize

K, N, NUM, S, P, EOF = (
    TokenKind.KEYWORD,
    TokenKind.NAME,
    TokenKind.NUMBER,
    TokenKind.STRING,
    TokenKind.PUNCT,
    TokenKind.EOF,
)


def kinds_values(sql: str) -> list[tuple[TokenKind, object]]:
    return [(t.kind, t.value) for t in tokenize(sql)]


def test_a_statement() -> None:
    assert kinds_values("SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry'") == [
        (K, "SELECT"),
        (N, "temp"),
        (P, ","),
        (N, "topic"),
        (P, "("),
        (NUM, 2),
        (P, ")"),
        (K, "AS"),
        (N, "device"),
        (K, "FROM"),
        (S, "sensors/+/telemetry"),
        (EOF, ""),
    ]


@pytest.mark.parametrize("word", sorted(KEYWORDS))
def test_keywords_are_case_insensitive(word: str) -> None:
    for spelling in (word, word.lower(), word.capitalize()):
        (token, _eof) = tokenize(spelling)
        assert (token.kind, token.value, token.text) == (K, word, spelling)


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("temp", "temp"),
        ("Temp", "Temp"),
        ("_private", "_private"),
        ("item2", "item2"),
        ("a_b_9", "a_b_9"),
        ("cast", "cast"),
        ("selected", "selected"),
        ("values", "values"),
        ("timestamp", "timestamp"),
    ],
)
def test_names_keep_their_case(sql: str, value: str) -> None:
    assert kinds_values(sql) == [(N, value), (EOF, "")]


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("007", 7),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("1.5", Decimal("1.5")),
        ("10.0", Decimal("10.0")),
        ("2e3", Decimal("2e3")),
        ("2E+3", Decimal("2E+3")),
        ("1.5e-3", Decimal("0.0015")),
        ("0.1234567890123456789012345678901234", Decimal("0.1234567890123456789012345678901234")),
    ],
)
def test_numbers(sql: str, value: int | Decimal) -> None:
    (token, _eof) = tokenize(sql)
    assert token.kind is NUM
    assert type(token.value) is type(value)
    assert token.value == value


def test_exact_decimals_keep_every_digit() -> None:
    (token, _eof) = tokenize("3.14159265358979323846264338327950288")
    assert str(token.value) == "3.14159265358979323846264338327950288"


def test_a_minus_is_an_operator_and_a_dot_after_a_number_is_member_access() -> None:
    assert kinds_values("-5") == [(P, "-"), (NUM, 5), (EOF, "")]
    assert kinds_values("5.x") == [(NUM, 5), (P, "."), (N, "x"), (EOF, "")]
    assert kinds_values("a.b[0]") == [
        (N, "a"),
        (P, "."),
        (N, "b"),
        (P, "["),
        (NUM, 0),
        (P, "]"),
        (EOF, ""),
    ]


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("'abc'", "abc"),
        ('"abc"', "abc"),
        ("''", ""),
        ("'it''s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        ("'it\\'s'", "it's"),
        ('"a\\"b"', 'a"b'),
        ("'\"'", '"'),
        ('"\'"', "'"),
        ("'a\\\\b'", "a\\b"),
        ("'a\\nb\\tc\\rd'", "a\nb\tc\rd"),
        ("'\\u00e9t\\u00C9'", "étÉ"),
        ("'\\ud83d\\ude00'", "\U0001f600"),
        ("'\\d+'", "\\d+"),
        ("'\\\\d+'", "\\d+"),
        ("'\\b\\s\\.'", "\\b\\s\\."),
        ("'line\nbreak'", "line\nbreak"),
        ("'sensors/+/#'", "sensors/+/#"),
        ("'ünïcødé 😀'", "ünïcødé 😀"),
    ],
)
def test_strings(sql: str, value: str) -> None:
    (token, _eof) = tokenize(sql)
    assert (token.kind, token.value, token.text) == (S, value, sql)


def test_operators_longest_match_and_not_equal_normalised() -> None:
    sql = "= <> != < <= > >= + - * / % . , ( ) [ ] { } :"
    tokens = tokenize(sql)[:-1]
    assert [t.value for t in tokens] == sql.replace("!=", "<>").split()
    assert all(t.kind is P for t in tokens)
    assert tokenize("!=")[0].text == "!="
    assert [t.value for t in tokenize("a<=b<>c>=d")[:-1]] == ["a", "<=", "b", "<>", "c", ">=", "d"]


def test_positions_are_one_based_lines_and_columns() -> None:
    sql = "SELECT a,\n  b\tAS c\r\nFROM 'x'\n\n  WHERE d"
    tokens = tokenize(sql)
    assert [(t.text, t.line, t.column) for t in tokens] == [
        ("SELECT", 1, 1),
        ("a", 1, 8),
        (",", 1, 9),
        ("b", 2, 3),
        ("AS", 2, 5),
        ("c", 2, 8),
        ("FROM", 3, 1),
        ("'x'", 3, 6),
        ("WHERE", 5, 3),
        ("d", 5, 9),
        ("", 5, 10),
    ]
    assert all(sql[t.offset : t.offset + len(t.text)] == t.text for t in tokens)


def test_positions_after_a_string_spanning_lines() -> None:
    tokens = tokenize("SELECT 'a\nbc' AS x,\n y")
    assert [(t.text, t.line, t.column) for t in tokens] == [
        ("SELECT", 1, 1),
        ("'a\nbc'", 1, 8),
        ("AS", 2, 5),
        ("x", 2, 8),
        (",", 2, 9),
        ("y", 3, 2),
        ("", 3, 3),
    ]


def test_end_of_input_sits_after_the_last_character_not_on_trailing_blank_lines() -> None:
    assert tokenize("SELECT a  \n\n")[-1].pos == (1, 9)
    assert tokenize("")[-1].pos == (1, 1)
    assert tokenize("   ")[-1].pos == (1, 1)


def test_unicode_whitespace_separates_tokens() -> None:
    assert kinds_values("SELECT\u00a0a\u2003FROM\u3000'x'") == [
        (K, "SELECT"),
        (N, "a"),
        (K, "FROM"),
        (S, "x"),
        (EOF, ""),
    ]


def test_token_descriptions_for_messages() -> None:
    where, gt, name, string, eof = tokenize("WHERE > temp 'a/b'")
    assert [t.describe() for t in (where, gt, name, string, eof)] == [
        "WHERE",
        "'>'",
        "'temp'",
        "'a/b'",
        "the end of the statement",
    ]
    assert isinstance(where, Token)


@pytest.mark.parametrize(
    ("sql", "line", "column", "message"),
    [
        ("SELECT a # b", 1, 10, "unexpected character '#'"),
        ("SELECT a ; ", 1, 10, "unexpected character ';'"),
        ("SELECT a || b", 1, 10, "'||' is not an AWS IoT SQL operator"),
        ("SELECT a && b", 1, 10, "'&&' is not an AWS IoT SQL operator: use AND"),
        ("SELECT a == b", 1, 10, "'==' is not an AWS IoT SQL operator: use ="),
        ("SELECT !a", 1, 8, "use NOT"),
        ("SELECT `a-b`", 1, 8, "backtick-quoted names are not AWS IoT SQL"),
        ("SELECT $x", 1, 8, "names cannot contain '$'"),
        ("SELECT a$b", 1, 9, "names cannot contain '$'"),
        ("SELECT 12abc", 1, 8, "malformed number '12abc'"),
        ("SELECT 1e", 1, 8, "malformed number '1e'"),
        ("SELECT\n  'abc", 2, 3, "unterminated string: expected the closing '"),
        ("SELECT \"a'", 1, 8, 'expected the closing "'),
        ("SELECT 'a\\", 1, 8, "unterminated string"),
        ("SELECT 'a\nb\\u12'", 2, 2, "a \\u escape needs four hex digits"),
        ("SELECT '\\udc00'", 1, 9, "half of a surrogate pair"),
        ("SELECT '\\ud800x'", 1, 9, "half of a surrogate pair"),
    ],
)
def test_lexical_errors(sql: str, line: int, column: int, message: str) -> None:
    with pytest.raises(RuleSqlError) as caught:
        tokenize(sql)
    error = caught.value
    assert message in error.message
    assert (error.line, error.column) == (line, column)
    assert error.sql == sql
