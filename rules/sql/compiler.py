"""AWS IoT SQL -> one Python closure per AST node (STYLE.md habit 3: no ``eval``, no regex).

``compile_rule(sql, version)`` parses a statement, checks what can be checked before any
message arrives (unknown functions, argument counts, functions and constructs the SQL version
lacks, functions thingcore cannot run), and returns a ``CompiledRule`` whose ``evaluate(ctx)``
the broker calls synchronously for every matching message. Hence the shape of the code:

- every expression compiles to ``ev(ctx, root) -> value``. ``root`` is what a bare name
  resolves against: the parsed payload at the top, the current array element inside a nested
  ``SELECT``. Functions read the message (topic, client id...) from ``ctx``.
- attribute paths (``a.b[0].c``) are resolved to a tuple of keys once, at compile time;
  constant sub-expressions (``-5``, ``60 * 60``) are folded; ``x > 50`` and ``x = 'red'`` with
  a constant right side take a fast path for the common types before falling back to the
  value model's operator, and ``topic(2)`` skips the generic call's argument conversion (same
  results, fewer calls; tests hold the fast paths to the slow ones).
- the hot path raises nothing: a missing attribute is ``UNDEFINED``, not a ``KeyError``.

Semantics (AWS IoT developer guide, "AWS IoT SQL reference"; reference 2.2):

- WHERE is evaluated first, against the payload; only a Boolean ``true`` passes
  (``values.where_passes``). SELECT aliases are not visible in WHERE.
- Output keys: the alias (a dotted alias ``AS a.b`` nests: ``{"a": {"b": v}}``); without one,
  the last attribute name of a plain path (``SELECT color`` -> ``color``, ``SELECT a.b`` ->
  ``b``); for any other expression AWS generates a name it does not document, so thingcore
  uses ``_<position>``, the 1-based position of the item in the SELECT list
  (``SELECT a, upper(b)`` -> ``{"a": ..., "_2": ...}``). Always write ``AS``.
- An item whose value is Undefined leaves its key out.
- ``SELECT *`` is the whole payload; for a payload that is not JSON it is the raw ``bytes``.
  ``SELECT *, x AS y`` adds keys to a copy of the payload object; when the payload is not a
  JSON object (binary, empty, an array), ``*`` adds nothing there and the other items still
  come out (AWS: "If you have an empty or a JSON payload, the resulting payload can have data
  added using the rule").
- ``encode(*, 'base64')`` encodes the payload's raw bytes, JSON or not (iot-sql-functions,
  encode: "You can specify * to encode the entire payload, regardless of whether it's in JSON
  format"); elsewhere ``*`` as an argument is the parsed payload (bytes when not JSON).
- ``SELECT VALUE expr``: the bare value. An Undefined value is an empty payload, ``b""``
  (iot-sql-data-types: "Undefined is converted to an empty string when serialized by itself");
  an Array under 2015-10-08 produces no message (``SqlVersion.select_value_array``).
- A nested ``(SELECT ... FROM attr [WHERE ...])`` runs over ``attr``: an Array gives the
  array of results of the elements that pass WHERE (Undefined results left out); an Object is
  queried as one element and gives its result (Undefined if WHERE fails), as in AWS's
  ``transform('enrichArray', (SELECT a, b FROM data2), ...)`` example; anything else is
  Undefined.
- ``CASE v WHEN t THEN r ... END``: the first ``t`` equal to ``v`` (``values.equal``); an
  Undefined ``v`` gives Undefined; no match and no ELSE gives Undefined. The searched form
  ``CASE WHEN cond THEN r ... END`` takes the first ``cond`` that passes like a WHERE.
- Values leave through ``values.output`` (Undefined keys dropped, whole-number Decimals as Int
  under 2016-03-23).

``evaluate`` returns None when no message is produced (WHERE did not pass, or the VALUE cannot
be sent). ``SELECT VALUE`` of a JSON ``null`` also yields None; a caller that must tell the two
apart calls ``where(ctx)`` and then ``select(ctx)``.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

from rules.sql import ast, values
from rules.sql.context import EvalContext
from rules.sql.errors import RuleSqlError
from rules.sql.functions import FUNCTIONS, Function, lookup
from rules.sql.parser import parse, parse_expression
from rules.sql.values import UNDEFINED
from rules.sql.versions import SqlVersion, get_version

Ev = Callable[[EvalContext, Any], Any]
"""A compiled expression: (message context, the object bare names resolve against) -> value."""

_NO_OUTPUT: Final = object()
"""A projection's "no message" (never leaves this module)."""

