"""The AST of AWS IoT SQL: small frozen dataclasses, one per construct.

Every node carries ``pos``, the (line, column) of its first token (1-based), so errors found
after parsing (an unknown function, a wrong argument count) still point at the source.
``pos`` is excluded from equality, so a parse -> print -> parse round trip compares equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

Pos = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Node:
    pos: Pos = field(default=(0, 0), compare=False, kw_only=True)


# -- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expr(Node):
    pass


@dataclass(frozen=True, slots=True)
class Literal(Expr):
    """A literal: str, int, Decimal (a number with a fraction or exponent), bool or None (null)."""

    value: str | int | Decimal | bool | None


@dataclass(frozen=True, slots=True)
class ArrayLiteral(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class ObjectLiteral(Expr):
    items: tuple[tuple[str, Expr], ...]
    """Keys are string literals, in source order."""


@dataclass(frozen=True, slots=True)
class Star(Expr):
    """``*``: the whole payload (in SELECT, and as a function argument: ``encode(*, 'base64')``)."""


@dataclass(frozen=True, slots=True)
class Identifier(Expr):
    """A bare name: a top-level attribute of the payload (or, inside a nested SELECT, of the
    current array element)."""

    name: str


@dataclass(frozen=True, slots=True)
class Attribute(Expr):
    """``target.name``."""

    target: Expr
    name: str


@dataclass(frozen=True, slots=True)
class Index(Expr):
    """``target[index]``."""

    target: Expr
    index: Expr


@dataclass(frozen=True, slots=True)
class Unary(Expr):
    """``op`` is ``"NOT"`` or ``"-"`` (``+x`` parses to ``x``)."""

    op: str
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary(Expr):
    """``op``: ``OR AND = <> != < <= > >= + - * / %`` (``!=`` is normalised to ``<>``;
    keywords upper-case)."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Call(Expr):
    """A function call; ``name`` is lower-case (AWS function names are case-insensitive)."""

    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Cast(Expr):
    """``cast(value AS Type)``; ``type_name`` as written (checked by the compiler)."""

    value: Expr
    type_name: str


@dataclass(frozen=True, slots=True)
class Case(Expr):
    """``CASE subject WHEN v THEN r ... [ELSE e] END``; ``subject`` None for the searched form
    ``CASE WHEN cond THEN r ... END``."""

    subject: Expr | None
    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr | None


@dataclass(frozen=True, slots=True)
class SubQuery(Expr):
    """``(SELECT ... FROM attribute [WHERE ...])``: a nested query over an array attribute
    (2016-03-23); its result is an array."""

    query: Select


# -- the statement -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectItem(Node):
    """One item of the SELECT list: ``*``, or an expression with an optional alias (which may be
    dotted: ``AS a.b`` nests the output)."""

    expr: Expr
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class Select(Node):
    """``SELECT [VALUE] items FROM source [WHERE where]``.

    ``source`` is the topic filter string for a top-level statement (None when FROM is omitted,
    allowed for Basic Ingest rules), or an expression for a nested SELECT.
    """

    items: tuple[SelectItem, ...]
    source: str | Expr | None
    where: Expr | None = None
    value: bool = False
    """``SELECT VALUE expr``: the output is the bare value (exactly one item, no alias)."""
