"""``Condition`` blocks: IAM condition operators over the request's condition keys.

IAM rules (IAM "Condition element" and "multivalued context keys" docs), as implemented here:

- Keys in one operator block, and operator blocks, AND together; the values listed for one key
  OR together (for the negated operators: the request value must match none of them).
- A key missing from the request makes the condition false, except: ``...IfExists`` is true;
  ``Null`` tests exactly that; ``ForAllValues:`` is true (vacuously, over an empty set); and the
  negated operators without a set prefix (``StringNotEquals``, ``StringNotLike``,
  ``ArnNotLike``, ``NotIpAddress``, ``NumericNotEquals``...) are true, as IAM documents.
- ``ForAnyValue:`` holds if at least one request value satisfies the operator, ``ForAllValues:``
  if every one does. Without a prefix a multi-valued key (the ``.List`` forms) behaves like
  ``ForAnyValue:``; single-valued keys behave the same under every reading.
- Policy variables are substituted in the values of the string and ARN operators only (as in
  IAM). A value whose variable does not resolve matches nothing: for ``StringEquals`` it is as if
  it were not listed, so a ``StringNotEquals`` whose only value does not resolve is true.
- A request value that is not a number (``Numeric*``) or not an IP address (``IpAddress``,
  ``NotIpAddress``) satisfies neither the operator nor its negation.
- ``ArnEquals`` and ``ArnLike`` are the same test, as in IAM: each of the six colon-separated
  ARN components is matched on its own with ``*`` and ``?``, so a ``*`` does not run across a
  ``:`` before the resource part. A value without any ``:`` (``"*"``) is matched against the
  whole string; one with colons but fewer than six components matches nothing.
"""

from __future__ import annotations

import difflib
import ipaddress
import operator as op
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar

from registry.policies.context import RequestContext
from registry.policies.glob import Glob, Piece, compile_pieces
from registry.policies.keys import resolve
from registry.policies.variables import parse_template

SetOperator = Literal["ForAnyValue", "ForAllValues"]

T = TypeVar("T")
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class _Family(Generic[T]):
    """How one family of operators reads its policy values and tests a request value."""

    prepare: Callable[[tuple[str, ...], RequestContext], Sequence[T]]
    check: Callable[[str, Sequence[T]], bool | None]
    """True or False, or None when the request value cannot be compared at all."""
    invalid: Callable[[str], str | None]
    """Why a policy value is not acceptable to the family, or None when it is."""


def _texts(values: tuple[str, ...], context: RequestContext) -> list[str]:
    texts = (parse_template(v).text(context) for v in values)
    return [t for t in texts if t is not None]


def _folded(values: tuple[str, ...], context: RequestContext) -> list[str]:
    return [t.casefold() for t in _texts(values, context)]


def _globs(values: tuple[str, ...], context: RequestContext) -> list[Glob]:
    globs = (parse_template(v).glob(context) for v in values)
    return [g for g in globs if g is not None]


def _arns(values: tuple[str, ...], context: RequestContext) -> list[tuple[Glob, ...]]:
    out = []
    for value in values:
        pieces = parse_template(value).pieces(context)
        if pieces is not None:
            out.append(_arn_globs(pieces))
    return out


@lru_cache(maxsize=1024)
def _arn_globs(pieces: tuple[Piece, ...]) -> tuple[Glob, ...]:
    """Six per-component matchers, or one whole-string matcher for a value like ``"*"``.

    A value with colons but not six components gets its components all the same and then
    matches no ARN, since ``_check_arn`` needs the counts to agree.
    """
    if not any(":" in text for literal, text in pieces if not literal):
        return (compile_pieces(pieces),)
    components: list[list[Piece]] = [[]]
    for literal, text in pieces:
        if literal:
            # A variable's value is one literal run even if it holds a ':'.
            components[-1].append((True, text))
            continue
        chunks = text.split(":", 5 - (len(components) - 1))
        components[-1].append((False, chunks[0]))
        components.extend([(False, chunk)] for chunk in chunks[1:])
    return tuple(compile_pieces(tuple(c)) for c in components)


