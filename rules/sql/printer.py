"""``to_sql(node)``: the canonical text of a statement or an expression.

Canonical means: keywords upper-case, function names lower-case, one space around binary
operators and after commas, brackets only where precedence needs them (the table in parser.py),
strings in single quotes (double quotes when that avoids escaping a single quote). For every
statement ``s`` that parses, ``parse(to_sql(parse(s))) == parse(s)`` (property-tested).

A few spellings exist only so the text reads back the same (parser.py explains the rules):
``-(5)`` for minus applied to the literal five (``-5`` is the literal), ``(-5).a`` and
``(a + b)[0]`` for postfix operators on non-atoms, ``SELECT (value * 2)`` when the first item of
a plain SELECT starts with an attribute named ``value``, ``SELECT VALUE (-x)``.

Nodes that no SQL text can produce (a name that is a reserved word or not a name at all, a
non-finite Decimal) raise ValueError.
"""

from __future__ import annotations

from decimal import Decimal

from rules.sql import ast
from rules.sql.lexer import KEYWORDS
from rules.sql.parser import (
    ATOM_PRECEDENCE,
    NEG_PRECEDENCE,
    NOT_PRECEDENCE,
    POSTFIX_PRECEDENCE,
    PRECEDENCE,
)

_STRING_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def to_sql(node: ast.Node) -> str:
    """The canonical SQL text of a Select, a SelectItem or any expression."""
    if isinstance(node, ast.Select):
        return _select(node)
    if isinstance(node, ast.SelectItem):
        return _item(node, first_plain=False)
    if isinstance(node, ast.Expr):
        return _expr(node, 0)
    raise TypeError(f"not an AWS IoT SQL node: {node!r}")


def quote(text: str) -> str:
    """A string literal: single quotes, or double quotes if only single quotes occur inside;
    backslash, line breaks and tabs as backslash escapes, other control characters as \\uXXXX."""
    q = '"' if "'" in text and '"' not in text else "'"
    out = [q]
    for ch in text:
        if ch == q:
            out.append(q + q)
        elif ch in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append(q)
    return "".join(out)


def _select(select: ast.Select) -> str:
    parts = ["SELECT VALUE" if select.value else "SELECT"]
    items = [
        _item(item, first_plain=index == 0 and not select.value)
        for index, item in enumerate(select.items)
    ]
    if select.value and items and items[0].startswith("-"):
        # SELECT VALUE -x would read as the attribute "value" minus x.
        items[0] = f"({items[0]})"
    parts.append(", ".join(items))
    if isinstance(select.source, str):
        parts.append(f"FROM {quote(select.source)}")
    elif select.source is not None:
        parts.append(f"FROM {_expr(select.source, 0)}")
    if select.where is not None:
        parts.append(f"WHERE {_expr(select.where, 0)}")
    return " ".join(parts)


def _item(item: ast.SelectItem, *, first_plain: bool) -> str:
    text = _expr(item.expr, 0)
    if first_plain and _starts_with_value(item.expr) and not isinstance(item.expr, ast.Identifier):
        # SELECT value * 2 reads fine, but SELECT value[0] would be SELECT VALUE [0].
        text = f"({text})"
    if item.alias is not None:
        text = f"{text} AS {_alias(item.alias)}"
    return text


def _starts_with_value(expr: ast.Expr) -> bool:
    node = expr
    while True:
        if isinstance(node, ast.Binary):
            node = node.left
        elif isinstance(node, ast.Attribute | ast.Index):
            node = node.target
        else:
            return isinstance(node, ast.Identifier) and node.name.upper() == "VALUE"


def _alias(alias: str) -> str:
    if not all(_is_member(part) for part in alias.split(".")):
        raise ValueError(f"alias {alias!r} cannot be written in AWS IoT SQL")
    return alias


def _is_word(text: str) -> bool:
    return (
        text != ""
        and (text[0] == "_" or text[0].isascii() and text[0].isalpha())
        and all(ch == "_" or ch.isascii() and ch.isalnum() for ch in text)
    )


def _is_member(text: str) -> bool:
    """A name after ``.`` or AS: any word but FROM and WHERE (parser.is_name)."""
    return _is_word(text) and text.upper() not in ("FROM", "WHERE")


def _name(name: str, what: str) -> str:
    upper = name.upper()
    if not _is_word(name) or (upper in KEYWORDS and upper != "VALUE"):
        raise ValueError(f"{what} {name!r} cannot be written in AWS IoT SQL")
    return name


