"""Strict AST comparison for the parser and printer tests.

``==`` on AST nodes ignores ``pos`` (as it should) but also compares literal values the Python
way, where ``True == 1 == Decimal(1)``; these helpers also require literal types to match.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from rules.sql import ast


def typed(tree: Any) -> Any:
    """A comparable image of a tree: nodes as (class, fields...), literals as (type, value)."""
    if isinstance(tree, ast.Literal):
        value = tree.value
        # Decimal('1.0') == Decimal('1.00') is fine; -0 vs 0 is the same number.
        return ("Literal", type(value).__name__, value)
    if isinstance(tree, ast.Node):
        fields = [f.name for f in dataclasses.fields(tree) if f.compare]
        return (type(tree).__name__, *(typed(getattr(tree, name)) for name in fields))
    if isinstance(tree, tuple):
        return tuple(typed(item) for item in tree)
    if isinstance(tree, Decimal | int | str | bool) or tree is None:
        return (type(tree).__name__, tree)
    raise TypeError(f"unexpected value in an AST: {tree!r}")


def assert_same(actual: Any, expected: Any) -> None:
    assert typed(actual) == typed(expected), f"\n{actual!r}\n!=\n{expected!r}"
