"""The AWS IoT SQL dialect: lexer -> parser -> AST -> compiled closure (STYLE.md habit 3).

``compile_rule(sql, version)`` is the entry point for rules; ``substitute`` expands the
``${...}`` templates of action parameters; ``EvalContext`` is what both evaluate against.
"""

from rules.sql.compiler import (
    CompiledRule,
    check_template,
    compile_expression,
    compile_rule,
    substitute,
)
from rules.sql.context import EvalContext
from rules.sql.errors import RuleSqlError
from rules.sql.parser import parse, parse_expression
from rules.sql.printer import to_sql
from rules.sql.values import UNDEFINED
from rules.sql.versions import DEFAULT_VERSION, VERSIONS, SqlVersion, get_version

__all__ = [
    "DEFAULT_VERSION",
    "UNDEFINED",
    "VERSIONS",
    "CompiledRule",
    "EvalContext",
    "RuleSqlError",
    "SqlVersion",
    "check_template",
    "compile_expression",
    "compile_rule",
    "get_version",
    "parse",
    "parse_expression",
    "substitute",
    "to_sql",
]
