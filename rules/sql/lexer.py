"""The tokenizer of AWS IoT SQL: ``tokenize(sql) -> list[Token]``, ending with one EOF token.

The lexical rules, and the choices made where AWS's documentation is silent:

- **Keywords** (case-insensitive): ``SELECT VALUE FROM WHERE AS AND OR NOT CASE WHEN THEN ELSE
  END TRUE FALSE NULL``. The lexer always marks them as keywords; the parser decides where a
  keyword may also be a name (VALUE is only a keyword right after SELECT; any word may follow
  ``.`` or ``AS``: see parser.py). ``cast`` is not a keyword: it is a name the parser treats
  specially when a ``(`` follows.
- **Names**: ``[A-Za-z_][A-Za-z0-9_]*``, case kept (payload attributes are case-sensitive).
  AWS's JSON-extensions page says dot notation fails for names with hyphens or digits and
  sends those to ``get(obj, "my-key")``; names *with* digits (``item2``, ``temp1``) are
  accepted here because nothing is ambiguous about them, names *starting* with a digit are
  not. ``$`` and backtick-quoted names are not AWS IoT SQL and are refused.
- **Numbers**: digits are an Int (Python ``int``); digits with a fraction and/or an exponent
  (``1.5``, ``2e3``, ``1.5E-3``) are a Decimal (``decimal.Decimal``, exact as written). There is
  no leading-dot (``.5``) or trailing-dot (``5.``) form; ``-`` is an operator (the parser folds
  ``-`` directly before a number into a negative literal). A number running into a letter
  (``12abc``) is an error.
- **Strings**: in single or double quotes (AWS writes topic filters in single quotes and
  compares with double-quoted strings: ``WHERE a = "b"``); the two kinds are equivalent.
  A quote is written by doubling it (``'it''s'``) or with a backslash (``'it\\'s'``).
  Backslash escapes ``\\\\ \\' \\" \\n \\r \\t \\uXXXX`` are decoded (``\\uD83D\\uDE00`` pairs
  combine); a backslash before any other character is kept with it, so regular expressions
  read naturally: ``regexp_matches(s, "\\d+")`` and ``"\\\\d+"`` both give the pattern ``\\d+``
  (Java-regex style escapes such as ``\\b``, ``\\s``, ``\\.`` reach the regex functions
  untouched). Strings may span lines.
- **Operators and punctuation**: ``= <> != < <= > >= + - * / % . , ( ) [ ] { } :`` (``!=``
  becomes ``<>``). ``||``, ``&&``, ``==`` and other characters are errors with a hint.
- **Whitespace** is any Unicode space (a no-break space pasted from a web page included); only
  ``\\n`` starts a new line for positions. Columns count characters, 1-based. There are no
  comments (AWS documents none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from rules.sql.errors import RuleSqlError

KEYWORDS = frozenset(
    {
        "SELECT",
        "VALUE",
        "FROM",
        "WHERE",
        "AS",
        "AND",
        "OR",
        "NOT",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "TRUE",
        "FALSE",
        "NULL",
    }
)

PUNCTUATION = (
    # Two-character operators first: the lexer takes the longest match.
    "<>",
    "!=",
    "<=",
    ">=",
    "=",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
    ".",
    ",",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ":",
)

_HINTS = {
    "||": "'||' is not an AWS IoT SQL operator: join strings with + or concat()",
    "&&": "'&&' is not an AWS IoT SQL operator: use AND",
    "==": "'==' is not an AWS IoT SQL operator: use =",
    "!": "'!' is not an AWS IoT SQL operator: use NOT, or <> for 'not equal'",
    "`": "backtick-quoted names are not AWS IoT SQL: read such keys with get(obj, 'key')",
    "$": "names cannot contain '$': read such keys with get(obj, '$key')",
}

_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")


class TokenKind(Enum):
    KEYWORD = "keyword"
    NAME = "name"
    NUMBER = "number"
    STRING = "string"
    PUNCT = "punctuation"
    EOF = "end of input"


@dataclass(frozen=True, slots=True)
class Token:
    """One token.

    ``value`` is the meaning: a KEYWORD's upper-case word, a NAME as written, a NUMBER's ``int``
    or ``Decimal``, a STRING's decoded text, a PUNCT's operator (``!=`` as ``<>``); ``text`` is
    the source as written. ``line``/``column`` are 1-based; ``offset`` indexes ``sql``.
    """

    kind: TokenKind
    text: str
    value: str | int | Decimal
    line: int
    column: int
    offset: int

    @property
    def pos(self) -> tuple[int, int]:
        return (self.line, self.column)

    def is_keyword(self, *words: str) -> bool:
        return self.kind is TokenKind.KEYWORD and self.value in words

    def is_punct(self, *ops: str) -> bool:
        return self.kind is TokenKind.PUNCT and self.value in ops

    @property
    def is_word(self) -> bool:
        """A name or a keyword: anything that may be an attribute name after ``.``."""
        return self.kind in (TokenKind.NAME, TokenKind.KEYWORD)

    def describe(self) -> str:
        """How error messages name this token: ``WHERE``, ``'>'``, ``'temp'``, ``'a/b'``."""
        if self.kind is TokenKind.EOF:
            return "the end of the statement"
        if self.kind is TokenKind.KEYWORD:
            return str(self.value)
        if self.kind is TokenKind.STRING:
            return self.text
        return f"'{self.text}'"


def _is_name_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_name_char(ch: str) -> bool:
    return _is_name_start(ch) or ("0" <= ch <= "9")


class _Lexer:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.tokens: list[Token] = []

    def error(self, message: str, offset: int, expected: tuple[str, ...] = ()) -> RuleSqlError:
        line, column = self.position(offset)
        return RuleSqlError(message, self.sql, line, column, expected)

    def position(self, offset: int) -> tuple[int, int]:
        """(line, column) of an offset at or after the current line's start."""
        line, start = self.line, self.line_start
        # Strings may span lines: count the newlines between the line start and the offset.
        newline = self.sql.rfind("\n", start, offset)
        if newline != -1:
            line += self.sql.count("\n", start, offset)
            start = newline + 1
        return line, offset - start + 1

    def add(self, kind: TokenKind, start: int, value: str | int | Decimal) -> None:
        line, column = self.position(start)
        self.tokens.append(Token(kind, self.sql[start : self.i], value, line, column, start))

    def run(self) -> list[Token]:
        sql = self.sql
        n = len(sql)
        last_end = 0
        while True:
            # Skip whitespace, counting lines.
            while self.i < n and sql[self.i].isspace():
                if sql[self.i] == "\n":
                    self.line += 1
                    self.line_start = self.i + 1
                self.i += 1
            if self.i >= n:
                break
            start = self.i
            ch = sql[start]
            if _is_name_start(ch):
                self.name(start)
            elif "0" <= ch <= "9":
                self.number(start)
            elif ch in "'\"":
                self.string(start, ch)
            else:
                self.punct(start)
            last_end = self.i
            # A string may have spanned lines: resynchronise the line counters.
            newlines = sql.count("\n", start, self.i)
            if newlines:
                self.line += newlines
                self.line_start = sql.rfind("\n", start, self.i) + 1
        # EOF sits just after the last character of the last token, so "expected ... at the end"
        # points at the line the statement ends on, not at a trailing blank line.
        line, column = self.position_of_end(last_end)
        self.tokens.append(Token(TokenKind.EOF, "", "", line, column, last_end))
        return self.tokens

    def position_of_end(self, offset: int) -> tuple[int, int]:
        line = self.sql.count("\n", 0, offset) + 1
        start = self.sql.rfind("\n", 0, offset) + 1
        return line, offset - start + 1

    def name(self, start: int) -> None:
        sql, n = self.sql, len(self.sql)
        i = start + 1
        while i < n and _is_name_char(sql[i]):
            i += 1
        if i < n and sql[i] == "$":
            self.i = i
            raise self.error(_HINTS["$"], i)
        self.i = i
        word = sql[start:i]
        upper = word.upper()
        if upper in KEYWORDS:
            self.add(TokenKind.KEYWORD, start, upper)
        else:
            self.add(TokenKind.NAME, start, word)

    def number(self, start: int) -> None:
        match = _NUMBER.match(self.sql, start)
        # The pattern starts with [0-9]+ and the caller saw a digit: it always matches.
        end = match.end() if match else start + 1
        if end < len(self.sql) and (_is_name_char(self.sql[end]) or self.sql[end] == "$"):
            bad = end
            while bad < len(self.sql) and _is_name_char(self.sql[bad]):
                bad += 1
            raise self.error(
                f"malformed number '{self.sql[start:bad]}' (names cannot start with a digit: "
                "read such keys with get(obj, 'key'))",
                start,
            )
        self.i = end
        text = self.sql[start:end]
        fraction_or_exponent = match is not None and bool(match.group(1) or match.group(2))
        value = Decimal(text) if fraction_or_exponent else int(text)
        self.add(TokenKind.NUMBER, start, value)

    def string(self, start: int, quote: str) -> None:
        sql, n = self.sql, len(self.sql)
        i = start + 1
        parts: list[str] = []
        while True:
            if i >= n:
                raise self.error(
                    f"unterminated string: expected the closing {quote} of the string started",
                    start,
                    ("a closing quote",),
                )
            ch = sql[i]
            if ch == quote:
                if i + 1 < n and sql[i + 1] == quote:
                    parts.append(quote)
                    i += 2
                    continue
                i += 1
                break
            if ch == "\\" and i + 1 < n:
                esc = sql[i + 1]
                if esc in _ESCAPES:
                    parts.append(_ESCAPES[esc])
                    i += 2
                elif esc == "u":
                    code = self.unicode_escape(i)
                    i += 6
                    if 0xD800 <= code < 0xDC00 and sql.startswith("\\u", i):
                        low = self.unicode_escape(i)
                        if 0xDC00 <= low < 0xE000:
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                            i += 6
                    if 0xD800 <= code < 0xE000:
                        raise self.error("a \\u escape names half of a surrogate pair", i - 6)
                    parts.append(chr(code))
                else:
                    # Not an escape we know: keep the backslash (regex patterns: "\d", "\.").
                    parts.append(ch)
                    i += 1
                continue
            parts.append(ch)
            i += 1
        self.i = i
        self.add(TokenKind.STRING, start, "".join(parts))

    def unicode_escape(self, at: int) -> int:
        digits = self.sql[at + 2 : at + 6]
        if len(digits) != 4 or not set(digits) <= _HEX:
            raise self.error("a \\u escape needs four hex digits (\\u00e9)", at)
        return int(digits, 16)

    def punct(self, start: int) -> None:
        sql = self.sql
        pair = sql[start : start + 2]
        if pair in _HINTS:
            raise self.error(_HINTS[pair], start)
        for op in PUNCTUATION:
            if sql.startswith(op, start):
                self.i = start + len(op)
                self.add(TokenKind.PUNCT, start, "<>" if op == "!=" else op)
                return
        ch = sql[start]
        if ch in _HINTS:
            raise self.error(_HINTS[ch], start)
        raise self.error(f"unexpected character {ch!r}", start)


def tokenize(sql: str) -> list[Token]:
    """The tokens of ``sql``, the last one of kind EOF; raises RuleSqlError at a bad character,
    an unterminated string or a malformed number."""
    return _Lexer(sql).run()