_BINARY: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "OR": values.op_or,
    "AND": values.op_and,
    "=": values.op_eq,
    "<>": values.op_ne,
    "<": values.op_lt,
    "<=": values.op_le,
    ">": values.op_gt,
    ">=": values.op_ge,
    "+": values.op_add,
    "-": values.op_sub,
    "*": values.op_mul,
    "/": values.op_div,
    "%": values.op_mod,
}
_UNARY: Final[dict[str, Callable[[Any], Any]]] = {"NOT": values.op_not, "-": values.op_neg}

# Python's own comparison gives AWS's answer when both sides are Int/Decimal (the operator
# tables convert both to Decimal and compare) or, for = and <>, both Strings.
_FAST_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_TEMPLATE_CACHE_SIZE: Final = 4096


# -- the compiled rule ---------------------------------------------------------------------


class CompiledRule:
    """A rule's SQL, checked and compiled for one SQL version."""

    __slots__ = (
        "_project",
        "_where",
        "external",
        "sql",
        "statement",
        "topic_filter",
        "version",
    )

    def __init__(
        self,
        sql: str,
        version: SqlVersion,
        statement: ast.Select,
        where: Ev | None,
        project: Ev,
        external: bool,
    ) -> None:
        self.sql = sql
        self.version = version
        self.statement = statement
        source = statement.source
        self.topic_filter: str | None = source if isinstance(source, str) else None
        """The FROM topic filter; None when FROM is omitted (Basic Ingest only)."""
        self.external = external
        """The rule calls a function that leaves the process (get_thing_shadow, aws_lambda):
        evaluate it off the dispatch path."""
        self._where = where
        self._project = project

    def evaluate(self, ctx: EvalContext) -> Any | None:
        """The rule's output for one message, JSON-ready, or None when no message is produced.

        A dict for ``SELECT items``, any value for ``SELECT VALUE``, ``bytes`` for ``SELECT *``
        on a payload that is not JSON (and ``b""`` for a VALUE that is Undefined).
        """
        root = ctx.document
        where = self._where
        # values.where_passes: only the Boolean true passes (inlined: this is the hot path).
        if where is not None and where(ctx, root) is not True:
            return None
        out = self._project(ctx, root)
        return None if out is _NO_OUTPUT else out

    def where(self, ctx: EvalContext) -> bool:
        """Whether the WHERE clause passes (True when there is none)."""
        where = self._where
        return where is None or where(ctx, ctx.document) is True

    def select(self, ctx: EvalContext) -> Any:
        """The SELECT output, ignoring WHERE (None when the output cannot be sent)."""
        out = self._project(ctx, ctx.document)
        return None if out is _NO_OUTPUT else out

    def __repr__(self) -> str:
        return f"CompiledRule({self.sql!r}, version={self.version.name!r})"


def compile_rule(sql: str, version: str | SqlVersion | None = None) -> CompiledRule:
    """Parse and compile a rule's SQL statement.

    Args:
        sql: the statement, ``SELECT ... [FROM 'topic/filter'] [WHERE ...]``.
        version: the rule's ``awsIotSqlVersion``; None is AWS's default, 2015-10-08.

    Raises:
        RuleSqlError: a syntax error, an unknown version, or something this version (or
            thingcore) cannot run, pointing at the offending token.
    """
    sql_version = get_version(version)
    statement = parse(sql)
    compiler = _Compiler(sql, sql_version)
    if statement.source is not None and not isinstance(statement.source, str):
        raise compiler.error(statement, "FROM of a statement takes a quoted topic filter")
    where, project = compiler.select(statement, top=True)
    return CompiledRule(sql, sql_version, statement, where, project, compiler.external)


