"""RuleSqlError (rules/sql/errors.py): the rendering with a caret, semantic errors from a node's
position, long lines, tabs, pickling."""

from __future__ import annotations

import pickle

from rules.sql.errors import RuleSqlError, expected_list
from rules.sql.parser import parse
from thingcore.errors import ThingcoreError


def test_is_a_thingcore_error_with_fields() -> None:
    error = RuleSqlError("expected FROM", "SELECT a b", 1, 10, ("FROM",))
    assert isinstance(error, ThingcoreError)
    assert (error.message, error.sql, error.line, error.column, error.expected) == (
        "expected FROM",
        "SELECT a b",
        1,
        10,
        ("FROM",),
    )
    assert error.pos == (1, 10)
    assert error.args == ("expected FROM",)


def test_semantic_error_at_a_node() -> None:
    sql = "SELECT a,\n  nosuch(1) AS b\nFROM 'x'"
    call = parse(sql).items[1].expr
    error = RuleSqlError.at(sql, call.pos, "unknown function nosuch()")
    assert error.expected == ()
    assert str(error) == (
        "unknown function nosuch() at line 2, column 3\n    nosuch(1) AS b\n    ^"
    )


def test_caret_keeps_tabs_so_it_lines_up() -> None:
    error = RuleSqlError("boom", "SELECT\ta,\t\tb", 1, 12)
    assert str(error).split("\n")[1:] == ["  SELECT\ta,\t\tb", "  " + " " * 6 + "\t" + "  \t\t^"]


def test_long_lines_show_a_window_around_the_column() -> None:
    sql = "SELECT " + ", ".join(f"a{i}" for i in range(200)) + " b"
    column = len(sql)  # the 'b'
    error = RuleSqlError("boom", sql, 1, column)
    _, shown, caret = str(error).split("\n")
    assert shown.startswith("  ...") and not shown.endswith("...")
    assert len(shown) < 100
    assert shown[caret.index("^")] == "b"
    middle = RuleSqlError("boom", sql, 1, 300)
    _, shown, caret = str(middle).split("\n")
    assert shown.startswith("  ...") and shown.endswith("...")
    assert shown[caret.index("^")] == sql[299]


def test_end_of_input_caret_sits_after_the_last_character() -> None:
    error = RuleSqlError("expected an expression after '>'", "WHERE a >", 1, 10)
    assert str(error).endswith("  WHERE a >\n           ^")


def test_position_outside_the_text_renders_without_a_snippet() -> None:
    assert str(RuleSqlError("boom", "SELECT a", 0, 0)) == "boom at line 0, column 0"
    assert str(RuleSqlError("boom", "SELECT a", 5, 1)) == "boom at line 5, column 1"


def test_pickles_with_all_fields() -> None:
    error = RuleSqlError("m", "SELECT", 1, 7, ("x", "y"))
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.sql, copy.line, copy.column, copy.expected) == (
        "m",
        "SELECT",
        1,
        7,
        ("x", "y"),
    )


def test_expected_list() -> None:
    assert expected_list(()) == ""
    assert expected_list(("FROM",)) == "FROM"
    assert expected_list(("FROM", "WHERE")) == "FROM or WHERE"
    assert expected_list(("',' ", "FROM", "the end")) == "',' , FROM or the end"