def _precedence(node: ast.Expr) -> int:
    if isinstance(node, ast.Binary):
        return PRECEDENCE[node.op]
    if isinstance(node, ast.Unary):
        return NOT_PRECEDENCE if node.op == "NOT" else NEG_PRECEDENCE
    if isinstance(node, ast.Attribute | ast.Index):
        return POSTFIX_PRECEDENCE
    return ATOM_PRECEDENCE


def _is_number(node: ast.Expr) -> bool:
    return (
        isinstance(node, ast.Literal)
        and isinstance(node.value, int | Decimal)
        and not (isinstance(node.value, bool))
    )


def _expr(node: ast.Expr, needed: int) -> str:
    """``node``'s text, bracketed if its precedence is below ``needed``."""
    text = _bare(node)
    if _precedence(node) < needed:
        return f"({text})"
    return text


def _bare(node: ast.Expr) -> str:
    if isinstance(node, ast.Literal):
        return _literal(node.value)
    if isinstance(node, ast.Identifier):
        return _name(node.name, "name")
    if isinstance(node, ast.Star):
        return "*"
    if isinstance(node, ast.Binary):
        own = PRECEDENCE[node.op]
        # Left-associative: an equal-precedence operator on the right needs brackets.
        return f"{_expr(node.left, own)} {node.op} {_expr(node.right, own + 1)}"
    if isinstance(node, ast.Unary):
        if node.op == "NOT":
            return f"NOT {_expr(node.operand, NOT_PRECEDENCE)}"
        operand = node.operand
        if _is_number(operand) or (isinstance(operand, ast.Unary) and operand.op == "-"):
            # -5 is the literal minus five and -- is not an operator: bracket them.
            return f"-({_bare(operand)})"
        return f"-{_expr(operand, NEG_PRECEDENCE)}"
    if isinstance(node, ast.Attribute):
        if not _is_member(node.name):
            raise ValueError(f"attribute {node.name!r} cannot be written in AWS IoT SQL")
        return f"{_target(node.target)}.{node.name}"
    if isinstance(node, ast.Index):
        return f"{_target(node.target)}[{_expr(node.index, 0)}]"
    if isinstance(node, ast.Call):
        if node.name.lower() == "cast":
            raise ValueError("a call named cast cannot be written in AWS IoT SQL: use ast.Cast")
        args = ", ".join(_expr(arg, 0) for arg in node.args)
        return f"{_name(node.name, 'function')}({args})"
    if isinstance(node, ast.Cast):
        return f"cast({_expr(node.value, 0)} AS {_name(node.type_name, 'type')})"
    if isinstance(node, ast.Case):
        parts = ["CASE"]
        if node.subject is not None:
            parts.append(_expr(node.subject, 0))
        for condition, result in node.whens:
            parts.append(f"WHEN {_expr(condition, 0)} THEN {_expr(result, 0)}")
        if node.default is not None:
            parts.append(f"ELSE {_expr(node.default, 0)}")
        parts.append("END")
        return " ".join(parts)
    if isinstance(node, ast.ArrayLiteral):
        return "[" + ", ".join(_expr(item, 0) for item in node.items) + "]"
    if isinstance(node, ast.ObjectLiteral):
        pairs = (f"{quote(key)}: {_expr(value, 0)}" for key, value in node.items)
        return "{" + ", ".join(pairs) + "}"
    if isinstance(node, ast.SubQuery):
        return f"({_select(node.query)})"
    raise TypeError(f"not an AWS IoT SQL expression: {node!r}")


def _target(node: ast.Expr) -> str:
    """The target of ``.name`` or ``[index]``: bracketed unless it is an atom or a postfix."""
    if _is_number(node) and _literal_is_negative(node):
        return f"({_bare(node)})"
    return _expr(node, POSTFIX_PRECEDENCE)


def _literal_is_negative(node: ast.Expr) -> bool:
    return isinstance(node, ast.Literal) and _literal(node.value).startswith("-")


def _literal(value: str | int | Decimal | bool | None) -> str:
    if value is None:
        return "NULL"
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, int):
        return str(value)
    if not value.is_finite():
        raise ValueError(f"{value} has no AWS IoT SQL literal")
    text = str(value)
    if not any(mark in text for mark in ".eE"):
        text += ".0"  # keeps it a Decimal when read back
    return text