def compile_expression(
    text: str, version: str | SqlVersion | None = None, *, allow_external: bool = True
) -> Callable[[EvalContext], Any]:
    """Compile one SQL expression (the inside of a ``${...}`` substitution template).

    The result evaluates against the original message: bare names are payload attributes,
    SELECT aliases do not exist here. It returns the raw SQL value (possibly ``UNDEFINED``).

    Args:
        text: the expression, e.g. ``topic(2)`` or ``get(*, 'device-id')``.
        version: the rule's SQL version (None: 2015-10-08).
        allow_external: False refuses functions that leave the process (an errorAction's
            templates may not call get_thing_shadow, aws_lambda...).

    Raises:
        RuleSqlError: as ``compile_rule``; positions are within ``text``.
    """
    sql_version = get_version(version)
    expr = parse_expression(text)
    compiler = _Compiler(text, sql_version)
    ev = compiler.expr(expr)
    if compiler.external and not allow_external:
        name, pos = compiler.first_external
        raise RuleSqlError.at(
            text,
            pos,
            f"{name}() calls out of the process and cannot be used here "
            "(errorAction templates allow no external functions)",
        )

    def evaluate(ctx: EvalContext) -> Any:
        return ev(ctx, ctx.document)

    return evaluate


def substitute(
    template: str,
    ctx: EvalContext,
    version: str | SqlVersion | None = None,
    *,
    allow_external: bool = True,
) -> str:
    """Expand the ``${expression}`` templates of an action parameter for one message.

    Each expression is evaluated against the original message and converted to its string
    form (strings as they are, objects and arrays as compact JSON, Undefined and Null as "").
    ``$$`` is not special here: the republish action turns ``$$`` into ``$`` itself. Compiled
    templates are cached (bounded LRU).

    Raises:
        RuleSqlError: a template does not compile (an unterminated ``${``, a syntax error),
            pointing into ``template``.
    """
    if "${" not in template:
        return template
    sql_version = get_version(version)
    parts = _compile_template(template, sql_version.name, allow_external)
    whole = sql_version.whole_decimals_as_int
    pieces: list[str] = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(part)
        else:
            pieces.append(_template_text(part(ctx), whole))
    return "".join(pieces)


def check_template(
    template: str, version: str | SqlVersion | None = None, *, allow_external: bool = True
) -> None:
    """Compile an action parameter's templates without a message (rule creation): raises
    the ``RuleSqlError`` that ``substitute`` would raise later."""
    if "${" in template:
        _compile_template(template, get_version(version).name, allow_external)


# -- the compiler ----------------------------------------------------------------------------


