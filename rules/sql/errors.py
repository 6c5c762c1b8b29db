"""``RuleSqlError``: what is wrong with a rule's SQL, where, and what was expected there.

Raised by the lexer and the parser for syntax errors and by the compiler for semantic ones (an
unknown function, a wrong argument count), always with the 1-based line and column of the
offending token. ``str()`` renders the message, the position, the offending line of the SQL and
a caret under the token, the way sqlglot does::

    expected an expression after '>' at line 1, column 36
      SELECT temp FROM 'a/b' WHERE temp >
                                         ^
"""

from __future__ import annotations

from thingcore.errors import ThingcoreError

_SNIPPET_WIDTH = 100
"""Lines longer than this are shown as a window around the column (rule SQL may be one long
line of up to 256 KB)."""
_SNIPPET_CONTEXT = 40


class RuleSqlError(ThingcoreError):
    """A syntax or semantic error in rule SQL.

    Attributes:
        message: what is wrong, without the position (``expected FROM, WHERE or the end of the
            statement``).
        sql: the whole statement (or substitution expression) that was being read.
        line: 1-based line of the offending token.
        column: 1-based column (in characters) of the offending token; for the end of the
            input, the column just after the last character.
        expected: what the parser would have accepted there, for tools and tests
            (``("FROM", "WHERE", "the end of the statement")``); empty for semantic errors.
    """

    def __init__(
        self,
        message: str,
        sql: str,
        line: int,
        column: int,
        expected: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sql = sql
        self.line = line
        self.column = column
        self.expected = expected

    @classmethod
    def at(
        cls, sql: str, pos: tuple[int, int], message: str, expected: tuple[str, ...] = ()
    ) -> RuleSqlError:
        """An error located at an AST node's ``pos`` (the compiler's semantic errors)::

        raise RuleSqlError.at(sql, call.pos, f"unknown function {call.name}()")
        """
        line, column = pos
        return cls(message, sql, line, column, expected)

    @property
    def pos(self) -> tuple[int, int]:
        return (self.line, self.column)

    def snippet(self) -> str:
        """The offending line, indented by two spaces, and a caret under the column."""
        lines = self.sql.split("\n")
        if not 1 <= self.line <= len(lines):
            return ""
        text = lines[self.line - 1].rstrip("\r")
        start = 0
        prefix = suffix = ""
        if len(text) > _SNIPPET_WIDTH:
            start = max(0, self.column - 1 - _SNIPPET_CONTEXT)
            end = min(len(text), self.column - 1 + _SNIPPET_CONTEXT)
            prefix = "..." if start > 0 else ""
            suffix = "..." if end < len(text) else ""
            text = text[start:end]
        # Tabs stay tabs under the caret, so it lines up whatever the terminal's tab width.
        before = text[: max(0, self.column - 1 - start)]
        pad = "".join("\t" if ch == "\t" else " " for ch in before)
        return f"  {prefix}{text}{suffix}\n  {' ' * len(prefix)}{pad}^"

    def __str__(self) -> str:
        head = f"{self.message} at line {self.line}, column {self.column}"
        snippet = self.snippet()
        return f"{head}\n{snippet}" if snippet else head

    def __reduce__(self) -> tuple[object, ...]:
        # Exceptions pickle through ``args``; ours has more than the message.
        return (type(self), (self.message, self.sql, self.line, self.column, self.expected))


def expected_list(items: tuple[str, ...]) -> str:
    """``("FROM", "WHERE", "the end of the statement")`` -> ``FROM, WHERE or the end of the
    statement``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