def _check_arn(request: str, patterns: Sequence[tuple[Glob, ...]]) -> bool:
    parts = request.split(":", 5)
    for globs in patterns:
        if len(globs) == 1:
            if globs[0].matches(request):
                return True
        elif len(parts) == len(globs) and all(
            g.matches(p) for g, p in zip(globs, parts, strict=True)
        ):
            return True
    return False


def _lowered(values: tuple[str, ...], context: RequestContext) -> list[str]:
    return [v.lower() for v in values]


def _invalid_bool(value: str) -> str | None:
    if value.lower() in ("true", "false"):
        return None
    return f"must be true or false, got {value!r}"


def _valid(value: str) -> str | None:
    return None


@lru_cache(maxsize=1024)
def _network(value: str) -> IpNetwork:
    return ipaddress.ip_network(value, strict=False)


def _networks(values: tuple[str, ...], context: RequestContext) -> list[IpNetwork]:
    return [_network(v) for v in values]


def _invalid_network(value: str) -> str | None:
    try:
        _network(value)
    except ValueError:
        return f"must be an IP address or CIDR range like '203.0.113.0/24', got {value!r}"
    return None


def _check_ip(request: str, networks: Sequence[IpNetwork]) -> bool | None:
    try:
        address = ipaddress.ip_address(request)
    except ValueError:
        return None
    # ``in`` across IPv4 and IPv6 is simply False, which is what a mismatch should be.
    return any(address in network for network in networks)


# Plain decimal numbers only: ``float()`` would also take "nan", "inf" and "1_000".
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _number(text: str) -> Decimal | None:
    if _NUMBER.fullmatch(text) is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None


def _numbers(values: tuple[str, ...], context: RequestContext) -> list[Decimal]:
    return [n for n in map(_number, values) if n is not None]


def _invalid_number(value: str) -> str | None:
    if _number(value) is None:
        return f"must be a number like 10 or 2.5, got {value!r}"
    return None


def _numeric(compare: Callable[[Decimal, Decimal], bool]) -> _Family[Decimal]:
    def check(request: str, numbers: Sequence[Decimal]) -> bool | None:
        value = _number(request.strip())
        if value is None:
            return None
        return any(compare(value, n) for n in numbers)

    return _Family(_numbers, check, _invalid_number)


_EQUALS: _Family[str] = _Family(_texts, lambda r, texts: r in texts, _valid)
_IGNORE_CASE: _Family[str] = _Family(_folded, lambda r, texts: r.casefold() in texts, _valid)
_LIKE: _Family[Glob] = _Family(_globs, lambda r, globs: any(g.matches(r) for g in globs), _valid)
_ARN: _Family[tuple[Glob, ...]] = _Family(_arns, _check_arn, _valid)
_BOOL: _Family[str] = _Family(_lowered, lambda r, words: r.lower() in words, _invalid_bool)
_IP: _Family[IpNetwork] = _Family(_networks, _check_ip, _invalid_network)

# Operator name -> (family, negated). A negated operator holds when the positive one does not.
OPERATORS: Mapping[str, tuple[_Family[Any], bool]] = {
    "StringEquals": (_EQUALS, False),
    "StringNotEquals": (_EQUALS, True),
    "StringEqualsIgnoreCase": (_IGNORE_CASE, False),
    "StringNotEqualsIgnoreCase": (_IGNORE_CASE, True),
    "StringLike": (_LIKE, False),
    "StringNotLike": (_LIKE, True),
    "ArnEquals": (_ARN, False),
    "ArnNotEquals": (_ARN, True),
    "ArnLike": (_ARN, False),
    "ArnNotLike": (_ARN, True),
    "Bool": (_BOOL, False),
    "IpAddress": (_IP, False),
    "NotIpAddress": (_IP, True),
    "NumericEquals": (_numeric(op.eq), False),
    "NumericNotEquals": (_numeric(op.eq), True),
    "NumericLessThan": (_numeric(op.lt), False),
    "NumericLessThanEquals": (_numeric(op.le), False),
    "NumericGreaterThan": (_numeric(op.gt), False),
    "NumericGreaterThanEquals": (_numeric(op.ge), False),
}
NULL = "Null"