class _Compiler:
    """Compiles the nodes of one statement (or template expression) for one version."""

    def __init__(self, sql: str, version: SqlVersion) -> None:
        self.sql = sql
        self.version = version
        self.external = False
        self.first_external: tuple[str, ast.Pos] = ("", (0, 0))
        self.depth = 0
        """0 at the top of the statement, +1 inside each nested SELECT."""

    def error(self, node: ast.Node, message: str) -> RuleSqlError:
        return RuleSqlError.at(self.sql, node.pos, message)

    def needs_2016(self, node: ast.Node, what: str) -> RuleSqlError:
        return self.error(
            node,
            f"{what} needs awsIotSqlVersion 2016-03-23 (this rule uses {self.version.name})",
        )

    # -- statements --------------------------------------------------------------------------

    def select(self, node: ast.Select, *, top: bool) -> tuple[Ev | None, Ev]:
        """(WHERE, projection) of a statement or a nested SELECT."""
        where = self.expr(node.where) if node.where is not None else None
        if node.value:
            if len(node.items) != 1 or node.items[0].alias is not None:
                raise self.error(node, "SELECT VALUE takes exactly one expression and no AS")
            return where, self._value(node.items[0].expr, top=top)
        if not node.items:
            raise self.error(node, "SELECT needs at least one item")
        return where, self._items(node.items, top=top)

    def _value(self, expr: ast.Expr, *, top: bool) -> Ev:
        if isinstance(expr, ast.Star):
            return self._star_only(top=top)
        fn = self.expr(expr)
        if not top:
            return fn
        output = values.output
        whole = self.version.whole_decimals_as_int
        arrays = self.version.select_value_array

        def value(ctx: EvalContext, root: Any) -> Any:
            v = fn(ctx, root)
            if v is UNDEFINED:
                return b""
            if not arrays and type(v) is list:
                return _NO_OUTPUT
            v = output(v, whole_decimals_as_int=whole)
            return b"" if v is UNDEFINED else v

        return value

    def _star_only(self, *, top: bool) -> Ev:
        if not top:
            return _root
        output = values.output
        whole = self.version.whole_decimals_as_int

        def star(ctx: EvalContext, root: Any) -> Any:
            if root is UNDEFINED:
                return ctx.payload
            v = output(root, whole_decimals_as_int=whole)  # a copy: ctx.document is shared
            return _NO_OUTPUT if v is UNDEFINED else v

        return star

    def _items(self, items: Sequence[ast.SelectItem], *, top: bool) -> Ev:
        if len(items) == 1 and isinstance(items[0].expr, ast.Star) and items[0].alias is None:
            return self._star_only(top=top)
        # (output key path, expression); a None path is ``*``.
        steps: list[tuple[tuple[str, ...] | None, Ev]] = []
        for position, item in enumerate(items, start=1):
            if isinstance(item.expr, ast.Star) and item.alias is None:
                steps.append((None, _root))
                continue
            steps.append((self._key_path(item, position), self.expr(item.expr)))
        flat = all(path is not None and len(path) == 1 for path, _ in steps)
        output = values.output if top else None
        whole = self.version.whole_decimals_as_int

        if flat:
            pairs = tuple((path[0], fn) for path, fn in steps if path is not None)

            def project_flat(ctx: EvalContext, root: Any) -> Any:
                out: dict[str, Any] = {}
                for key, fn in pairs:
                    v = fn(ctx, root)
                    if v is UNDEFINED:
                        continue
                    t = type(v)
                    if output is None or t is str or t is int or t is bool or v is None:
                        out[key] = v
                        continue
                    # values.output: Undefined members dropped, 10.0 -> 10 under 2016-03-23;
                    # a non-finite Decimal comes back Undefined and leaves the key out.
                    v = output(v, whole_decimals_as_int=whole)
                    if v is not UNDEFINED:
                        out[key] = v
                return out

            return project_flat

        plan = tuple(steps)

        def project(ctx: EvalContext, root: Any) -> Any:
            out: dict[str, Any] = {}
            for path, fn in plan:
                v = fn(ctx, root)
                if path is None:
                    # ``*`` among other items: the payload's keys, when it is an object.
                    if type(v) is dict:
                        merged = v if output is None else output(v, whole_decimals_as_int=whole)
                        out.update(merged)
                    continue
                if output is not None:
                    v = output(v, whole_decimals_as_int=whole)
                if v is UNDEFINED:
                    continue
                _put(out, path, v)
            return out

        return project

    @staticmethod
    def _key_path(item: ast.SelectItem, position: int) -> tuple[str, ...]:
        if item.alias is not None:
            return tuple(item.alias.split("."))
        expr = item.expr
        if isinstance(expr, ast.Identifier):
            return (expr.name,)
        if isinstance(expr, ast.Attribute):
            return (expr.name,)
        return (f"_{position}",)

    # -- expressions -------------------------------------------------------------------------

    def expr(self, node: ast.Expr) -> Ev:
        const = self._constant(node)
        if const is not _NOT_CONSTANT:
            return _const(const)
        if isinstance(node, ast.Identifier | ast.Attribute | ast.Index):
            return self._path(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Binary):
            return self._binary(node)
        if isinstance(node, ast.Unary):
            return self._unary(node)
        if isinstance(node, ast.Case):
            return self._case(node)
        if isinstance(node, ast.Cast):
            return self._cast(node)
        if isinstance(node, ast.SubQuery):
            return self._subquery(node)
        if isinstance(node, ast.ArrayLiteral):
            return self._array(node)
        if isinstance(node, ast.ObjectLiteral):
            return self._object(node)
        if isinstance(node, ast.Star):
            return self._star_value()
        raise self.error(node, f"cannot compile {type(node).__name__}")  # a parser bug

    def _constant(self, node: ast.Expr) -> Any:
        """The value of a sub-expression that cannot depend on the message, else a marker.

        Scalars only: a folded list or dict would be one object shared by every output.
        """
        if isinstance(node, ast.Literal):
            value = node.value
            return float(value) if isinstance(value, Decimal) else value
        if isinstance(node, ast.Unary):
            operand = self._constant(node.operand)
            if operand is _NOT_CONSTANT:
                return _NOT_CONSTANT
            return _UNARY[node.op](operand)
        if isinstance(node, ast.Binary):
            left = self._constant(node.left)
            if left is _NOT_CONSTANT:
                return _NOT_CONSTANT
            right = self._constant(node.right)
            if right is _NOT_CONSTANT:
                return _NOT_CONSTANT
            result = _BINARY[node.op](left, right)
            return result if _is_scalar(result) else _NOT_CONSTANT
        return _NOT_CONSTANT

    def _path(self, node: ast.Identifier | ast.Attribute | ast.Index) -> Ev:
        """``a.b[0].c``: the longest run of names and constant indexes becomes one tuple of
        keys walked in a loop; whatever is below it (a call, a dynamic index) is compiled
        on its own and the walk starts from its value."""
        keys: list[str | int] = []
        current: ast.Expr = node
        while True:
            if isinstance(current, ast.Attribute):
                keys.append(current.name)
                current = current.target
            elif isinstance(current, ast.Index):
                index = self._constant(current.index)
                if index is _NOT_CONSTANT:
                    break
                keys.append(index if type(index) is int else _BAD_INDEX)
                current = current.target
            elif isinstance(current, ast.Identifier):
                keys.append(current.name)
                keys.reverse()
                return _walk(None, tuple(keys))
            else:
                break
        keys.reverse()
        if isinstance(current, ast.Index):
            base = self._dynamic_index(current)
        else:
            base = self.expr(current)
        return _walk(base, tuple(keys)) if keys else base

    def _dynamic_index(self, node: ast.Index) -> Ev:
        target = self.expr(node.target)
        index = self.expr(node.index)

        def item(ctx: EvalContext, root: Any) -> Any:
            seq = target(ctx, root)
            i = index(ctx, root)
            if type(seq) is list and type(i) is int and 0 <= i < len(seq):
                return seq[i]
            return UNDEFINED

        return item

    def _star_value(self) -> Ev:
        """``*`` as an operand: the current element in a nested SELECT; at the top, the parsed
        payload, or its bytes when it is not JSON."""
        if self.depth:
            return _root

        def star(ctx: EvalContext, root: Any) -> Any:
            return ctx.payload if root is UNDEFINED else root

        return star

    def _call(self, node: ast.Call) -> Ev:
        fn = self._function(node)
        if fn.name == "sql_version":
            return _const(self.version.name)  # the rule's version is known now
        if fn.name == "topic" and len(node.args) == 1:
            level = self._constant(node.args[0])
            if type(level) is int:
                return _topic_level(level)
        if fn.external and not self.external:
            self.external = True
            self.first_external = (node.name, node.pos)
        impl = fn.impl
        args = tuple(self._argument(fn, a) for a in node.args)
        n = len(args)
        if n == 0:
            return lambda ctx, root: impl(ctx)
        if n == 1:
            (a0,) = args
            return lambda ctx, root: impl(ctx, a0(ctx, root))
        if n == 2:
            a0, a1 = args
            return lambda ctx, root: impl(ctx, a0(ctx, root), a1(ctx, root))
        if n == 3:
            a0, a1, a2 = args
            return lambda ctx, root: impl(ctx, a0(ctx, root), a1(ctx, root), a2(ctx, root))
        return lambda ctx, root: impl(ctx, *[a(ctx, root) for a in args])

    def _function(self, node: ast.Call) -> Function:
        """The function a call names, checked against this version and the argument count."""
        fn = lookup(node.name)
        if fn is None:
            close = difflib.get_close_matches(node.name.lower(), FUNCTIONS, n=1)
            hint = f"; did you mean {close[0]}()?" if close else ""
            raise self.error(node, f"unknown function {node.name}(){hint}")
        if fn.unsupported is not None:
            # The table's text names the function and says what to do instead.
            raise self.error(node, fn.unsupported)
        if self.version.name not in fn.versions:
            raise self.needs_2016(node, f"{fn.name}()")
        count = len(node.args)
        low, high = fn.min_args, fn.max_args
        if count < low or (high is not None and count > high):
            if high is None:
                wanted = f"at least {low} argument{'s' if low != 1 else ''}"
            elif low == high:
                wanted = f"{low} argument{'s' if low != 1 else ''}"
            else:
                wanted = f"{low} to {high} arguments"
            raise self.error(node, f"{fn.name}() takes {wanted}, got {count}")
        return fn

    def _argument(self, fn: Function, node: ast.Expr) -> Ev:
        if isinstance(node, ast.Star) and fn.name == "encode" and not self.depth:
            return _payload_bytes
        return self.expr(node)

    def _binary(self, node: ast.Binary) -> Ev:
        op = _BINARY[node.op]
        left = self.expr(node.left)
        right_const = self._constant(node.right)
        if right_const is not _NOT_CONSTANT:
            return _binary_const(node.op, op, left, right_const)
        right = self.expr(node.right)
        return lambda ctx, root: op(left(ctx, root), right(ctx, root))

    def _unary(self, node: ast.Unary) -> Ev:
        op = _UNARY[node.op]
        operand = self.expr(node.operand)
        return lambda ctx, root: op(operand(ctx, root))

    def _case(self, node: ast.Case) -> Ev:
        if not node.whens:
            raise self.error(node, "CASE needs at least one WHEN")
        whens = tuple((self.expr(t), self.expr(r)) for t, r in node.whens)
        default = self.expr(node.default) if node.default is not None else _undefined
        if node.subject is None:

            def searched(ctx: EvalContext, root: Any) -> Any:
                for cond, result in whens:
                    if cond(ctx, root) is True:
                        return result(ctx, root)
                return default(ctx, root)

            return searched
        subject = self.expr(node.subject)
        equal = values.equal

        def simple(ctx: EvalContext, root: Any) -> Any:
            v = subject(ctx, root)
            if v is UNDEFINED:
                return UNDEFINED
            for test, result in whens:
                if equal(v, test(ctx, root)):
                    return result(ctx, root)
            return default(ctx, root)

        return simple

    def _cast(self, node: ast.Cast) -> Ev:
        type_name = node.type_name
        allow = self.version.cast_decimal_bool
        if values.cast_target(type_name, allow_decimal_bool=allow) is None:
            if values.cast_target(type_name, allow_decimal_bool=True) is not None:
                raise self.needs_2016(node, f"cast to {type_name}")
            known = "String, Nvarchar, Text, Ntext, varchar, Int, Integer, Double"
            if allow:
                known += ", Decimal, Bool, Boolean"
            raise self.error(node, f"cast to unknown type {type_name!r}: use one of {known}")
        value = self.expr(node.value)
        cast = values.cast
        return lambda ctx, root: cast(value(ctx, root), type_name, allow_decimal_bool=allow)

    def _subquery(self, node: ast.SubQuery) -> Ev:
        if not self.version.nested_select:
            raise self.needs_2016(node, "a nested SELECT")
        query = node.query
        if not isinstance(query.source, ast.Expr):
            raise self.error(query, "a nested SELECT reads FROM an attribute, not a topic")
        source = self.expr(query.source)
        self.depth += 1
        try:
            where, project = self.select(query, top=False)
        finally:
            self.depth -= 1

        def nested(ctx: EvalContext, root: Any) -> Any:
            src = source(ctx, root)
            if type(src) is list:
                out = []
                for element in src:
                    if where is not None and where(ctx, element) is not True:
                        continue
                    v = project(ctx, element)
                    if v is not UNDEFINED:
                        out.append(v)
                return out
            if type(src) is dict:
                if where is not None and where(ctx, src) is not True:
                    return UNDEFINED
                return project(ctx, src)
            return UNDEFINED

        return nested

    def _array(self, node: ast.ArrayLiteral) -> Ev:
        if not self.version.literals:
            raise self.needs_2016(node, "an array literal")
        items = tuple(self.expr(i) for i in node.items)
        return lambda ctx, root: [item(ctx, root) for item in items]

    def _object(self, node: ast.ObjectLiteral) -> Ev:
        if not self.version.literals:
            raise self.needs_2016(node, "an object literal")
        items = tuple((key, self.expr(v)) for key, v in node.items)

        def obj(ctx: EvalContext, root: Any) -> Any:
            out: dict[str, Any] = {}
            for key, fn in items:
                v = fn(ctx, root)
                if v is not UNDEFINED:
                    out[key] = v
            return out

        return obj


