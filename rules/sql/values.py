"""AWS IoT SQL values: the Undefined marker, conversions and operator semantics (pure).

The value model maps AWS's types onto plain Python values, so a parsed JSON payload is already
a value and needs no wrapping:

=========  ======================  ===================================================
AWS type   Python                  note
=========  ======================  ===================================================
Int        ``int``                 never ``bool``; results past 34 digits become Decimal
Decimal    ``float``               a double, not AWS's 34-digit decimal
Boolean    ``bool``
String     ``str``
Array      ``list``
Object     ``dict``
Null       ``None``
Undefined  ``UNDEFINED``           a missing attribute or a failed conversion
Binary     ``bytes``               a non-JSON payload, reached only through ``*``
=========  ======================  ===================================================

The standard conversions (AWS "Data types" page), applied where a function or operator wants
another type; ``cast`` adds Boolean <-> number:

===========  ===============  ===============  ===================  =====================
from         to_decimal       to_int           to_boolean           to_string
===========  ===============  ===============  ===================  =====================
Int          float            itself           Undefined            ``"12"``
Decimal      itself           toward zero      Undefined            shortest repr, no
                                                                    ``+`` (``"1e16"``)
Boolean      Undefined        Undefined        itself               ``"true"``/``"false"``
String       if it matches    exact if whole,  ``"true"``/          itself
             ``-?D+(.D+)?``   else via         ``"false"`` (any
             ``(E-?D+)?``     Decimal          case), else Undef.
Array/Obj    Undefined        Undefined        Undefined            compact JSON
Null         Undefined        Undefined        Undefined            Undefined
Undefined    Undefined        Undefined        Undefined            Undefined
===========  ===============  ===============  ===================  =====================

(AWS's data-types page converts Null to Null for Decimal and Int, but every function table
answers Undefined for a Null argument; the function tables win here.)

Operators follow AWS's operator tables: logic wants Booleans (or "true"/"false" strings) and
is Undefined otherwise, *including* ``false AND Undefined`` and ``true OR Undefined`` (the
tables list no exception, so we add none; a WHERE that is not ``true`` fails either way,
which makes ``true OR Undefined`` the one case a user can see). Comparisons convert both
sides to numbers; ``=`` never converts (mismatched types are unequal); ``+`` concatenates
when either side is a String; Int op Int stays Int with Java's truncating ``/`` and ``%``;
a zero divisor, an overflow or a NaN result is Undefined. Every public function here is
total: odd input gives ``UNDEFINED``, never an exception.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from typing import Any, Final


class _Undefined:
    """AWS's Undefined: a missing attribute or a failed conversion; never serialised."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "Undefined"


UNDEFINED: Final[Any] = _Undefined()

# AWS: "AWS IoT attempts to parse strings matching ^-?\d+(\.\d+)?((?i)E-?\d+)?$". ASCII digits
# only (Java's \d), no leading "+", no surrounding blanks, no ".5" or "5.".
_NUMERIC_STRING: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE]-?[0-9]+)?")
_INTEGER_STRING: Final = re.compile(r"-?[0-9]{1,40}")

# AWS: "Int: a discrete Int, 34 digits maximum". Integer results past that are kept as a
# Decimal (AWS's 34-digit arithmetic rounds them the same way).
_INT_LIMIT: Final = 10**34

