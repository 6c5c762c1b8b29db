"""The parser of AWS IoT SQL: tokens -> ``ast.Select`` (recursive descent over a precedence table).

Grammar (reference 2.2; keywords case-insensitive)::

    statement  := SELECT [VALUE] items [FROM source] [WHERE expr]
    items      := item (',' item)*            -- SELECT VALUE takes exactly one, without AS
    item       := '*' | expr [AS alias]
    alias      := word ('.' word)*            -- dotted: AS a.b nests the output
    source     := string                      -- top level: the topic filter, 'a/+/b'
                | expr                        -- nested SELECT: an array of the payload
    expr       := levels of PRECEDENCE, lowest first: OR, AND, NOT (prefix), comparison
                  (= <> != < <= > >=), additive (+ -), multiplicative (* / %), then
                  unary minus/plus, then postfix (.name and [index]) on a primary
    primary    := number | string | TRUE | FALSE | NULL | name | name '(' args ')'
                | cast '(' expr AS type ')' | CASE [expr] (WHEN expr THEN expr)+ [ELSE expr] END
                | '[' [expr (',' expr)*] ']' | '{' [string ':' expr (',' ...)*] '}'
                | '(' expr ')' | '(' statement ')'
    args       := [arg (',' arg)*] ; arg := '*' | expr

Choices where AWS's documentation is silent (see also lexer.py):

- Binary operators are left-associative, comparisons included (``a = b = c`` is
  ``(a = b) = c``). NOT applies to a whole comparison (``NOT a = b`` is ``NOT (a = b)``) and
  cannot stand as the operand of a comparison or arithmetic without brackets.
- ``-`` directly before a number is folded into a negative literal (``-5`` is ``Literal(-5)``,
  ``-5[0]`` stays ``-(5[0])``); ``+x`` is just ``x``.
- Keywords as names: after ``.`` and in aliases any word but FROM and WHERE is a name
  (``state.desired.value``, ``a.end``, ``AS value``). VALUE is a keyword only
  right after SELECT, and only when an expression follows it there (``SELECT VALUE -x``
  negates x); ``SELECT value FROM ...``, ``SELECT value, x``, ``SELECT value AS v`` and
  ``SELECT value * 2`` read an attribute named ``value`` (write ``SELECT (value) - 1`` for
  arithmetic on it), ``SELECT VALUE *`` is the whole payload. Elsewhere (``WHERE value >
  5``) ``value`` is always a name. The other keywords are reserved: read such keys with
  ``get(*, 'end')``.
- Object literal keys are quoted strings (AWS's example: ``{'latitude': get(lat_long, 0)}``).
- A nested SELECT needs FROM; its source is any expression (the compiler checks it).
- Nesting is bounded: at most ``MAX_NESTING`` levels of brackets/sub-expressions while parsing,
  and a tree at most ``MAX_DEPTH`` nodes deep (long ``OR`` chains count), so the parser, the
  printer and the compiled closures never exhaust Python's recursion limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NoReturn

from rules.sql import ast
from rules.sql.errors import RuleSqlError, expected_list
from rules.sql.lexer import Token, TokenKind, tokenize

MAX_NESTING = 32
"""Brackets, sub-expressions and prefix operators nested while parsing."""
MAX_DEPTH = 128
"""Depth of the resulting tree."""


@dataclass(frozen=True, slots=True)
class Level:
    """One row of the precedence table: binary operators (token value -> AST op) or, for NOT,
    a prefix operator."""

    binary: dict[str, str]
    prefix: str | None = None


LEVELS: tuple[Level, ...] = (
    Level({"OR": "OR"}),
    Level({"AND": "AND"}),
    Level({}, prefix="NOT"),
    Level({op: op for op in ("=", "<>", "<", "<=", ">", ">=")}),
    Level({"+": "+", "-": "-"}),
    Level({"*": "*", "/": "/", "%": "%"}),
)
"""Lowest first. Unary minus and then postfix (``.``, ``[]``) bind tighter than all of these."""

PRECEDENCE: dict[str, int] = {
    op: index + 1 for index, level in enumerate(LEVELS) for op in level.binary.values()
}
"""Binary AST op -> precedence (higher binds tighter); shared with the printer."""
NOT_PRECEDENCE = next(index + 1 for index, level in enumerate(LEVELS) if level.prefix == "NOT")
NEG_PRECEDENCE = len(LEVELS) + 1
POSTFIX_PRECEDENCE = NEG_PRECEDENCE + 1
ATOM_PRECEDENCE = POSTFIX_PRECEDENCE + 1

_END = "the end of the statement"


def parse(sql: str) -> ast.Select:
    """Parse one rule statement; raises RuleSqlError with the position and what was expected."""
    parser = Parser(sql)
    statement = parser._parse_statement()
    parser.check_depth(statement)
    return statement


def parse_expression(text: str) -> ast.Expr:
    """Parse a lone expression (the inside of a ``${...}`` substitution template)."""
    parser = Parser(text)
    expr = parser._parse_lone_expression()
    parser.check_depth(expr)
    return expr


def starts_expression(token: Token) -> bool:
    """Whether an expression can begin with this token."""
    if token.kind in (TokenKind.NAME, TokenKind.NUMBER, TokenKind.STRING):
        return True
    if token.kind is TokenKind.KEYWORD:
        return token.is_keyword("TRUE", "FALSE", "NULL", "CASE", "NOT", "VALUE")
    return token.is_punct("(", "[", "{", "-", "+")


def is_name(token: Token) -> bool:
    """Whether a token may be an attribute name after ``.`` or an alias part after AS: a name
    or any keyword but FROM and WHERE (``state.desired.value``, ``AS end``), which would make
    a missing name read as the next clause."""
    return token.is_word and not token.is_keyword("FROM", "WHERE")


class Parser:
    """Recursive descent over the tokens of one statement or expression."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens = tokenize(sql)
        self.i = 0
        self.nesting = 0

    # -- token helpers ----------------------------------------------------------------------

    @property
    def peek(self) -> Token:
        return self.tokens[self.i]

    def peek_at(self, ahead: int) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    @property
    def previous(self) -> Token | None:
        return self.tokens[self.i - 1] if self.i > 0 else None

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind is not TokenKind.EOF:
            self.i += 1
        return token

    def match_keyword(self, word: str) -> Token | None:
        if self.peek.is_keyword(word):
            return self.advance()
        return None

    def match_punct(self, op: str) -> Token | None:
        if self.peek.is_punct(op):
            return self.advance()
        return None

    def error(
        self, message: str, token: Token | None = None, expected: tuple[str, ...] = ()
    ) -> NoReturn:
        at = token or self.peek
        raise RuleSqlError(message, self.sql, at.line, at.column, expected)

    def expect_error(self, expected: tuple[str, ...], tail: str = "") -> NoReturn:
        """``expected FROM, WHERE or the end of the statement`` at the current token."""
        message = f"expected {expected_list(expected)}"
        self.error(f"{message} {tail}" if tail else message, expected=expected)

    def opened(self, token: Token) -> str:
        return f"to close the '{token.text}' opened at line {token.line}, column {token.column}"

    def close(self, closer: str, opener: Token, also: tuple[str, ...] = ()) -> Token:
        """Consume ``closer`` or fail naming the opener's position."""
        token = self.match_punct(closer)
        if token is None:
            self.expect_error((*also, f"'{closer}'"), self.opened(opener))
        return token

    def nest(self) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            self.error(f"the statement is nested too deeply (more than {MAX_NESTING} levels)")

    # -- statements -------------------------------------------------------------------------

    def _parse_statement(self) -> ast.Select:
        if not self.peek.is_keyword("SELECT"):
            self.expect_error(("SELECT",), "at the start of the statement")
        select = self._parse_select(nested=False)
        if self.peek.kind is not TokenKind.EOF:
            if select.where is not None:
                self.expect_error(("an operator", _END))
            self.expect_error(("WHERE", _END))
        return select

    def _parse_lone_expression(self) -> ast.Expr:
        expr = self._parse_expression()
        if self.peek.kind is not TokenKind.EOF:
            self.expect_error(("an operator", _END))
        return expr

    def _parse_select(self, *, nested: bool) -> ast.Select:
        select_token = self.advance()
        value = self.value_keyword_follows()
        if value:
            self.advance()
        items, after_item = self._parse_items(value=value)
        source: str | ast.Expr | None = None
        where: ast.Expr | None = None
        if self.match_keyword("FROM"):
            source = self._parse_expression() if nested else self._parse_topic_filter()
        elif nested or not (self.peek.is_keyword("WHERE") or self.peek.kind is TokenKind.EOF):
            follow = ("FROM",) if nested else ("FROM", "WHERE", _END)
            self.expect_error((*after_item, *follow))
        if self.match_keyword("WHERE"):
            where = self._parse_expression()
        return ast.Select(items, source, where, value, pos=select_token.pos)

    def value_keyword_follows(self) -> bool:
        """Whether the VALUE after SELECT is the keyword (SELECT VALUE expr) rather than an
        attribute named ``value``: if an expression follows (``SELECT VALUE -x`` negates x),
        but not ``value * 2`` (read as arithmetic on the attribute; ``SELECT VALUE *`` alone
        is the whole payload)."""
        if not self.peek.is_keyword("VALUE"):
            return False
        after = self.peek_at(1)
        if after.is_punct("*"):
            then = self.peek_at(2)
            return (
                then.is_keyword("FROM", "WHERE") or then.is_punct(")") or then.kind is TokenKind.EOF
            )
        if after.is_punct("+", "-"):
            return True
        return starts_expression(after)

    def _parse_items(self, *, value: bool) -> tuple[tuple[ast.SelectItem, ...], tuple[str, ...]]:
        """The SELECT list, and what else could have followed its last item (for errors)."""
        items: list[ast.SelectItem] = []
        while True:
            token = self.peek
            if token.is_punct("*"):
                self.advance()
                items.append(ast.SelectItem(ast.Star(pos=token.pos), pos=token.pos))
                after: tuple[str, ...] = ("','",)
                if self.peek.is_keyword("AS"):
                    self.error("'*' takes no alias", expected=("','", "FROM", "WHERE", _END))
            elif starts_expression(token):
                expr = self._parse_expression()
                alias = None
                if self.match_keyword("AS"):
                    if value:
                        self.error(
                            "SELECT VALUE takes no alias: its output is the bare value",
                            self.previous,
                        )
                    alias = self._parse_alias()
                    after = ("','",)
                else:
                    after = ("','", "AS")
                items.append(ast.SelectItem(expr, alias, pos=expr.pos))
            elif items:
                self.expect_error(("'*'", "an expression"), "after ','")
            else:
                self.expect_error(("'*'", "VALUE", "an expression"), "after SELECT")
            if value:
                if self.peek.is_punct(","):
                    self.error(
                        "SELECT VALUE takes exactly one expression",
                        expected=("FROM", "WHERE", _END),
                    )
                return tuple(items), ()
            if not self.match_punct(","):
                return tuple(items), after

    def _parse_alias(self) -> str:
        if not is_name(self.peek):
            self.expect_error(("a name",), "after AS")
        parts = [self.advance().text]
        while self.peek.is_punct("."):
            self.advance()
            if not is_name(self.peek):
                self.expect_error(("a name",), "after '.' in the alias")
            parts.append(self.advance().text)
        return ".".join(parts)

    def _parse_topic_filter(self) -> str:
        token = self.peek
        if token.kind is not TokenKind.STRING:
            self.error(
                "expected the topic filter as a quoted string after FROM (FROM 'a/+/b')",
                expected=("a quoted topic filter",),
            )
        self.advance()
        return str(token.value)

    # -- expressions ------------------------------------------------------------------------

    def _parse_expression(self) -> ast.Expr:
        self.nest()
        try:
            return self._parse_level(0)
        finally:
            self.nesting -= 1

    def _parse_level(self, index: int) -> ast.Expr:
        if index == len(LEVELS):
            return self._parse_unary()
        level = LEVELS[index]
        if level.prefix is not None:
            token = self.peek
            if not token.is_keyword(level.prefix):
                return self._parse_level(index + 1)
            self.advance()
            self.nest()
            try:
                operand = self._parse_level(index)
            finally:
                self.nesting -= 1
            return ast.Unary(level.prefix, operand, pos=token.pos)
        left = self._parse_level(index + 1)
        while True:
            token = self.peek
            if token.kind not in (TokenKind.PUNCT, TokenKind.KEYWORD):
                return left
            op = level.binary.get(str(token.value))
            if op is None:
                return left
            self.advance()
            right = self._parse_level(index + 1)
            left = ast.Binary(op, left, right, pos=left.pos)

    def _parse_unary(self) -> ast.Expr:
        token = self.peek
        if not token.is_punct("-", "+"):
            return self._parse_postfix()
        self.advance()
        number = self.peek
        if (
            token.value == "-"
            and number.kind is TokenKind.NUMBER
            and not self.peek_at(1).is_punct(".", "[")
        ):
            # -5 is the literal minus five, not an operation on five (the printer relies on it).
            self.advance()
            value = number.value
            # copy_negate: exact, whatever the decimal context's precision.
            negated = value.copy_negate() if isinstance(value, Decimal) else -int(value)
            return ast.Literal(negated, pos=token.pos)
        self.nest()
        try:
            operand = self._parse_unary()
        finally:
            self.nesting -= 1
        if token.value == "+":
            return operand
        return ast.Unary("-", operand, pos=token.pos)

    def _parse_postfix(self) -> ast.Expr:
        expr = self._parse_primary()
        while True:
            if self.match_punct("."):
                name = self.peek
                if not is_name(name):
                    self.expect_error(("an attribute name",), "after '.'")
                self.advance()
                expr = ast.Attribute(expr, name.text, pos=expr.pos)
            elif self.peek.is_punct("["):
                opener = self.advance()
                index = self._parse_expression()
                self.close("]", opener)
                expr = ast.Index(expr, index, pos=expr.pos)
            else:
                return expr

    def _parse_primary(self) -> ast.Expr:
        token = self.peek
        kind = token.kind
        if kind is TokenKind.NUMBER or kind is TokenKind.STRING:
            self.advance()
            return ast.Literal(token.value, pos=token.pos)
        if kind is TokenKind.NAME:
            self.advance()
            if self.peek.is_punct("("):
                if token.text.lower() == "cast":
                    return self._parse_cast(token)
                return self._parse_call(token)
            return ast.Identifier(token.text, pos=token.pos)
        if kind is TokenKind.KEYWORD:
            if token.is_keyword("TRUE", "FALSE", "NULL"):
                self.advance()
                literal = {"TRUE": True, "FALSE": False, "NULL": None}[str(token.value)]
                return ast.Literal(literal, pos=token.pos)
            if token.is_keyword("CASE"):
                return self._parse_case()
            if token.is_keyword("VALUE"):
                # VALUE is a keyword only right after SELECT; anywhere else it is a name.
                self.advance()
                return ast.Identifier(token.text, pos=token.pos)
            if token.is_keyword("NOT"):
                raise self.missing_expression(
                    "; NOT applies to a whole comparison, so write (NOT ...) here"
                )
        if kind is TokenKind.PUNCT:
            if token.is_punct("("):
                if self.peek_at(1).is_keyword("SELECT"):
                    return self._parse_subquery()
                opener = self.advance()
                expr = self._parse_expression()
                self.close(")", opener)
                return expr
            if token.is_punct("["):
                return self._parse_array()
            if token.is_punct("{"):
                return self._parse_object()
        raise self.missing_expression()

    def missing_expression(self, hint: str = "") -> RuleSqlError:
        before = self.previous
        where = f" after {before.describe()}" if before is not None else ""
        at = self.peek
        message = f"expected an expression{where}{hint}"
        return RuleSqlError(message, self.sql, at.line, at.column, ("an expression",))

    def _parse_call(self, name: Token) -> ast.Expr:
        opener = self.advance()
        args: list[ast.Expr] = []
        if not self.match_punct(")"):
            while True:
                star = self.match_punct("*")
                args.append(ast.Star(pos=star.pos) if star else self._parse_expression())
                if self.match_punct(","):
                    continue
                self.close(")", opener, also=("','",))
                break
        return ast.Call(name.text.lower(), tuple(args), pos=name.pos)

    def _parse_cast(self, name: Token) -> ast.Expr:
        opener = self.advance()
        value = self._parse_expression()
        if not self.match_keyword("AS"):
            self.expect_error(("AS",), "in cast(value AS type)")
        type_name = self.peek
        if type_name.kind is not TokenKind.NAME:
            self.expect_error(("a type name",), "after AS (String, Int, Decimal, Boolean...)")
        self.advance()
        self.close(")", opener)
        return ast.Cast(value, type_name.text, pos=name.pos)

    def _parse_case(self) -> ast.Expr:
        case = self.advance()
        subject = None
        if not self.peek.is_keyword("WHEN"):
            subject = self._parse_expression()
            if not self.peek.is_keyword("WHEN"):
                self.expect_error(("an operator", "WHEN"), "after the CASE value")
        whens: list[tuple[ast.Expr, ast.Expr]] = []
        while self.match_keyword("WHEN"):
            condition = self._parse_expression()
            if not self.match_keyword("THEN"):
                self.expect_error(("THEN",), "after the WHEN value")
            whens.append((condition, self._parse_expression()))
        default = None
        if self.match_keyword("ELSE"):
            default = self._parse_expression()
        if not self.match_keyword("END"):
            expected = ("END",) if default is not None else ("WHEN", "ELSE", "END")
            self.expect_error(
                expected,
                f"to close the CASE opened at line {case.line}, column {case.column}",
            )
        return ast.Case(subject, tuple(whens), default, pos=case.pos)

    def _parse_array(self) -> ast.Expr:
        opener = self.advance()
        items: list[ast.Expr] = []
        if not self.match_punct("]"):
            while True:
                items.append(self._parse_expression())
                if self.match_punct(","):
                    continue
                self.close("]", opener, also=("','",))
                break
        return ast.ArrayLiteral(tuple(items), pos=opener.pos)

    def _parse_object(self) -> ast.Expr:
        opener = self.advance()
        items: list[tuple[str, ast.Expr]] = []
        if not self.match_punct("}"):
            while True:
                key = self.peek
                if key.kind is TokenKind.NAME or key.kind is TokenKind.KEYWORD:
                    self.error(
                        f"object keys are quoted strings: write '{key.text}'",
                        expected=("a string key",),
                    )
                if key.kind is not TokenKind.STRING:
                    self.expect_error(("a string key",), "in the object literal")
                self.advance()
                if not self.match_punct(":"):
                    self.expect_error(("':'",), f"after the key {key.text}")
                items.append((str(key.value), self._parse_expression()))
                if self.match_punct(","):
                    continue
                self.close("}", opener, also=("','",))
                break
        return ast.ObjectLiteral(tuple(items), pos=opener.pos)

    def _parse_subquery(self) -> ast.Expr:
        opener = self.advance()
        self.nest()
        try:
            select = self._parse_select(nested=True)
        finally:
            self.nesting -= 1
        also = ("an operator", "WHERE") if select.where is None else ("an operator",)
        self.close(")", opener, also=also)
        return ast.SubQuery(select, pos=opener.pos)

    # -- limits -----------------------------------------------------------------------------

    def check_depth(self, root: ast.Node) -> None:
        """Refuse trees deeper than MAX_DEPTH (built by loops, so parsing did not notice)."""
        stack: list[tuple[ast.Node, int]] = [(root, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                line, column = node.pos
                raise RuleSqlError(
                    f"the statement is nested too deeply (more than {MAX_DEPTH} levels)",
                    self.sql,
                    line,
                    column,
                )
            stack.extend((child, depth + 1) for child in children(node))


def children(node: ast.Node) -> tuple[ast.Node, ...]:
    """The direct sub-nodes of a node, in source order."""
    if isinstance(node, ast.Select):
        source = (node.source,) if isinstance(node.source, ast.Expr) else ()
        where = (node.where,) if node.where is not None else ()
        return (*node.items, *source, *where)
    if isinstance(node, ast.SelectItem):
        return (node.expr,)
    if isinstance(node, ast.Attribute):
        return (node.target,)
    if isinstance(node, ast.Index):
        return (node.target, node.index)
    if isinstance(node, ast.Unary):
        return (node.operand,)
    if isinstance(node, ast.Binary):
        return (node.left, node.right)
    if isinstance(node, ast.Call):
        return node.args
    if isinstance(node, ast.Cast):
        return (node.value,)
    if isinstance(node, ast.Case):
        subject = (node.subject,) if node.subject is not None else ()
        default = (node.default,) if node.default is not None else ()
        return (*subject, *(part for pair in node.whens for part in pair), *default)
    if isinstance(node, ast.ArrayLiteral):
        return node.items
    if isinstance(node, ast.ObjectLiteral):
        return tuple(value for _, value in node.items)
    if isinstance(node, ast.SubQuery):
        return (node.query,)
    return ()