# -- building blocks -------------------------------------------------------------------------

_NOT_CONSTANT: Final = object()
_BAD_INDEX: Final = -1
"""A constant index that is not an Int (``a['x']``, ``a[1.5]``): never matches."""


def _is_scalar(value: Any) -> bool:
    return value is None or type(value) in (str, int, float, bool)


def _const(value: Any) -> Ev:
    return lambda ctx, root: value


def _root(ctx: EvalContext, root: Any) -> Any:
    return root


def _undefined(ctx: EvalContext, root: Any) -> Any:
    return UNDEFINED


def _payload_bytes(ctx: EvalContext, root: Any) -> Any:
    return ctx.payload


def _topic_level(n: int) -> Ev:
    """``topic(2)``: the common call with a constant level, without the generic call's
    argument conversion (same result as ``functions``' topic: 1-based, else Undefined)."""

    def topic_level(ctx: EvalContext, root: Any) -> Any:
        levels = ctx.topic.split("/")
        return levels[n - 1] if 0 < n <= len(levels) else UNDEFINED

    return topic_level


def _walk(base: Ev | None, keys: tuple[str | int, ...]) -> Ev:
    """Follow ``keys`` (str: object member, int: array element) from ``base``'s value, or from
    the root when ``base`` is None. Any miss is Undefined."""
    if base is None and all(type(k) is str for k in keys):
        if len(keys) == 1:
            (k0,) = keys

            def get1(ctx: EvalContext, root: Any) -> Any:
                return root.get(k0, UNDEFINED) if type(root) is dict else UNDEFINED

            return get1
        if len(keys) == 2:
            k0, k1 = keys

            def get2(ctx: EvalContext, root: Any) -> Any:
                if type(root) is not dict:
                    return UNDEFINED
                v = root.get(k0, UNDEFINED)
                return v.get(k1, UNDEFINED) if type(v) is dict else UNDEFINED

            return get2

    def walk(ctx: EvalContext, root: Any) -> Any:
        v = root if base is None else base(ctx, root)
        for k in keys:
            if isinstance(k, str):
                if type(v) is not dict:
                    return UNDEFINED
                v = v.get(k, UNDEFINED)
            else:
                if type(v) is not list or not 0 <= k < len(v):
                    return UNDEFINED
                v = v[k]
        return v

    return walk


