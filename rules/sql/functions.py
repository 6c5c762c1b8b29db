"""The AWS IoT SQL function table: every built-in function, with AWS's semantics for odd input.

Each entry is a ``Function``: its arity, the SQL versions it exists in, whether it reaches
outside the message (``external``: evaluated off the dispatch path) and, for the functions
thingcore cannot offer, the text the compiler refuses the rule with (``unsupported``). The
implementations take the ``EvalContext`` and the evaluated arguments and never raise: a wrong
type, a failed conversion or a value out of range gives ``UNDEFINED``, as AWS documents
("functions called with invalid arguments return Undefined"). Conversions are the standard
ones of ``rules.sql.values``.

Where thingcore differs from AWS's Java implementation:

- **Decimal is a double.** AWS keeps 34 significant digits; thingcore uses Python floats, so
  ``0.1 + 0.2`` is ``0.30000000000000004`` and a numeric String of more than ~17 digits loses
  precision. Results that overflow a double (AWS goes to 9.999E999) or are NaN are Undefined.
  Conversions to Int go through a float's shortest repr, so ``cast(1e23 AS Int)`` is exactly
  10**23.
- **Regular expressions are Python's** ``re``, not ``java.util.regex``: the common syntax
  (classes, quantifiers, lazy and possessive quantifiers, groups, look-around, ``(?i)``
  flags, atomic groups) is the same; Java-only syntax (``\\p{Alpha}``-style POSIX classes,
  ``(?<name>...)`` named groups -- write ``(?P<name>...)``, ``\\Q...\\E``) is an invalid
  pattern, so the function is Undefined; so is a class that Java reads as a set operation
  and Python would not (``[[a]]``, ``[a-z&&[^b]]``: Python warns about these). Replacement
  strings keep Java's syntax: ``$1``,
  ``${name}``, ``\\$`` for a literal dollar.
- **Strings count code points**, not Java's UTF-16 units: ``length``, ``substring``,
  ``indexof`` and ``get`` differ from AWS only for characters outside the Basic
  Multilingual Plane (emoji).
- **Dates use a subset of the Joda-Time / java.time patterns** (``parse_time`` formats,
  ``time_to_epoch`` parses), English names only: ``G`` era, ``y``/``u``/``Y`` year (``yy``
  two digits; ``Y`` is taken as the year, not the week year), ``C`` century (formatting),
  ``M`` month (``M``/``MM`` number, ``MMM`` "Jan", ``MMMM`` "January"), ``d`` day,
  ``D`` day of year (formatting), ``E`` weekday (``EEE`` "Mon", ``EEEE`` "Monday"), ``e``
  weekday number, ``w`` ISO week, ``x`` ISO week year (formatting, as Joda; when parsing
  ``x`` is an offset, as java.time), ``a`` AM/PM, ``H``
  ``k`` ``K`` ``h`` hours, ``m``, ``s``, ``S`` fraction, ``Z`` offset (``Z`` ``-0600``,
  ``ZZ`` ``-06:00``, ``ZZZ`` zone id), ``z`` short zone name from the tz database (``zzzz``
  long names are not available: Undefined), ``VV`` zone id, ``X``/``x`` offsets (parsing),
  ``'quoted text'`` and ``''``. Another letter makes the call Undefined. Time zones are
  tz-database ids (``America/Belize``), ``UTC``/``GMT``/``Z``, offsets (``+05:00``,
  ``UTC+01:00``) and, when parsing, the US abbreviations EST/EDT, CST/CDT, MST/MDT,
  PST/PDT. Parsing ignores case and needs the whole string to match; an impossible date
  (Feb 30) is Undefined where java.time might adjust it.
- Two examples on AWS's function page contradict its own tables, and thingcore follows the
  tables: ``bitnot(13)`` is ``-14`` (two's complement, Java's ``~``; the page says 2, a
  four-bit complement) and ``get("abc", 1)`` is ``"b"`` (0-based, like
  ``get(["a", "b", "c"], 1)``; the page says ``"a"``).
- ``chr`` accepts ASCII codes 0-127 only ("If the argument is not a valid ASCII value, the
  result is Undefined").
- ``transform`` does not enforce AWS's 128 KiB result limit.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import functools
import hashlib
import json
import math
import random
import re
import uuid
import warnings
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from rules.sql.context import EvalContext
from rules.sql.values import (
    UNDEFINED,
    float_to_int,
    is_int,
    op_mod,
    output,
    parse_number_string,
    to_int,
    to_string,
    utf8,
)

ALL_VERSIONS: Final = frozenset({"2015-10-08", "2016-03-23", "beta"})
V2_VERSIONS: Final = frozenset({"2016-03-23", "beta"})
"""Functions AWS documents as "Supported by SQL version 2016-03-23 and later"."""


@dataclass(frozen=True, slots=True)
class Function:
    """One SQL function: ``impl(ctx, *args)`` gets the evaluated arguments (``*`` arrives
    as the payload bytes for a non-JSON payload, else as the document)."""

    name: str
    """Lower-case (SQL function names are case-insensitive)."""
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None
    """None: any number (``concat``)."""
    versions: frozenset[str] = ALL_VERSIONS
    external: bool = False
    """Reaches outside the message (a shadow, a Lambda): evaluated off the dispatch path and
    not allowed in errorAction templates."""
    unsupported: str | None = None
    """Why thingcore refuses a rule that calls it (the compiler's error text)."""


# -- argument helpers --------------------------------------------------------------------------


def _number(v: Any) -> Any:
    """An Int stays an Int, a Decimal a Decimal, a numeric String becomes a Decimal."""
    if is_int(v):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else UNDEFINED
    if isinstance(v, str):
        return parse_number_string(v)
    return UNDEFINED


def _double(v: Any) -> Any:
    """A finite double for the math functions ("Decimal arguments are rounded to double
    precision before function application")."""
    n = _number(v)
    if n is UNDEFINED:
        return UNDEFINED
    try:
        x = float(n)
    except OverflowError:
        return UNDEFINED
    return x if math.isfinite(x) else UNDEFINED


def _double_result(f: Callable[..., float], *args: float) -> Any:
    try:
        r = f(*args)
    except (ValueError, OverflowError, ZeroDivisionError):  # math domain errors
        return UNDEFINED
    return r if math.isfinite(r) else UNDEFINED


def _text(v: Any) -> Any:
    """A String argument: other values through the standard string conversion."""
    return to_string(v)


# -- math --------------------------------------------------------------------------------------


def _abs(ctx: EvalContext, v: Any) -> Any:
    n = _number(v)
    return UNDEFINED if n is UNDEFINED else abs(n)


def _unary_math(f: Callable[[float], float]) -> Callable[..., Any]:
    def impl(ctx: EvalContext, v: Any) -> Any:
        x = _double(v)
        return UNDEFINED if x is UNDEFINED else _double_result(f, x)

    return impl


def _binary_math(f: Callable[[float, float], float]) -> Callable[..., Any]:
    def impl(ctx: EvalContext, a: Any, b: Any) -> Any:
        x, y = _double(a), _double(b)
        if x is UNDEFINED or y is UNDEFINED:
            return UNDEFINED
        return _double_result(f, x, y)

    return impl


def _power(x: float, y: float) -> float:
    r = math.pow(x, y)
    if isinstance(r, complex):  # pragma: no cover - math.pow raises instead
        raise ValueError
    return r


def _rounding(mode: str) -> Callable[..., Any]:
    def impl(ctx: EvalContext, v: Any) -> Any:
        n = _number(v)
        if n is UNDEFINED or is_int(n):
            return n
        return float_to_int(n, mode)

    return impl


def _sign(ctx: EvalContext, v: Any) -> Any:
    n = _number(v)
    if n is UNDEFINED or n != n:
        return UNDEFINED
    return (n > 0) - (n < 0)


# Holds any double exactly, so quantize never runs out of digits.
_WIDE_CONTEXT: Final = decimal.Context(prec=2000)


def _trunc(ctx: EvalContext, v: Any, places: Any) -> Any:
    # AWS: the second argument is an Int or a Decimal (rounded down); the first may also be a
    # numeric String; "Int, Int: the source value"; trailing zeros are stripped.
    if is_int(places):
        n = places
    elif isinstance(places, float):
        n = float_to_int(places)
        if n is UNDEFINED:
            return UNDEFINED
    else:
        return UNDEFINED
    x = _number(v)
    if x is UNDEFINED or is_int(x):
        return x
    if not math.isfinite(x):
        return UNDEFINED
    n = min(max(n, 0), 34)
    exact = decimal.Decimal(repr(x))
    step = decimal.Decimal(1).scaleb(-n)
    cut = exact.quantize(step, rounding=decimal.ROUND_DOWN, context=_WIDE_CONTEXT)
    if cut == cut.to_integral_value():
        return int(cut)
    return float(cut)


def _mod(ctx: EvalContext, a: Any, b: Any) -> Any:
    return op_mod(a, b)


def _nanvl(ctx: EvalContext, v: Any, alt: Any) -> Any:
    if v is UNDEFINED or v is None or (isinstance(v, float) and math.isnan(v)):
        return alt
    return v


def _rand(ctx: EvalContext) -> Any:
    return random.random()  # noqa: S311 - AWS's rand() is not for cryptography either


# -- bits --------------------------------------------------------------------------------------


def _bit_operand(v: Any) -> Any:
    # Int as is; Decimal and numeric String "rounded down to the nearest Int".
    if isinstance(v, bool):
        return UNDEFINED
    if is_int(v):
        return v
    return to_int(v) if isinstance(v, (float, str)) else UNDEFINED


def _bitwise(f: Callable[[int, int], int]) -> Callable[..., Any]:
    def impl(ctx: EvalContext, a: Any, b: Any) -> Any:
        x, y = _bit_operand(a), _bit_operand(b)
        if x is UNDEFINED or y is UNDEFINED:
            return UNDEFINED
        return f(x, y)

    return impl


def _bitnot(ctx: EvalContext, v: Any) -> Any:
    x = _bit_operand(v)
    return UNDEFINED if x is UNDEFINED else ~x


# -- strings -----------------------------------------------------------------------------------


def _string_fn(f: Callable[[str], Any]) -> Callable[..., Any]:
    def impl(ctx: EvalContext, v: Any) -> Any:
        s = _text(v)
        return UNDEFINED if s is UNDEFINED else f(s)

    return impl


def _string2_fn(f: Callable[[str, str], Any]) -> Callable[..., Any]:
    def impl(ctx: EvalContext, a: Any, b: Any) -> Any:
        x, y = _text(a), _text(b)
        if x is UNDEFINED or y is UNDEFINED:
            return UNDEFINED
        return f(x, y)

    return impl


# Java's String.trim() removes every character up to U+0020 (spaces, tabs, newlines, controls).
_BLANKS: Final = "".join(chr(c) for c in range(0x21))


def _chr(ctx: EvalContext, v: Any) -> Any:
    if not isinstance(v, (int, float, str)) or isinstance(v, bool):
        return UNDEFINED
    code = to_int(v)
    if code is UNDEFINED or not 0 <= code <= 127:
        return UNDEFINED
    return chr(code)


def _concat(ctx: EvalContext, *args: Any) -> Any:
    if not args or any(a is UNDEFINED for a in args):
        return UNDEFINED
    if any(isinstance(a, list) for a in args):
        out: list[Any] = []
        for a in args:
            if isinstance(a, list):
                out.extend(a)
            else:
                out.append(a)
        return out
    # AWS documents both "one argument: returned unmodified" and concat(1) = "1"; a String
    # is the same either way, so one non-Array argument goes through to_string like many.
    parts = [to_string(a) for a in args]
    if any(p is UNDEFINED for p in parts):
        return UNDEFINED
    return "".join(parts)


def _pad(left: bool) -> Callable[..., Any]:
    def impl(ctx: EvalContext, v: Any, count: Any) -> Any:
        s = _text(v)
        if s is UNDEFINED or isinstance(count, bool) or not isinstance(count, (int, float, str)):
            return UNDEFINED
        n = to_int(count)
        if n is UNDEFINED:
            return UNDEFINED
        spaces = " " * min(max(n, 0), 1000)
        return spaces + s if left else s + spaces

    return impl


def _substring(ctx: EvalContext, v: Any, start: Any, end: Any = UNDEFINED) -> Any:
    s = _text(v)
    begin = _index(start)
    if s is UNDEFINED or begin is UNDEFINED:
        return UNDEFINED
    length = len(s)
    begin = min(max(begin, 0), length)
    if end is UNDEFINED:
        return s[begin:]
    stop = _index(end)
    if stop is UNDEFINED:
        return UNDEFINED
    stop = min(max(stop, 0), length)
    return s[begin:stop] if begin < stop else ""


def _index(v: Any) -> Any:
    """An index argument: Int, Decimal (fraction dropped) or numeric String."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return UNDEFINED
    return to_int(v)


def _get(ctx: EvalContext, coll: Any, key: Any) -> Any:
    if isinstance(coll, dict):
        return coll.get(key, UNDEFINED) if isinstance(key, str) else UNDEFINED
    if isinstance(coll, (list, str)):
        i = to_int(key)
        if i is UNDEFINED or not 0 <= i < len(coll):
            return UNDEFINED
        return coll[i]
    return UNDEFINED


def _indexof(s: str, sub: str) -> int:
    return s.find(sub)


def _numbytes(s: str) -> int:
    return len(utf8(s))


def _replace(ctx: EvalContext, v: Any, old: Any, new: Any) -> Any:
    s, a, b = _text(v), _text(old), _text(new)
    if s is UNDEFINED or a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    return s.replace(a, b)


def _transform(ctx: EvalContext, mode: Any, obj: Any, arr: Any) -> Any:
    if mode != "enrichArray" or not isinstance(obj, dict) or not isinstance(arr, list):
        return UNDEFINED
    # Each object of the array gets the attributes of `obj` (which win a clash: they are
    # "applied" to the element); elements that are not objects pass through unchanged.
    return [{**item, **obj} if isinstance(item, dict) else item for item in arr]


# -- regular expressions -----------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str] | None:
    # A FutureWarning marks a class that Java reads differently ("[[a]]" is a union in Java,
    # "[a-z&&[^b]]" an intersection): refuse it rather than match something else. The
    # filter change is process-wide, but compiling happens once per pattern (cached).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return re.compile(pattern)
        except (re.error, RecursionError, OverflowError, Warning):
            return None


def _regex_args(v: Any, pattern: Any) -> tuple[Any, re.Pattern[str] | None]:
    s, p = _text(v), _text(pattern)
    if s is UNDEFINED or p is UNDEFINED:
        return UNDEFINED, None
    return s, _regex(p)


def _regexp_matches(ctx: EvalContext, v: Any, pattern: Any) -> Any:
    s, rx = _regex_args(v, pattern)
    if rx is None:
        return UNDEFINED
    return rx.search(s) is not None  # Java's Matcher.find(): a match anywhere


def _regexp_substr(ctx: EvalContext, v: Any, pattern: Any) -> Any:
    s, rx = _regex_args(v, pattern)
    if rx is None:
        return UNDEFINED
    m = rx.search(s)
    return UNDEFINED if m is None else m.group(0)


@dataclass(frozen=True, slots=True)
class _Group:
    """A group reference in a replacement: a number or a name."""

    ref: int | str


def _java_replacement(repl: str, rx: re.Pattern[str]) -> list[str | _Group] | None:
    """Java's ``Matcher.appendReplacement`` syntax as literal text and group references:
    ``$n`` (the longest group number that exists), ``${name}``, ``\\x`` for a literal x;
    None when it is invalid (AWS: Undefined)."""
    parts: list[str | _Group] = []
    literal: list[str] = []
    i = 0
    while i < len(repl):
        c = repl[i]
        if c == "\\":
            if i + 1 >= len(repl):
                return None
            literal.append(repl[i + 1])
            i += 2
            continue
        if c != "$":
            literal.append(c)
            i += 1
            continue
        i += 1
        if i >= len(repl):
            return None
        if repl[i] == "{":
            close = repl.find("}", i)
            name = repl[i + 1 : close] if close > 0 else ""
            if not name or name not in rx.groupindex:
                return None
            group = _Group(name)
            i = close + 1
        elif "0" <= repl[i] <= "9":
            n = int(repl[i])
            if n > rx.groups:
                return None
            i += 1
            while i < len(repl) and "0" <= repl[i] <= "9" and n * 10 + int(repl[i]) <= rx.groups:
                n = n * 10 + int(repl[i])
                i += 1
            group = _Group(n)
        else:
            return None
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(group)
    if literal:
        parts.append("".join(literal))
    return parts


def _regexp_replace(ctx: EvalContext, v: Any, pattern: Any, replacement: Any) -> Any:
    s, rx = _regex_args(v, pattern)
    r = _text(replacement)
    if rx is None or r is UNDEFINED:
        return UNDEFINED
    parts = _java_replacement(r, rx)
    if parts is None:
        return UNDEFINED

    def expand(m: re.Match[str]) -> str:
        # An unmatched group adds nothing, as in Java.
        return "".join(p if isinstance(p, str) else m.group(p.ref) or "" for p in parts)

    return rx.sub(expand, s)


# -- hashes and encodings ----------------------------------------------------------------------

# RFC 1319's substitution table (from the digits of pi).
_MD2_S: Final = bytes(
    [
        41, 46, 67, 201, 162, 216, 124, 1, 61, 54, 84, 161, 236, 240, 6, 19,
        98, 167, 5, 243, 192, 199, 115, 140, 152, 147, 43, 217, 188, 76, 130, 202,
        30, 155, 87, 60, 253, 212, 224, 22, 103, 66, 111, 24, 138, 23, 229, 18,
        190, 78, 196, 214, 218, 158, 222, 73, 160, 251, 245, 142, 187, 47, 238, 122,
        169, 104, 121, 145, 21, 178, 7, 63, 148, 194, 16, 137, 11, 34, 95, 33,
        128, 127, 93, 154, 90, 144, 50, 39, 53, 62, 204, 231, 191, 247, 151, 3,
        255, 25, 48, 179, 72, 165, 181, 209, 215, 94, 146, 42, 172, 86, 170, 198,
        79, 184, 56, 210, 150, 164, 125, 182, 118, 252, 107, 226, 156, 116, 4, 241,
        69, 157, 112, 89, 100, 113, 135, 32, 134, 91, 207, 101, 230, 45, 168, 2,
        27, 96, 37, 173, 174, 176, 185, 246, 28, 70, 97, 105, 52, 64, 126, 15,
        85, 71, 163, 35, 221, 81, 175, 58, 195, 92, 249, 206, 186, 197, 234, 38,
        44, 83, 13, 110, 133, 40, 132, 9, 211, 223, 205, 244, 65, 129, 77, 82,
        106, 220, 55, 200, 108, 193, 171, 250, 36, 225, 123, 8, 12, 189, 177, 74,
        120, 136, 149, 139, 227, 99, 232, 109, 233, 203, 213, 254, 59, 0, 29, 57,
        242, 239, 183, 14, 102, 88, 208, 228, 166, 119, 114, 248, 235, 117, 75, 10,
        49, 68, 80, 180, 143, 237, 31, 26, 219, 153, 141, 51, 159, 17, 131, 20,
    ]
)  # fmt: skip


def md2_hex(data: bytes) -> str:
    """MD2 (RFC 1319), which OpenSSL 3 and so ``hashlib`` no longer offer."""
    pad = 16 - len(data) % 16
    message = data + bytes([pad]) * pad
    checksum = bytearray(16)
    last = 0
    for block in range(0, len(message), 16):
        for j in range(16):
            checksum[j] ^= _MD2_S[message[block + j] ^ last]
            last = checksum[j]
    message += bytes(checksum)
    state = bytearray(48)
    for block in range(0, len(message), 16):
        for j in range(16):
            state[16 + j] = message[block + j]
            state[32 + j] = state[16 + j] ^ state[j]
        t = 0
        for round_ in range(18):
            for k in range(48):
                state[k] ^= _MD2_S[t]
                t = state[k]
            t = (t + round_) % 256
    return bytes(state[:16]).hex()


def _hash_input(v: Any) -> Any:
    if isinstance(v, bytes):
        return v
    s = _text(v)
    return UNDEFINED if s is UNDEFINED else utf8(s)


def _hash(name: str) -> Callable[..., Any]:
    def impl(ctx: EvalContext, v: Any) -> Any:
        data = _hash_input(v)
        if data is UNDEFINED:
            return UNDEFINED
        if name == "md2":
            return md2_hex(data)
        return hashlib.new(name, data).hexdigest()

    return impl


def _scheme_ok(scheme: Any) -> bool:
    return isinstance(scheme, str) and scheme.lower() == "base64"


def _encode(ctx: EvalContext, v: Any, scheme: Any) -> Any:
    if not _scheme_ok(scheme):
        return UNDEFINED
    data = _hash_input(v)
    if data is UNDEFINED:
        return UNDEFINED
    return base64.b64encode(data).decode("ascii")


def _decode(ctx: EvalContext, v: Any, scheme: Any) -> Any:
    if not _scheme_ok(scheme):
        return UNDEFINED
    if isinstance(v, bytes):
        v = v.decode("ascii", errors="replace")
    if not isinstance(v, str):
        return UNDEFINED
    text = "".join(v.split())
    try:
        # Java's basic decoder does not require the "=" padding.
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None  # AWS: "The function returns NULL if the string cannot be decoded."
    decoded = data.decode("utf-8", errors="replace")
    try:
        return json.loads(decoded, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return decoded


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# -- the message -------------------------------------------------------------------------------


def _topic_impl(ctx: EvalContext, *args: Any) -> Any:
    if not args:
        return ctx.topic
    i = _index(args[0])
    levels = ctx.topic_levels()
    if i is UNDEFINED or not 1 <= i <= len(levels):
        return UNDEFINED
    return levels[i - 1]


def _clientid(ctx: EvalContext) -> Any:
    return "n/a" if ctx.client_id is None else ctx.client_id


def _principal(ctx: EvalContext) -> Any:
    return UNDEFINED if ctx.principal is None else ctx.principal


def _traceid(ctx: EvalContext) -> Any:
    # AWS: "Undefined if the message wasn't sent over MQTT"; a message without a client id
    # did not come over MQTT (HTTP publish, an internal event).
    if not ctx.has_trace() and ctx.client_id is None:
        return UNDEFINED
    return ctx.trace()


def _timestamp(ctx: EvalContext) -> Any:
    return ctx.received_ms


def _accountid(ctx: EvalContext) -> Any:
    return ctx.account_id


def _newuuid(ctx: EvalContext) -> Any:
    return str(uuid.uuid4())


def _sql_version(ctx: EvalContext) -> Any:
    # The compiler answers sql_version() itself (the context does not carry the version).
    return getattr(ctx, "sql_version", UNDEFINED)


def _isnull(ctx: EvalContext, v: Any) -> Any:
    return v is None


def _isundefined(ctx: EvalContext, v: Any) -> Any:
    return v is UNDEFINED


def _get_thing_shadow(ctx: EvalContext, *args: Any) -> Any:
    # get_thing_shadow(thingName, [shadowName,] roleArn): the role is AWS's permission check,
    # which thingcore's own rules do not need.
    thing = args[0]
    name = args[1] if len(args) == 3 else None
    if not isinstance(thing, str) or not (name is None or isinstance(name, str)):
        return UNDEFINED
    if ctx.shadow_reader is None:
        return UNDEFINED
    return ctx.shadow_reader(thing, name)


def _aws_lambda(ctx: EvalContext, function_arn: Any, input_json: Any) -> Any:
    # aws_lambda(functionArn, inputJson): the function's JSON answer. The event is the value
    # made JSON-ready as an action's output is; a failed call fails the rule's evaluation
    # (the engine retries it, then goes to the error action).
    if not isinstance(function_arn, str) or ctx.lambda_invoker is None:
        return UNDEFINED
    event = output(input_json, whole_decimals_as_int=True)
    if event is UNDEFINED or isinstance(event, bytes):
        return UNDEFINED
    return ctx.lambda_invoker(function_arn, event)


def _external_placeholder(ctx: EvalContext, *args: Any) -> Any:
    return UNDEFINED


# -- time --------------------------------------------------------------------------------------

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MONTHS: Final = ("January", "February", "March", "April", "May", "June", "July") + (
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_UTC_NAMES: Final = frozenset({"UTC", "GMT", "UT", "Z", "UCT", "ZULU", "ETC/UTC", "ETC/GMT"})
_OFFSET: Final = re.compile(r"(UTC|GMT|UT)?([+-])(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)
# java.time resolves these short names to region zones when parsing (so DST applies).
_ABBREVIATIONS: Final = {
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "MST": "America/Denver",
    "MDT": "America/Denver",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
}


@functools.lru_cache(maxsize=256)
def _zone(name: str, *, parsing: bool = False) -> dt.tzinfo | None:
    """A time zone by Joda/java.time id; None when unknown."""
    if name.upper() in _UTC_NAMES:
        return dt.UTC
    m = _OFFSET.fullmatch(name)
    if m:
        prefix, sign, hours, minutes = m.groups()
        delta = dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta > dt.timedelta(hours=18) or int(minutes or 0) >= 60:
            return None
        label = f"{sign}{int(hours):02d}:{int(minutes or 0):02d}"
        return dt.timezone(-delta if sign == "-" else delta, (prefix or "").upper() + label)
    if parsing and name.upper() in _ABBREVIATIONS:
        name = _ABBREVIATIONS[name.upper()]
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone_id(tz: dt.tzinfo | None) -> str:
    if isinstance(tz, zoneinfo.ZoneInfo):
        return tz.key
    if tz is dt.UTC or tz is None:
        return "UTC"
    return tz.tzname(None) or "UTC"


def _tokens(pattern: str) -> list[tuple[str, int | str]] | None:
    """(letter, count) for fields, ("'", text) for literal text; None if malformed."""
    if len(pattern) > 256:
        return None
    out: list[tuple[str, int | str]] = []
    pos = 0
    while pos < len(pattern):
        c = pattern[pos]
        if c == "'":
            end = pos + 1
            text: list[str] = []
            if end < len(pattern) and pattern[end] == "'":
                out.append(("'", "'"))
                pos = end + 1
                continue
            while True:
                if end >= len(pattern):
                    return None  # unterminated quote
                if pattern[end] == "'":
                    if end + 1 < len(pattern) and pattern[end + 1] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            out.append(("'", "".join(text)))
            pos = end + 1
        elif c.isascii() and c.isalpha():
            end = pos
            while end < len(pattern) and pattern[end] == c:
                end += 1
            out.append((c, end - pos))
            pos = end
        else:
            end = pos
            while (
                end < len(pattern)
                and pattern[end] != "'"
                and not (pattern[end].isascii() and pattern[end].isalpha())
            ):
                end += 1
            out.append(("'", pattern[pos:end]))
            pos = end
    return out


def _pad_number(n: int, width: int) -> str:
    return f"{n:0{width}d}" if n >= 0 else "-" + f"{-n:0{width}d}"


def _offset_text(offset: dt.timedelta | None, colon: bool) -> str:
    total = int((offset or dt.timedelta()).total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    hours, minutes = divmod(abs(total), 60)
    return f"{sign}{hours:02d}:{minutes:02d}" if colon else f"{sign}{hours:02d}{minutes:02d}"


def format_time(pattern: str, when: dt.datetime) -> str | None:
    """``when`` (aware) formatted with a Joda-Time pattern; None for an unsupported one."""
    tokens = _tokens(pattern)
    if tokens is None:
        return None
    out: list[str] = []
    for letter, spec in tokens:
        if letter == "'":
            out.append(str(spec))
            continue
        count = int(spec)
        text = _format_field(letter, count, when)
        if text is None:
            return None
        out.append(text)
    return "".join(out)


def _format_field(letter: str, count: int, when: dt.datetime) -> str | None:
    year = when.year
    if letter == "G":
        return "AD"
    if letter in "yYu":
        return _pad_number(year % 100, 2) if count == 2 else _pad_number(year, count)
    if letter == "C":
        return _pad_number(year // 100, count)
    if letter == "M":
        if count >= 4:
            return _MONTHS[when.month - 1]
        if count == 3:
            return _MONTHS[when.month - 1][:3]
        return _pad_number(when.month, count)
    if letter == "E":
        name = _DAYS[when.weekday()]
        return name if count >= 4 else name[:3]
    numbers = {
        "d": when.day,
        "D": when.timetuple().tm_yday,
        "e": when.isoweekday(),
        "H": when.hour,
        "k": when.hour or 24,
        "K": when.hour % 12,
        "h": when.hour % 12 or 12,
        "m": when.minute,
        "s": when.second,
        "w": when.isocalendar()[1],
    }
    if letter in numbers:
        return _pad_number(numbers[letter], count)
    if letter == "x":
        week_year = when.isocalendar()[0]
        return _pad_number(week_year % 100, 2) if count == 2 else _pad_number(week_year, count)
    if letter == "S":
        millis = f"{when.microsecond // 1000:03d}"
        return millis[:count] if count <= 3 else millis + "0" * (count - 3)
    if letter == "a":
        return "AM" if when.hour < 12 else "PM"
    if letter == "Z":
        if count >= 3:
            return _zone_id(when.tzinfo)
        return _offset_text(when.utcoffset(), colon=count == 2)
    if letter == "z":
        if count >= 4:
            return None  # long zone names are not in the tz database
        if isinstance(when.tzinfo, zoneinfo.ZoneInfo) or when.tzinfo is dt.UTC:
            return when.tzname()
        return _zone_id(when.tzinfo)
    return None


def _parse_time(ctx: EvalContext, pattern: Any, epoch_ms: Any, zone: Any = "UTC") -> Any:
    if not isinstance(pattern, str) or not isinstance(zone, str):
        return UNDEFINED
    if isinstance(epoch_ms, bool) or not isinstance(epoch_ms, (int, float, str)):
        return UNDEFINED
    ms = to_int(epoch_ms)
    tz = _zone(zone)
    if ms is UNDEFINED or tz is None:
        return UNDEFINED
    try:
        when = (_EPOCH + dt.timedelta(milliseconds=ms)).astimezone(tz)
    except (OverflowError, ValueError):
        return UNDEFINED
    text = format_time(pattern, when)
    return UNDEFINED if text is None else text


def _alternatives(names: list[str]) -> str:
    return "(" + "|".join(sorted(names, key=len, reverse=True)) + ")"


_ZONE_TEXT: Final = r"([A-Za-z][A-Za-z0-9_/+\-:]*)"
_OFFSET_TEXT: Final = r"(Z|[+-]\d{2}(?::?\d{2})?)"


def _field_regex(letter: str, count: int) -> str | None:
    if letter in "yuY":
        return r"(\d{2})" if count == 2 else rf"(\d{{{count},{max(count, 9)}}})"
    if letter == "M" and count >= 3:
        return _alternatives([m if count >= 4 else m[:3] for m in _MONTHS])
    if letter == "E":
        return _alternatives([d if count >= 4 else d[:3] for d in _DAYS])
    if letter in "MdHhkKms":
        return r"(\d{1,2})" if count == 1 else rf"(\d{{{count}}})"
    if letter == "S":
        return rf"(\d{{{count}}})"
    if letter == "a":
        return "(AM|PM)"
    if letter == "G":
        return "(AD)"
    if letter in "zV":
        return _ZONE_TEXT
    if letter in "ZXx":
        return _OFFSET_TEXT
    return None


@functools.lru_cache(maxsize=128)
def _parser(pattern: str) -> tuple[re.Pattern[str], tuple[tuple[str, int], ...]] | None:
    tokens = _tokens(pattern)
    if tokens is None:
        return None
    parts: list[str] = []
    fields: list[tuple[str, int]] = []
    for letter, spec in tokens:
        if letter == "'":
            parts.append(re.escape(str(spec)))
            continue
        rx = _field_regex(letter, int(spec))
        if rx is None:
            return None
        parts.append(rx)
        fields.append((letter, int(spec)))
    try:
        return re.compile("".join(parts), re.IGNORECASE), tuple(fields)
    except re.error:
        return None


_HOURS: Final = {"H": (0, 23), "k": (1, 24), "K": (0, 11), "h": (1, 12)}
"""The hour letters and their ranges (``k`` 24 is midnight, ``h`` 12 is the first hour)."""


def parse_epoch_ms(text: str, pattern: str) -> int | None:
    """``text`` parsed with a date pattern as epoch milliseconds (UTC unless the text
    names a zone or an offset); None when it does not parse."""
    compiled = _parser(pattern)
    if compiled is None:
        return None
    rx, fields = compiled
    m = rx.fullmatch(text)
    if m is None:
        return None
    values = {"y": 1970, "M": 1, "d": 1, "H": 0, "m": 0, "s": 0, "ms": 0}
    half: str | None = None
    tz: dt.tzinfo = dt.UTC
    for (letter, count), raw in zip(fields, m.groups(), strict=True):
        if letter in "yuY":
            values["y"] = 2000 + int(raw) if count == 2 else int(raw)
        elif letter == "M":
            values["M"] = (
                [n[: len(raw)].lower() for n in _MONTHS].index(raw.lower()) + 1
                if count >= 3
                else int(raw)
            )
        elif letter in "dms":
            values[letter] = int(raw)
        elif letter in _HOURS:
            low, high = _HOURS[letter]
            if not low <= int(raw) <= high:
                return None
            values["H"] = int(raw) % (24 if letter in "Hk" else 12)
        elif letter == "S":
            values["ms"] = int(raw[:3].ljust(3, "0"))
        elif letter == "a":
            half = raw.upper()
        elif letter in "zVZXx":
            zone = dt.UTC if raw.upper() == "Z" else _zone(raw, parsing=True)
            if zone is None:
                return None
            tz = zone
    if half == "PM":
        values["H"] += 12 if values["H"] < 12 else 0
    try:
        local = dt.datetime(
            values["y"], values["M"], values["d"], values["H"], values["m"], values["s"],
            values["ms"] * 1000, tzinfo=tz,
        )  # fmt: skip
    except (ValueError, OverflowError):
        return None
    delta = local - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _time_to_epoch(ctx: EvalContext, text: Any, pattern: Any) -> Any:
    if not isinstance(text, str) or not isinstance(pattern, str) or len(text) > 256:
        return UNDEFINED
    ms = parse_epoch_ms(text, pattern)
    return UNDEFINED if ms is None else ms


# -- the table ---------------------------------------------------------------------------------

_UNSUPPORTED_DYNAMODB: Final = (
    "get_dynamodb() needs Amazon DynamoDB, which thingcore does not have; look the item up "
    "in the action that receives the message instead"
)
_UNSUPPORTED_SECRET: Final = (
    "get_secret() needs AWS Secrets Manager, which thingcore does not have; put the secret "
    "in the action's configuration instead"
)
_UNSUPPORTED_ML: Final = (
    "machinelearning_predict() needs Amazon Machine Learning, which AWS has retired and "
    "thingcore does not have; call the model from a Lambda action instead"
)


def _fn(
    name: str,
    impl: Callable[..., Any],
    min_args: int,
    max_args: int | None = -1,
    **kwargs: Any,
) -> Function:
    """A table entry; ``max_args`` defaults to ``min_args`` (None: variadic)."""
    return Function(name, impl, min_args, min_args if max_args == -1 else max_args, **kwargs)


def _table() -> dict[str, Function]:
    math_1: dict[str, Callable[[float], float]] = {
        "acos": math.acos,
        "asin": math.asin,
        "atan": math.atan,
        "cos": math.cos,
        "cosh": math.cosh,
        "sin": math.sin,
        "sinh": math.sinh,
        "tan": math.tan,
        "tanh": math.tanh,
        "exp": math.exp,
        "ln": math.log,
        "log": math.log10,
        "sqrt": math.sqrt,
    }
    functions = [
        _fn("abs", _abs, 1),
        _fn("accountid", _accountid, 0),
        *(_fn(name, _unary_math(f), 1) for name, f in math_1.items()),
        _fn("atan2", _binary_math(math.atan2), 2),
        _fn("power", _binary_math(_power), 2),
        _fn("aws_lambda", _aws_lambda, 2, external=True),
        _fn("bitand", _bitwise(lambda a, b: a & b), 2),
        _fn("bitor", _bitwise(lambda a, b: a | b), 2),
        _fn("bitxor", _bitwise(lambda a, b: a ^ b), 2),
        _fn("bitnot", _bitnot, 1),
        _fn("ceil", _rounding(decimal.ROUND_CEILING), 1),
        _fn("floor", _rounding(decimal.ROUND_FLOOR), 1),
        _fn("round", _rounding(decimal.ROUND_HALF_UP), 1),
        _fn("chr", _chr, 1),
        _fn("clientid", _clientid, 0),
        _fn("concat", _concat, 0, None),
        _fn("decode", _decode, 2, versions=V2_VERSIONS),
        _fn("encode", _encode, 2, versions=V2_VERSIONS),
        _fn("endswith", _string2_fn(str.endswith), 2),
        _fn("startswith", _string2_fn(str.startswith), 2),
        _fn("get", _get, 2),
        _fn(
            "get_dynamodb",
            _external_placeholder,
            4,
            6,
            versions=V2_VERSIONS,
            external=True,
            unsupported=_UNSUPPORTED_DYNAMODB,
        ),
        _fn(
            "get_secret",
            _external_placeholder,
            3,
            4,
            external=True,
            unsupported=_UNSUPPORTED_SECRET,
        ),
        _fn("get_thing_shadow", _get_thing_shadow, 2, 3, versions=V2_VERSIONS, external=True),
        *(_fn(name, _hash(name), 1) for name in _HASHES),
        _fn("indexof", _string2_fn(_indexof), 2, versions=V2_VERSIONS),
        _fn("isnull", _isnull, 1),
        _fn("isundefined", _isundefined, 1, versions=V2_VERSIONS),
        _fn("length", _string_fn(len), 1, versions=V2_VERSIONS),
        _fn("lower", _string_fn(str.lower), 1),
        _fn("upper", _string_fn(str.upper), 1),
        _fn("lpad", _pad(left=True), 2),
        _fn("rpad", _pad(left=False), 2),
        _fn("ltrim", _string_fn(lambda s: s.lstrip(_BLANKS)), 1),
        _fn("rtrim", _string_fn(lambda s: s.rstrip(_BLANKS)), 1),
        _fn("trim", _string_fn(lambda s: s.strip(_BLANKS)), 1),
        _fn(
            "machinelearning_predict",
            _external_placeholder,
            3,
            external=True,
            unsupported=_UNSUPPORTED_ML,
        ),
        _fn("mod", _mod, 2),
        _fn("remainder", _mod, 2),
        _fn("nanvl", _nanvl, 2),
        _fn("newuuid", _newuuid, 0),
        _fn("numbytes", _string_fn(_numbytes), 1, versions=V2_VERSIONS),
        _fn("parse_time", _parse_time, 2, 3, versions=V2_VERSIONS),
        _fn("principal", _principal, 0),
        _fn("rand", _rand, 0),
        _fn("regexp_matches", _regexp_matches, 2),
        _fn("regexp_replace", _regexp_replace, 3),
        _fn("regexp_substr", _regexp_substr, 2),
        _fn("replace", _replace, 3),
        _fn("sign", _sign, 1),
        _fn("sql_version", _sql_version, 0),
        _fn("substring", _substring, 2, 3),
        _fn("time_to_epoch", _time_to_epoch, 2, versions=V2_VERSIONS),
        _fn("timestamp", _timestamp, 0),
        _fn("topic", _topic_impl, 0, 1),
        _fn("traceid", _traceid, 0),
        _fn("transform", _transform, 3, versions=V2_VERSIONS),
        _fn("trunc", _trunc, 2),
    ]
    return {f.name: f for f in functions}


_HASHES: Final = ("md2", "md5", "sha1", "sha224", "sha256", "sha384", "sha512")

FUNCTIONS: Final[dict[str, Function]] = _table()


def lookup(name: str) -> Function | None:
    """The function called ``name`` (case-insensitive: ``isNull`` is ``isnull``)."""
    return FUNCTIONS.get(name.lower())
