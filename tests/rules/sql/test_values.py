"""rules.sql.values: AWS IoT SQL types, conversions and operators, against AWS's tables."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.sql import values as v
from rules.sql.values import UNDEFINED

U = UNDEFINED

# One value of each kind that behaves differently somewhere.
SAMPLES: dict[str, Any] = {
    "Int": 7,
    "Decimal": 2.5,
    "NumStr": "3",
    "Str": "abc",
    "True": True,
    "False": False,
    "Null": None,
    "Undefined": U,
    "Array": [1, "a"],
    "Object": {"a": 1},
}


def same(actual: Any, expected: Any) -> bool:
    """Equal and of the same AWS type (1 and 1.0 and True are three different answers)."""
    if v.type_of(actual) != v.type_of(expected):
        return False
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(actual)
    return bool(actual == expected)


# -- types and conversions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (1, "Int"),
        (-(10**40), "Int"),
        (1.0, "Decimal"),
        (True, "Boolean"),
        (False, "Boolean"),
        ("", "String"),
        ([], "Array"),
        ({}, "Object"),
        (None, "Null"),
        (U, "Undefined"),
        (b"\x00", "Binary"),
        (object(), "Undefined"),
    ],
)
def test_type_of(value: Any, name: str) -> None:
    assert v.type_of(value) == name


def test_undefined_is_a_falsy_singleton() -> None:
    assert v._Undefined() is UNDEFINED
    assert not UNDEFINED
    assert repr(UNDEFINED) == "Undefined"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5.0),
        (2.5, 2.5),
        (True, U),
        (False, U),
        # AWS's pattern: -?\d+(\.\d+)?((?i)E-?\d+)?
        ("0", 0.0),
        ("-1.2", -1.2),
        ("5E-12", 5e-12),
        ("5e3", 5000.0),
        ("007", 7.0),
        ("+1", U),
        (" 1", U),
        ("1 ", U),
        (".5", U),
        ("5.", U),
        ("1e+5", U),
        ("1e400", U),  # beyond a double (AWS's Decimal would hold it)
        ("NaN", U),
        ("Infinity", U),
        ("\u0663", U),  # an Arabic-Indic digit: Java's \d is ASCII
        ("", U),
        ("abc", U),
        ([1], U),
        ({"a": 1}, U),
        (None, U),
        (U, U),
        (10**400, U),
    ],
)
def test_to_decimal(value: Any, expected: Any) -> None:
    assert same(v.to_decimal(value), expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        (2.7, 2),
        (-2.7, -2),  # toward zero (Java's RoundingMode.DOWN, "rounded down")
        (1e23, 10**23),  # through the shortest repr, not the binary expansion
        (float("nan"), U),
        (float("inf"), U),
        ("12", 12),
        ("-1.9", -1),
        ("5E-12", 0),
        ("12345678901234567891", 12345678901234567891),  # exact, as AWS's decimal is
        ("1.5e3", 1500),
        ("x", U),
        ("-", U),
        (True, U),
        (None, U),
        ([1], U),
        (U, U),
    ],
)
def test_to_int(value: Any, expected: Any) -> None:
    assert same(v.to_int(value), expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("TRUE", True),
        ("False", False),
        ("yes", U),
        ("1", U),
        (1, U),  # only cast() turns numbers into Booleans
        (0.0, U),
        (None, U),
        ([], U),
        (U, U),
    ],
)
def test_to_boolean(value: Any, expected: Any) -> None:
    assert same(v.to_boolean(value), expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, "12"),
        (-(10**30), "-" + "1" + "0" * 30),
        (2.5, "2.5"),
        (10.0, "10.0"),
        (1e16, "1e16"),
        (1e-5, "1e-05"),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
        (True, "true"),
        (False, "false"),
        ("x", "x"),
        ([1, "a", None, True, 2.5], '[1,"a",null,true,2.5]'),
        ({"a": [1, {"b": "é"}]}, '{"a":[1,{"b":"é"}]}'),
        ({"a": U, "b": [U, 1]}, '{"b":[1]}'),  # Undefined members are never serialised
        (None, U),
        (U, U),
        (b"caf\xc3\xa9", "café"),
        (b"\xff", "\ufffd"),
    ],
)
def test_to_string(value: Any, expected: Any) -> None:
    assert same(v.to_string(value), expected)


def test_to_string_of_a_huge_int_is_undefined() -> None:
    assert v.to_string(10**5000) is U  # past Python's int-to-str digit limit


def test_utf8_replaces_lone_surrogates() -> None:
    assert v.utf8("a\ud800") == b"a?"
    assert v.utf8("€") == b"\xe2\x82\xac"


# -- logic -------------------------------------------------------------------------------------

T, F = True, False
LOGIC_OPERANDS = [True, False, "true", "FALSE", "yes", 1, 0, None, U, [], {}]


def _as_bool(x: Any) -> Any:
    if isinstance(x, bool):
        return x
    return {"true": True, "FALSE": False}.get(x, U) if isinstance(x, str) else U


@pytest.mark.parametrize("a", LOGIC_OPERANDS, ids=repr)
@pytest.mark.parametrize("b", LOGIC_OPERANDS, ids=repr)
def test_and_or_table(a: Any, b: Any) -> None:
    # AWS's AND/OR tables: Booleans or "true"/"false" strings; any other operand, Undefined
    # included, makes the result Undefined -- even false AND Undefined.
    x, y = _as_bool(a), _as_bool(b)
    if x is U or y is U:
        assert v.op_and(a, b) is U
        assert v.op_or(a, b) is U
    else:
        assert v.op_and(a, b) is (x and y)
        assert v.op_or(a, b) is (x or y)


@pytest.mark.parametrize(
    ("a", "expected"),
    [(T, F), (F, T), ("true", F), ("False", T), ("x", U), (1, U), (None, U), (U, U), ([], U)],
)
def test_not(a: Any, expected: Any) -> None:
    assert same(v.op_not(a), expected)


def test_false_and_undefined_is_undefined_and_true_or_undefined_too() -> None:
    assert v.op_and(False, U) is U
    assert v.op_and(U, False) is U
    assert v.op_or(True, U) is U
    assert v.op_or(U, True) is U


# -- comparison --------------------------------------------------------------------------------

NUMERIC = {"Int": 7, "Decimal": 2.5, "NumStr": "3"}


@pytest.mark.parametrize("left", SAMPLES, ids=str)
@pytest.mark.parametrize("right", SAMPLES, ids=str)
def test_ordering_matrix(left: str, right: str) -> None:
    # >, >=, <, <=: both operands converted to Decimal; anything else is Undefined.
    a, b = SAMPLES[left], SAMPLES[right]
    ops = (v.op_lt, v.op_le, v.op_gt, v.op_ge)
    if left in NUMERIC and right in NUMERIC:
        x, y = float(a), float(b)
        assert [op(a, b) for op in ops] == [x < y, x <= y, x > y, x >= y]
    else:
        assert [op(a, b) for op in ops] == [U, U, U, U]


@pytest.mark.parametrize(
    ("a", "b", "lt"),
    [
        (1, 2, True),
        (2, 1.5, False),
        ("10", 9, False),  # numeric, not lexicographic
        ("-1.5", "-1", True),
        (12345678901234567891, "12345678901234567890", False),  # exact for integers
        (10**400, 1e308, False),
        ("a", "b", U),  # strings are not ordered
        (float("nan"), 1, U),
    ],
)
def test_ordering_cases(a: Any, b: Any, lt: Any) -> None:
    assert same(v.op_lt(a, b), lt)


def _eq_expected(left: str, right: str) -> Any:
    if "Undefined" in (left, right):
        return U
    numeric = {"Int", "Decimal"}
    if left in numeric and right in numeric:
        return SAMPLES[left] == SAMPLES[right]
    kinds = {"NumStr": "Str", "True": "Bool", "False": "Bool"}
    if kinds.get(left, left) != kinds.get(right, right):
        return False  # mismatched types: no conversion ("3" = 3 is false)
    return SAMPLES[left] == SAMPLES[right]


@pytest.mark.parametrize("left", SAMPLES, ids=str)
@pytest.mark.parametrize("right", SAMPLES, ids=str)
def test_equality_matrix(left: str, right: str) -> None:
    a, b = SAMPLES[left], SAMPLES[right]
    expected = _eq_expected(left, right)
    assert same(v.op_eq(a, b), expected)
    assert same(v.op_ne(a, b), U if expected is U else not expected)


@pytest.mark.parametrize(
    ("a", "b", "eq"),
    [
        (1, 1.0, True),  # Int is converted to Decimal before comparing
        (0.1 + 0.2, 0.3, False),
        ("3", 3, False),
        (True, 1, False),
        (None, None, True),  # Null <> Null is false
        (None, 0, False),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),  # same items in the same order
        ([1, [2.0]], [1.0, [2]], True),
        ([1], [1, 1], False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),  # key order does not matter
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": "1"}, {"a": 1}, False),
        (b"x", b"x", True),
        (b"x", "x", False),
        (float("nan"), float("nan"), False),
    ],
)
def test_equality_cases(a: Any, b: Any, eq: bool) -> None:
    assert v.op_eq(a, b) is eq
    assert v.op_ne(a, b) is (not eq)
    assert v.equal(a, b) is eq


def test_equal_never_matches_undefined() -> None:
    assert v.equal(U, U) is False
    assert v.equal(1, U) is False
    assert v.op_eq(U, U) is U


# -- arithmetic --------------------------------------------------------------------------------


@pytest.mark.parametrize("left", SAMPLES, ids=str)
@pytest.mark.parametrize("right", SAMPLES, ids=str)
def test_plus_matrix(left: str, right: str) -> None:
    a, b = SAMPLES[left], SAMPLES[right]
    result = v.op_add(a, b)
    if left in ("NumStr", "Str") or right in ("NumStr", "Str"):
        # either side a String: concatenation of string forms (Null/Undefined have none)
        x, y = v.to_string(a), v.to_string(b)
        assert same(result, U if U in (x, y) else x + y)
    elif left == right == "Int":
        assert same(result, 14)
    elif left in ("Int", "Decimal") and right in ("Int", "Decimal"):
        assert same(result, float(a) + float(b))
    else:
        assert result is U


@pytest.mark.parametrize(
    ("op", "python"),
    [(v.op_sub, float.__sub__), (v.op_mul, float.__mul__), (v.op_div, float.__truediv__)],
)
@pytest.mark.parametrize("left", SAMPLES, ids=str)
@pytest.mark.parametrize("right", SAMPLES, ids=str)
def test_minus_times_divide_matrix(op: Any, python: Any, left: str, right: str) -> None:
    a, b = SAMPLES[left], SAMPLES[right]
    result = op(a, b)
    if left == right == "Int":
        assert v.type_of(result) == "Int"
    elif left in NUMERIC and right in NUMERIC:
        # with a Decimal or a numeric String the result is a Decimal
        assert same(result, python(float(a), float(b)))
    else:
        assert result is U


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [
        (v.op_add, 1, 2, 3),
        (v.op_add, 1, 2.0, 3.0),
        (v.op_add, "1", 2, "12"),
        (v.op_add, 2, "1", "21"),
        (v.op_add, "a", 2.5, "a2.5"),
        (v.op_add, "a", True, "atrue"),
        (v.op_add, "a", [1], "a[1]"),
        (v.op_add, "a", {"k": "v"}, 'a{"k":"v"}'),
        (v.op_add, "a", None, U),
        (v.op_add, "a", U, U),
        (v.op_add, True, 1, U),
        (v.op_add, None, 1, U),
        (v.op_add, 1e308, 1e308, U),  # overflow
        (v.op_add, 10**33 * 9, 10**33 * 2, 1.1e34),  # past 34 digits: a Decimal
        (v.op_sub, 5, 7, -2),
        (v.op_sub, "5", 3, 2.0),
        (v.op_sub, "5", "x", U),
        (v.op_mul, 6, 7, 42),
        (v.op_mul, "2", "2.5", 5.0),
        (v.op_mul, 10**20, 10**20, 1e40),
        (v.op_div, 7, 2, 3),  # Int / Int stays Int
        (v.op_div, -7, 2, -3),  # truncated toward zero, as Java (Python's // gives -4)
        (v.op_div, 7, -2, -3),
        (v.op_div, -7, -2, 3),
        (v.op_div, 7, 2.0, 3.5),
        (v.op_div, "7", 2, 3.5),
        (v.op_div, 1, 0, U),  # division by zero
        (v.op_div, 1.5, 0.0, U),
        (v.op_div, 1.5, "0", U),
        (v.op_mod, 8, 3, 2),
        (v.op_mod, -7, 3, -1),  # Java's remainder: the sign of the dividend
        (v.op_mod, 7, -3, 1),
        (v.op_mod, -7, -3, -1),
        (v.op_mod, 7.5, 2, 1.5),
        (v.op_mod, -7.5, 2, -1.5),
        (v.op_mod, "8", 3, 2.0),
        (v.op_mod, 8, 0, U),
        (v.op_mod, 8.0, 0.0, U),
        (v.op_mod, True, 2, U),
        (v.op_mod, [8], 3, U),
        (v.op_mod, float("inf"), 2.0, U),
    ],
)
def test_arithmetic_cases(op: Any, a: Any, b: Any, expected: Any) -> None:
    assert same(op(a, b), expected)


@pytest.mark.parametrize(
    ("a", "expected"),
    [
        (5, -5),
        (-2.5, 2.5),
        ("3", -3.0),
        ("x", U),
        (True, U),
        (None, U),
        (U, U),
        ([1], U),
        (-(10**34), 1e34),
    ],
)
def test_negation(a: Any, expected: Any) -> None:
    assert same(v.op_neg(a), expected)


# -- cast --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name", "expected"),
    [
        # to String (String, Nvarchar, Text, Ntext, varchar; any case)
        (1, "String", "1"),
        (2.5, "varchar", "2.5"),
        (True, "nvarchar", "true"),
        ("x", "TEXT", "x"),
        ([1, "a"], "Ntext", '[1,"a"]'),
        ({"a": None}, "string", '{"a":null}'),
        (None, "String", U),
        (U, "String", U),
        # to Int (Int, Integer)
        (7, "Int", 7),
        (7.9, "Int", 7),
        (-7.9, "Integer", -7),
        (True, "Int", 1),  # cast, unlike the standard conversion, turns Booleans into numbers
        (False, "int", 0),
        ("42", "Int", 42),
        ("4.2e1", "Int", 42),
        ("x", "Int", U),
        ([1], "Int", U),
        (None, "Int", U),
        (float("nan"), "Int", U),
        # to Decimal (Double; Decimal in 2016-03-23)
        (3, "Double", 3.0),
        (True, "Double", 1.0),
        ("-1.2", "double", -1.2),
        ("1.", "Double", U),
        ({}, "Double", U),
        # unknown type names
        (1, "Float", U),
        (1, "Decimal", U),  # 2016-03-23 only
        (1, "Boolean", U),
    ],
)
def test_cast(value: Any, type_name: str, expected: Any) -> None:
    assert same(v.cast(value, type_name), expected)


@pytest.mark.parametrize(
    ("value", "type_name", "expected"),
    [
        (3, "Decimal", 3.0),
        ("2.5", "DECIMAL", 2.5),
        (False, "Decimal", 0.0),
        (0, "Bool", False),
        (-3, "Boolean", True),
        (0.0, "Boolean", False),
        (0.1, "bool", True),
        ("TRUE", "Boolean", True),
        ("no", "Boolean", U),
        (float("nan"), "Boolean", U),
        (None, "Boolean", U),
        ([], "Boolean", U),
    ],
)
def test_cast_2016(value: Any, type_name: str, expected: Any) -> None:
    assert same(v.cast(value, type_name, allow_decimal_bool=True), expected)


@pytest.mark.parametrize(
    ("name", "allow", "expected"),
    [
        ("String", False, "String"),
        ("ntext", False, "String"),
        ("INTEGER", False, "Int"),
        ("Double", False, "Decimal"),
        ("Decimal", False, None),
        ("Decimal", True, "Decimal"),
        ("Bool", True, "Boolean"),
        ("Boolean", False, None),
        ("Float", True, None),
    ],
)
def test_cast_target(name: str, allow: bool, expected: str | None) -> None:
    assert v.cast_target(name, allow_decimal_bool=allow) == expected


# -- results -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "passes"),
    [(True, True), (False, False), ("true", False), (1, False), (None, False), (U, False)],
)
def test_where_passes_only_on_true(value: Any, passes: bool) -> None:
    assert v.where_passes(value) is passes


@pytest.mark.parametrize(
    ("value", "v2", "expected"),
    [
        (10.0, True, 10),  # 2016-03-23: whole-number Decimals are Ints
        (10.0, False, 10.0),  # 2015-10-08 keeps them Decimal
        (10.5, True, 10.5),
        (1e33, True, 10**33),
        (1e40, True, 1e40),  # past Int's 34 digits it stays a Decimal
        (-0.0, True, 0),
        ({"a": 1.0, "b": U, "c": {"d": U, "e": [2.0, U]}}, True, {"a": 1, "c": {"e": [2]}}),
        ({"a": float("nan"), "b": float("inf"), "c": 1}, False, {"c": 1}),
        ([b"x", "y"], False, ["y"]),  # nested Binary has no JSON form
        (b"\x00\x01", True, b"\x00\x01"),  # a binary payload passes through SELECT *
        (U, True, U),
        (float("nan"), True, U),
        (None, True, None),
        ("s", True, "s"),
        (True, True, True),
    ],
)
def test_output(value: Any, v2: bool, expected: Any) -> None:
    result = v.output(value, whole_decimals_as_int=v2)
    assert same(result, expected)
    if isinstance(expected, dict):
        assert result == expected
        assert result is not value  # a copy: the document is shared between rules


def test_output_keeps_int_and_decimal_apart_inside_containers() -> None:
    result = v.output({"a": [1.0, 2]}, whole_decimals_as_int=False)
    assert [type(x) for x in result["a"]] == [float, int]


def test_deep_values_do_not_raise() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    assert v.output(deep, whole_decimals_as_int=True) is U
    assert v.to_string(deep) is U
    assert v.op_eq(deep, deep) is U


# -- properties --------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["1", "-2.5", "1e3", "true", "FALSE", "", "007", "1e999"]),
    st.just(U),
    st.binary(max_size=4),
)
any_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
BINARY_OPS = [
    v.op_and, v.op_or, v.op_eq, v.op_ne, v.op_lt, v.op_le, v.op_gt, v.op_ge,
    v.op_add, v.op_sub, v.op_mul, v.op_div, v.op_mod, v.equal,
]  # fmt: skip
UNARY_OPS = [
    v.op_not, v.op_neg, v.to_boolean, v.to_decimal, v.to_int, v.to_string, v.type_of,
    v.where_passes,
]  # fmt: skip
KNOWN_TYPES = {"Int", "Decimal", "Boolean", "String", "Array", "Object", "Null", "Undefined"}


@given(any_values, any_values)
def test_binary_operators_are_total(a: Any, b: Any) -> None:
    for op in BINARY_OPS:
        result = op(a, b)
        assert v.type_of(result) in KNOWN_TYPES


@given(any_values)
def test_unary_operations_are_total(a: Any) -> None:
    for op in UNARY_OPS:
        op(a)
    for name in ("String", "Int", "Double", "Decimal", "Bool"):
        v.cast(a, name, allow_decimal_bool=True)
    v.output(a, whole_decimals_as_int=True)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_decimal_string_round_trip(x: float) -> None:
    text = v.to_string(x)
    assert v.to_decimal(text) == x
    assert v.cast(text, "Double") == x


@given(st.integers(min_value=-(10**34) + 1, max_value=10**34 - 1))
def test_int_string_round_trip(n: int) -> None:
    assert v.to_int(v.to_string(n)) == n
    assert v.cast(v.cast(n, "String"), "Int") == n


@given(
    st.integers(max_value=10**30, min_value=-(10**30)), st.integers(min_value=1, max_value=10**6)
)
def test_int_division_is_java(a: int, b: int) -> None:
    for d in (b, -b):
        q, r = v.op_div(a, d), v.op_mod(a, d)
        assert q * d + r == a  # Java's identity: (a / b) * b + a % b == a
        assert abs(r) < abs(d)
        assert r == 0 or (r > 0) == (a > 0)  # the remainder takes the dividend's sign


@given(any_values, any_values)
def test_ne_is_the_negation_of_eq(a: Any, b: Any) -> None:
    eq, ne = v.op_eq(a, b), v.op_ne(a, b)
    assert (eq is U and ne is U) or (eq is (not ne))


@given(any_values)
def test_output_is_json(a: Any) -> None:
    out = v.output(a, whole_decimals_as_int=True)
    if out is not U and not isinstance(out, bytes):
        json.dumps(out, allow_nan=False)