def _binary_const(symbol: str, op: Callable[[Any, Any], Any], left: Ev, const: Any) -> Ev:
    """``left <op> constant``: the common WHERE shape (``temp > 50``, ``color = 'red'``)."""
    numeric = type(const) is int or type(const) is float
    fast = _FAST_ORDER.get(symbol)
    if fast is not None and numeric:

        def order(ctx: EvalContext, root: Any) -> Any:
            v = left(ctx, root)
            t = type(v)
            if t is int or (t is float and v == v):  # NaN compares as nothing: op's job
                return fast(v, const)
            return op(v, const)

        return order
    if symbol in ("=", "<>") and (numeric or type(const) is str):
        kinds: tuple[type, ...] = (int, float) if numeric else (str,)
        negate = symbol == "<>"

        def equality(ctx: EvalContext, root: Any) -> Any:
            v = left(ctx, root)
            if type(v) in kinds:
                return (v != const) if negate else (v == const)
            return op(v, const)

        return equality
    return lambda ctx, root: op(left(ctx, root), const)


def _put(out: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """``out[a][b]... = value`` for a dotted alias, creating (or replacing non-object)
    intermediate objects."""
    target = out
    for key in path[:-1]:
        inner = target.get(key)
        if type(inner) is not dict:
            inner = {}
            target[key] = inner
        target = inner
    target[path[-1]] = value


# -- templates -------------------------------------------------------------------------------


@lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def _compile_template(
    template: str, version: str, allow_external: bool = True
) -> tuple[str | Callable[[EvalContext], Any], ...]:
    parts: list[str | Callable[[EvalContext], Any]] = []
    for literal, expression, offset in _split_template(template):
        if literal:
            parts.append(literal)
        if expression is None:
            continue
        try:
            parts.append(compile_expression(expression, version, allow_external=allow_external))
        except RuleSqlError as exc:
            # Point into the template the user wrote, not into the bare expression.
            line, column = _line_column(template, offset)
            if exc.line == 1:
                column += exc.column - 1
            else:
                line, column = line + exc.line - 1, exc.column
            raise RuleSqlError.at(template, (line, column), exc.message, exc.expected) from None
    return tuple(parts)


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _split_template(template: str) -> list[tuple[str, str | None, int]]:
    """``"a/${topic(2)}/b"`` -> ``[("a/", "topic(2)", 4), ("/b", None, 14)]``: literal text,
    the expression after it, and the expression's offset in the template.

    The closing brace is found by scanning the expression: braces inside quoted strings and
    object literals (``${get({'a': 1}, 'a')}``) do not end it.
    """
    parts: list[tuple[str, str | None, int]] = []
    start = 0
    n = len(template)
    while True:
        opening = template.find("${", start)
        if opening < 0:
            parts.append((template[start:], None, n))
            return parts
        i = opening + 2
        depth = 1
        quote = ""
        while i < n:
            c = template[i]
            if quote:
                if c == "\\":
                    i += 1
                elif c == quote:
                    quote = ""
            elif c in "'\"":
                quote = c
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        if depth:
            raise RuleSqlError.at(
                template, _line_column(template, opening), "unterminated ${ in the template"
            )
        parts.append((template[start:opening], template[opening + 2 : i], opening + 2))
        start = i + 1


def _template_text(value: Any, whole_decimals_as_int: bool) -> str:
    if value is UNDEFINED or value is None:
        return ""
    if type(value) is str:
        return value
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    text = values.to_string(values.output(value, whole_decimals_as_int=whole_decimals_as_int))
    return text if type(text) is str else ""