# IAM operators that no AWS IoT condition key thingcore sets can use; named so the error says
# "not supported" rather than "unknown", which would suggest a typo.
_UNSUPPORTED = frozenset(
    {
        "DateEquals",
        "DateNotEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateGreaterThan",
        "DateGreaterThanEquals",
        "BinaryEquals",
    }
)
_KNOWN = {name.lower(): name for name in (*OPERATORS, NULL, *_UNSUPPORTED)}


@dataclass(frozen=True, slots=True)
class Condition:
    """One key of one operator block: ``{"ForAnyValue:StringLike": {key: values}}``.

    Build it with ``Condition.of``, which validates the operator and the values.

    Attributes:
        operator: The operator as written, e.g. ``"ForAnyValue:StringLikeIfExists"``.
        key: The condition key, e.g. ``"iot:Connection.Thing.Attributes[site]"``.
        values: The policy values, as strings (JSON ``true`` is ``"true"``, ``10`` is ``"10"``).
        test: The operator without prefix or suffix, e.g. ``"StringLike"``.
        set_operator: ``"ForAnyValue"``, ``"ForAllValues"`` or None.
        if_exists: Whether the operator ends in ``IfExists``.
    """

    operator: str
    key: str
    values: tuple[str, ...]
    test: str
    set_operator: SetOperator | None
    if_exists: bool

    @classmethod
    def of(cls, operator: str, key: str, values: tuple[str, ...]) -> Condition:
        """Validate and build a condition.

        Raises:
            ValueError: The operator is unknown or unsupported, or a value does not suit it;
                the message is a clause to follow the place it was found.
        """
        test, set_operator, if_exists = parse_operator(operator)
        if not values:
            raise ValueError("must list at least one value")
        if test == NULL:
            invalid: Callable[[str], str | None] = _invalid_bool
        else:
            invalid = OPERATORS[test][0].invalid
        for value in values:
            problem = invalid(value)
            if problem is not None:
                raise ValueError(problem)
        return cls(operator, key, values, test, set_operator, if_exists)

    def holds(self, context: RequestContext) -> bool:
        """Whether the request in ``context`` satisfies this condition."""
        request = resolve(self.key, context)
        if self.test == NULL:
            # {"Null": {"k": "true"}} asks "is k absent?"; "false" asks "is k present?".
            wanted = "false" if request else "true"
            return any(v.lower() == wanted for v in self.values)
        family, negated = OPERATORS[self.test]
        if not request:
            if self.if_exists or self.set_operator == "ForAllValues":
                return True
            if self.set_operator == "ForAnyValue":
                return False
            return negated
        operands = family.prepare(self.values, context)

        def one(value: str) -> bool:
            result = family.check(value, operands)
            return False if result is None else result != negated

        if self.set_operator == "ForAllValues":
            return all(one(v) for v in request)
        return any(one(v) for v in request)


def parse_operator(operator: str) -> tuple[str, SetOperator | None, bool]:
    """Split ``ForAnyValue:StringLikeIfExists`` into ``("StringLike", "ForAnyValue", True)``.

    Raises:
        ValueError: The prefix, operator or suffix is not one IAM (and thingcore) knows.
    """
    rest = operator
    set_operator: SetOperator | None = None
    prefix, colon, tail = operator.partition(":")
    if colon:
        if prefix == "ForAnyValue":
            set_operator = "ForAnyValue"
        elif prefix == "ForAllValues":
            set_operator = "ForAllValues"
        else:
            raise ValueError(
                f"unknown set operator {prefix!r} in {operator!r}; use ForAnyValue: or "
                "ForAllValues:"
            )
        rest = tail
    if_exists = rest.endswith("IfExists") and rest != "IfExists"
    test = rest.removesuffix("IfExists") if if_exists else rest
    if test in OPERATORS:
        return test, set_operator, if_exists
    if test == NULL:
        if set_operator is not None or if_exists:
            raise ValueError(f"{operator!r}: Null takes no set operator and no IfExists")
        return test, None, False
    if test in _UNSUPPORTED:
        raise ValueError(f"condition operator {test!r} is not supported by thingcore")
    hint = _KNOWN.get(test.lower()) or next(
        iter(difflib.get_close_matches(test, _KNOWN.values(), 1)), None
    )
    suggestion = f"; did you mean {hint!r}?" if hint else ""
    raise ValueError(f"unknown condition operator {operator!r}{suggestion}")