# Wide enough to hold any double exactly in decimal, so quantize never signals.
_WIDE: Final = decimal.Context(prec=2000, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def type_of(v: Any) -> str:
    """The AWS type name of a value: "Int", "Decimal", "Boolean", "String", "Array",
    "Object", "Null", "Undefined" or "Binary"."""
    if v is None:
        return "Null"
    if v is UNDEFINED:
        return "Undefined"
    if isinstance(v, bool):
        return "Boolean"
    if isinstance(v, int):
        return "Int"
    if isinstance(v, float):
        return "Decimal"
    if isinstance(v, str):
        return "String"
    if isinstance(v, list):
        return "Array"
    if isinstance(v, dict):
        return "Object"
    if isinstance(v, bytes):
        return "Binary"
    return "Undefined"


def is_int(v: Any) -> bool:
    """An Int (a Python ``int`` that is not a ``bool``)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """An Int or a Decimal."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- conversions ---------------------------------------------------------------------------


def _finite(x: float) -> Any:
    return x if math.isfinite(x) else UNDEFINED


def _int_result(n: int) -> Any:
    if -_INT_LIMIT < n < _INT_LIMIT:
        return n
    try:
        return _finite(float(n))
    except OverflowError:
        return UNDEFINED


def parse_number_string(s: str) -> Any:
    """A String that matches AWS's numeric pattern as a float, else UNDEFINED."""
    if len(s) > 1100 or not _NUMERIC_STRING.fullmatch(s):
        return UNDEFINED
    try:
        return _finite(float(s))
    except (OverflowError, ValueError):
        return UNDEFINED


def _parse_exact(s: str) -> Any:
    """A numeric String as an exact int when it has no fraction or exponent (AWS parses it
    as a 34-digit decimal, so ``"12345678901234567891"`` keeps every digit), else a float."""
    if _INTEGER_STRING.fullmatch(s):
        return int(s)
    return parse_number_string(s)


def float_to_int(x: float, rounding: str = decimal.ROUND_DOWN) -> Any:
    """A finite float as an int, going through its shortest decimal repr (so ``1e23`` is
    exactly 10**23, as it would be in AWS's decimal arithmetic); NaN/inf -> UNDEFINED."""
    if not math.isfinite(x):
        return UNDEFINED
    if -(2**52) < x < 2**52 and rounding == decimal.ROUND_DOWN:
        return int(x)
    return int(decimal.Decimal(repr(x)).to_integral_value(rounding=rounding, context=_WIDE))


def to_decimal(v: Any) -> Any:
    """AWS's conversion to Decimal: Int -> float, Decimal as is, a numeric String parsed;
    anything else (Boolean included) -> UNDEFINED."""
    if isinstance(v, bool):
        return UNDEFINED
    if isinstance(v, float):
        return v
    if isinstance(v, int):
        try:
            return float(v)
        except OverflowError:
            return UNDEFINED
    if isinstance(v, str):
        return parse_number_string(v)
    return UNDEFINED


def to_int(v: Any) -> Any:
    """AWS's conversion to Int: a Decimal (or numeric String) loses its fraction (toward zero,
    Java's ``RoundingMode.DOWN``, which the docs call "rounded down"); anything else
    (Boolean included) -> UNDEFINED."""
    if isinstance(v, bool):
        return UNDEFINED
    if isinstance(v, int):
        return v
    d = _parse_exact(v) if isinstance(v, str) else to_decimal(v)
    if d is UNDEFINED or isinstance(d, int):
        return d
    return float_to_int(d)


def to_boolean(v: Any) -> Any:
    """AWS's conversion to Boolean: a Boolean, or the String "true"/"false" in any case."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        lowered = v.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return UNDEFINED


def _decimal_text(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    # The shortest repr, without the exponent's "+" (1e16 -> "1e16"): AWS's numeric-string
    # pattern has no "+", and this way every Decimal's string converts back to it.
    return repr(x).replace("e+", "e")


_DROP: Final = object()
"""What ``_jsonable`` returns for a value that is left out."""


def _jsonable(v: Any, *, whole_as_int: bool, strict: bool) -> Any:
    """``v`` with Undefined (and, when ``strict``, non-finite numbers and nested bytes)
    dropped from objects and arrays; ``_DROP`` when ``v`` itself is dropped."""
    if v is UNDEFINED:
        return _DROP
    if isinstance(v, float):
        if not math.isfinite(v):
            return _DROP if strict else v
        if whole_as_int and v.is_integer() and -_INT_LIMIT < v < _INT_LIMIT:
            return float_to_int(v)
        return v
    if isinstance(v, dict):
        out: dict[str, Any] = {}
        for key, item in v.items():
            cleaned = _jsonable(item, whole_as_int=whole_as_int, strict=strict)
            if cleaned is not _DROP:
                out[str(key)] = cleaned
        return out
    if isinstance(v, list):
        items = [_jsonable(item, whole_as_int=whole_as_int, strict=strict) for item in v]
        return [item for item in items if item is not _DROP]
    if isinstance(v, bytes):
        return _DROP
    return v


def to_string(v: Any) -> Any:
    """AWS's conversion to String: Int in standard notation, Decimal as its shortest repr,
    Boolean as "true"/"false", Array/Object as compact JSON (Undefined members left out);
    Null and Undefined -> UNDEFINED. Binary is read as UTF-8 (invalid bytes replaced, as
    Java's ``new String(bytes, UTF_8)`` does)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        try:
            return str(v)
        except ValueError:  # past Python's int->str digit limit
            return UNDEFINED
    if isinstance(v, float):
        return _decimal_text(v)
    if isinstance(v, (list, dict)):
        try:
            return json.dumps(
                _jsonable(v, whole_as_int=False, strict=False),
                separators=(",", ":"),
                ensure_ascii=False,
            )
        except (ValueError, RecursionError):
            return UNDEFINED
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return UNDEFINED


def utf8(s: str) -> bytes:
    """UTF-8 bytes of a string; a lone surrogate (JSON allows ``"\\ud800"``) becomes ``?``,
    as Java's ``String.getBytes(UTF_8)`` does."""
    return s.encode("utf-8", errors="replace")


# -- logic -----------------------------------------------------------------------------------


def op_and(a: Any, b: Any) -> Any:
    """``a AND b``: Booleans or "true"/"false" strings; anything else -> UNDEFINED, so
    ``false AND Undefined`` is UNDEFINED (AWS's AND table has no exception for it)."""
    x, y = to_boolean(a), to_boolean(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return x and y


def op_or(a: Any, b: Any) -> Any:
    """``a OR b``: as AND; ``true OR Undefined`` is UNDEFINED (AWS's OR table)."""
    x, y = to_boolean(a), to_boolean(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return x or y


def op_not(a: Any) -> Any:
    """``NOT a``: a Boolean or a "true"/"false" string, else UNDEFINED."""
    x = to_boolean(a)
    if x is UNDEFINED:
        return UNDEFINED
    return not x


# -- comparison ------------------------------------------------------------------------------


def _comparable(v: Any) -> Any:
    """A number for ``<``/``>``: an Int stays exact, a numeric String is parsed."""
    if isinstance(v, bool):
        return UNDEFINED
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        return _parse_exact(v)
    return UNDEFINED


def _values_equal(a: Any, b: Any) -> bool:
    """Structural equality with AWS's ``=`` rules (no conversions; Int and Decimal compare
    numerically; object key order does not matter)."""
    ta, tb = type_of(a), type_of(b)
    if ta in ("Int", "Decimal") and tb in ("Int", "Decimal"):
        return bool(a == b)
    if ta != tb:
        return False
    if ta == "Array":
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
    if ta == "Object":
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    if ta in ("Null", "Undefined"):
        return True
    return bool(a == b)


def equal(a: Any, b: Any) -> bool:
    """``a = b`` is true (for CASE matching; Undefined never matches)."""
    return op_eq(a, b) is True


def op_eq(a: Any, b: Any) -> Any:
    """``a = b``: Undefined on either side -> UNDEFINED; mismatched types -> false;
    Null = Null -> true."""
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    try:
        return _values_equal(a, b)
    except RecursionError:
        return UNDEFINED


def op_ne(a: Any, b: Any) -> Any:
    """``a <> b``: the negation of ``=`` (mismatched types -> true, Null <> Null -> false);
    Undefined on either side -> UNDEFINED."""
    eq = op_eq(a, b)
    if eq is UNDEFINED:
        return UNDEFINED
    return not eq


def _compare(a: Any, b: Any) -> Any:
    x, y = _comparable(a), _comparable(b)
    if x is UNDEFINED or y is UNDEFINED or x != x or y != y:  # NaN compares as nothing
        return UNDEFINED
    return (x > y) - (x < y)


def op_lt(a: Any, b: Any) -> Any:
    """``a < b``: both sides as numbers (numeric strings allowed), else UNDEFINED."""
    c = _compare(a, b)
    return UNDEFINED if c is UNDEFINED else c < 0


def op_le(a: Any, b: Any) -> Any:
    """``a <= b``: both sides as numbers (numeric strings allowed), else UNDEFINED."""
    c = _compare(a, b)
    return UNDEFINED if c is UNDEFINED else c <= 0


def op_gt(a: Any, b: Any) -> Any:
    """``a > b``: both sides as numbers (numeric strings allowed), else UNDEFINED."""
    c = _compare(a, b)
    return UNDEFINED if c is UNDEFINED else c > 0


def op_ge(a: Any, b: Any) -> Any:
    """``a >= b``: both sides as numbers (numeric strings allowed), else UNDEFINED."""
    c = _compare(a, b)
    return UNDEFINED if c is UNDEFINED else c >= 0


# -- arithmetic ------------------------------------------------------------------------------


def _operands(a: Any, b: Any) -> tuple[Any, Any]:
    """Both operands as numbers for ``- * / %``: two Ints stay Ints; otherwise both become
    Decimals (numeric strings parsed); (UNDEFINED, UNDEFINED) when either cannot."""
    if is_int(a) and is_int(b):
        return a, b
    x, y = to_decimal(a), to_decimal(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED, UNDEFINED
    return x, y


def op_add(a: Any, b: Any) -> Any:
    """``a + b``: concatenation when either side is a String (the other converted with
    ``to_string``); Int + Int -> Int; Int/Decimal -> Decimal; anything else -> UNDEFINED
    (numeric strings are concatenated, not added: ``"1" + 2`` is ``"12"``)."""
    if isinstance(a, str) or isinstance(b, str):
        x, y = to_string(a), to_string(b)
        if x is UNDEFINED or y is UNDEFINED:
            return UNDEFINED
        return x + y
    if is_int(a) and is_int(b):
        return _int_result(a + b)
    if is_number(a) and is_number(b):
        return _decimal_op(float.__add__, a, b)
    return UNDEFINED


def _decimal_op(op: Any, a: Any, b: Any) -> Any:
    try:
        return _finite(op(float(a), float(b)))
    except (OverflowError, ZeroDivisionError):
        return UNDEFINED


def op_sub(a: Any, b: Any) -> Any:
    """``a - b``: Int - Int -> Int; with a Decimal or a numeric String -> Decimal."""
    x, y = _operands(a, b)
    if x is UNDEFINED:
        return UNDEFINED
    if is_int(x):
        return _int_result(x - y)
    return _decimal_op(float.__sub__, x, y)


def op_mul(a: Any, b: Any) -> Any:
    """``a * b``: Int * Int -> Int; with a Decimal or a numeric String -> Decimal."""
    x, y = _operands(a, b)
    if x is UNDEFINED:
        return UNDEFINED
    if is_int(x):
        return _int_result(x * y)
    return _decimal_op(float.__mul__, x, y)


def op_div(a: Any, b: Any) -> Any:
    """``a / b``: Int / Int -> Int truncated toward zero (Java, not Python's floor:
    ``-7 / 2`` is ``-3``); with a Decimal or a numeric String -> Decimal; a zero divisor ->
    UNDEFINED."""
    x, y = _operands(a, b)
    if x is UNDEFINED or y == 0:
        return UNDEFINED
    if is_int(x):
        q = abs(x) // abs(y)
        return _int_result(q if (x < 0) == (y < 0) else -q)
    return _decimal_op(float.__truediv__, x, y)


def op_mod(a: Any, b: Any) -> Any:
    """``a % b``: Java's remainder, with the sign of the dividend (``-7 % 3`` is ``-1``);
    Int % Int -> Int; with a Decimal or a numeric String -> Decimal; a zero divisor ->
    UNDEFINED."""
    x, y = _operands(a, b)
    if x is UNDEFINED or y == 0:
        return UNDEFINED
    if is_int(x):
        r = abs(x) % abs(y)
        return r if x >= 0 else -r
    try:
        return _finite(math.fmod(x, y))
    except ValueError:  # fmod(inf, y)
        return UNDEFINED


def op_neg(a: Any) -> Any:
    """``-a``: an Int or a Decimal negated; a numeric String becomes a negated Decimal (as
    ``0 - a`` would); anything else -> UNDEFINED."""
    if is_int(a):
        return _int_result(-a)
    x = to_decimal(a)
    if x is UNDEFINED:
        return UNDEFINED
    return _finite(-x)


# -- cast ------------------------------------------------------------------------------------

_CAST_TARGETS: Final[dict[str, str]] = {
    "string": "String",
    "nvarchar": "String",
    "text": "String",
    "ntext": "String",
    "varchar": "String",
    "int": "Int",
    "integer": "Int",
    "double": "Decimal",
}
_CAST_TARGETS_2016: Final[dict[str, str]] = {
    "decimal": "Decimal",
    "bool": "Boolean",
    "boolean": "Boolean",
}


def cast_target(type_name: str, *, allow_decimal_bool: bool = False) -> str | None:
    """The AWS type a ``cast(... AS type_name)`` produces ("String", "Int", "Decimal",
    "Boolean"), or None when the name is not a cast type in this SQL version (for the
    compiler's check)."""
    key = type_name.lower()
    if key in _CAST_TARGETS:
        return _CAST_TARGETS[key]
    if allow_decimal_bool and key in _CAST_TARGETS_2016:
        return _CAST_TARGETS_2016[key]
    return None


def cast(v: Any, type_name: str, *, allow_decimal_bool: bool = False) -> Any:
    """``cast(v AS type_name)``: the standard conversions plus Boolean <-> number
    (true -> 1, a non-zero number -> true); ``allow_decimal_bool`` admits 2016-03-23's
    ``Decimal``, ``Bool`` and ``Boolean``; an unknown type or a failed cast -> UNDEFINED."""
    target = cast_target(type_name, allow_decimal_bool=allow_decimal_bool)
    if target == "String":
        return to_string(v)
    if target == "Int":
        return int(v) if isinstance(v, bool) else to_int(v)
    if target == "Decimal":
        return float(v) if isinstance(v, bool) else to_decimal(v)
    if target == "Boolean":
        if is_number(v):
            return UNDEFINED if v != v else v != 0
        return to_boolean(v)
    return UNDEFINED


# -- results ---------------------------------------------------------------------------------


def where_passes(v: Any) -> bool:
    """A WHERE clause passes only on the Boolean true (not on "true", 1 or Undefined)."""
    return v is True


def output(v: Any, *, whole_decimals_as_int: bool) -> Any:
    """A value made JSON-ready for an action: Undefined members of objects and arrays are
    left out (recursively), as are non-finite Decimals and nested Binary; with
    ``whole_decimals_as_int`` (2016-03-23) a whole Decimal below 10**34 becomes an Int
    (``10.0`` -> ``10``). Top-level Binary (``SELECT *`` on a non-JSON payload) passes
    through; a top-level Undefined (or non-finite Decimal) is returned as UNDEFINED."""
    if isinstance(v, bytes):
        return v
    try:
        cleaned = _jsonable(v, whole_as_int=whole_decimals_as_int, strict=True)
    except RecursionError:
        return UNDEFINED
    return UNDEFINED if cleaned is _DROP else cleaned
