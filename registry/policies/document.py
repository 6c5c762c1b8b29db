"""Parse and validate an AWS IoT policy document into frozen ``Statement`` values.

Validation is done once, here, with messages that name the place (``Statement[1].Action[0]``)
and say what to write instead; evaluation then trusts the structure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NoReturn

from registry.policies.conditions import Condition, parse_operator
from registry.policies.errors import PolicyError

POLICY_VERSION = "2012-10-17"
"""The only ``Version`` AWS IoT accepts."""

_TOP_KEYS = ("Version", "Statement", "Id")
_STATEMENT_KEYS = ("Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition")
# "iot:Publish", "iot:Get*", "iot:*" or "*"; the prefix is case-insensitive as in IAM.
_ACTION = re.compile(r"\*|iot:[A-Za-z0-9*?]+", re.IGNORECASE)
_ARN_EXAMPLE = "arn:aws:iot:us-east-1:123456789012:topic/sensors/*"

Effect = Literal["Allow", "Deny"]


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a policy document.

    Attributes:
        index: Position in the document's ``Statement`` list (0 for a single object).
        sid: The ``Sid``, if any.
        effect: ``"Allow"`` or ``"Deny"``.
        actions: ``Action`` entries as written (matched case-insensitively); empty if
            the statement uses ``NotAction``.
        not_actions: ``NotAction`` entries; empty if the statement uses ``Action``.
        resources: ``Resource`` entries as written; empty if the statement uses ``NotResource``.
        not_resources: ``NotResource`` entries; empty if the statement uses ``Resource``.
        conditions: Every (operator, key) pair of the ``Condition`` block; all must hold.
    """

    index: int
    sid: str | None
    effect: Effect
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()

    @property
    def label(self) -> str:
        """``Statement[2]`` or ``Statement[2] (Sid 'DenyAdmin')``, for messages."""
        sid = f" (Sid {self.sid!r})" if self.sid else ""
        return f"Statement[{self.index}]{sid}"


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    """A parsed policy: its name, version and statements.

    Attributes:
        name: The policy name it was loaded under ("" if none).
        version: Always ``"2012-10-17"``.
        statements: The statements, in document order.
    """

    name: str
    version: str
    statements: tuple[Statement, ...]


def parse_policy(text: str, name: str = "", *, max_chars: int | None = None) -> PolicyDocument:
    """Parse and validate a policy document.

    Args:
        text: The JSON document.
        name: The policy name, used in error messages and decisions.
        max_chars: Reject documents with more non-whitespace characters than this (AWS IoT's
            limit is 2048, counted without whitespace). None means no limit.

    Returns:
        The validated document.

    Raises:
        PolicyError: The document is not one AWS IoT would accept; the message names the place.
    """
    return _Parser(name).document(text, max_chars)


class _DuplicateKeyError(ValueError):
    pass


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads keeps the last of two equal keys silently; a policy with two "Effect"s is a
    # mistake worth reporting rather than a choice to make silently.
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


def _shown(value: object) -> str:
    """A short rendering of a JSON value for an error message."""
    if isinstance(value, str):
        return repr(value)
    kind = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
    rendered = json.dumps(value)
    if len(rendered) > 40:
        rendered = rendered[:37] + "..."
    return kind if kind == "null" else f"{kind} {rendered}"


class _Parser:
    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, detail: str) -> NoReturn:
        raise PolicyError(detail, policy=self.name)

    def document(self, text: str, max_chars: int | None) -> PolicyDocument:
        if max_chars is not None:
            size = sum(1 for c in text if not c.isspace())
            if size > max_chars:
                self.fail(
                    f"document has {size} characters not counting whitespace; the limit is "
                    f"{max_chars}"
                )
        try:
            raw = json.loads(text, object_pairs_hook=_reject_duplicates)
        except _DuplicateKeyError as exc:
            self.fail(f"key {exc.args[0]!r} appears twice in one JSON object")
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        except RecursionError:
            self.fail("not valid JSON: nested too deeply")
        if not isinstance(raw, dict):
            self.fail(f"the document must be a JSON object, got {_shown(raw)}")
        self.unknown_keys(raw, _TOP_KEYS, "the document")
        version = raw.get("Version")
        if version is None:
            self.fail(f'Version is missing; add "Version": "{POLICY_VERSION}"')
        if version != POLICY_VERSION:
            self.fail(
                f'Version must be "{POLICY_VERSION}" (AWS IoT supports no other), got '
                f"{_shown(version)}"
            )
        if "Id" in raw and not isinstance(raw["Id"], str):
            self.fail(f"Id must be a string, got {_shown(raw['Id'])}")
        statements = raw.get("Statement")
        if statements is None:
            self.fail("Statement is missing; it must be an object or a list of objects")
        if isinstance(statements, dict):
            statements = [statements]
        if not isinstance(statements, list):
            self.fail(f"Statement must be an object or a list of objects, got {_shown(statements)}")
        if not statements:
            self.fail("Statement must not be empty")
        return PolicyDocument(
            name=self.name,
            version=POLICY_VERSION,
            statements=tuple(self.statement(i, s) for i, s in enumerate(statements)),
        )

    def unknown_keys(self, raw: dict[str, object], allowed: tuple[str, ...], where: str) -> None:
        for key in raw:
            if key not in allowed:
                hint = next((a for a in allowed if a.lower() == key.lower()), None)
                if hint is not None:
                    self.fail(f"{where} has key {key!r}; keys are case-sensitive: use {hint!r}")
                if key in ("Principal", "NotPrincipal"):
                    self.fail(
                        f"{where} has {key}, which AWS IoT policies do not take: the principal "
                        "is whatever certificate the policy is attached to"
                    )
                self.fail(f"{where} has unknown key {key!r}; allowed: {', '.join(allowed)}")

    def statement(self, index: int, raw: object) -> Statement:
        where = f"Statement[{index}]"
        if not isinstance(raw, dict):
            self.fail(f"{where} must be an object, got {_shown(raw)}")
        self.unknown_keys(raw, _STATEMENT_KEYS, where)
        sid = raw.get("Sid")
        if sid is not None and not isinstance(sid, str):
            self.fail(f"{where}.Sid must be a string, got {_shown(sid)}")
        effect = raw.get("Effect")
        if effect is None:
            self.fail(f"{where}.Effect is missing; it must be Allow or Deny")
        if effect not in ("Allow", "Deny"):
            self.fail(f"{where}.Effect must be Allow or Deny, got {_shown(effect)}")
        actions, not_actions = self.either(raw, where, "Action", self.action)
        resources, not_resources = self.either(raw, where, "Resource", self.resource)
        conditions = self.conditions(raw.get("Condition"), f"{where}.Condition")
        return Statement(
            index=index,
            sid=sid,
            effect="Allow" if effect == "Allow" else "Deny",
            actions=actions,
            not_actions=not_actions,
            resources=resources,
            not_resources=not_resources,
            conditions=conditions,
        )

    def either(
        self,
        raw: dict[str, object],
        where: str,
        key: str,
        check: Callable[[str, str], None],
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Exactly one of ``key`` and ``Not<key>``, as a tuple of checked strings."""
        not_key = f"Not{key}"
        if key in raw and not_key in raw:
            self.fail(f"{where} has both {key} and {not_key}; use one")
        if key not in raw and not_key not in raw:
            self.fail(f"{where} needs {key} or {not_key}")
        present = key if key in raw else not_key
        entries = self.strings(raw[present], f"{where}.{present}")
        for i, entry in enumerate(entries):
            place = (
                f"{where}.{present}"
                if isinstance(raw[present], str)
                else (f"{where}.{present}[{i}]")
            )
            check(entry, place)
        return (entries, ()) if present == key else ((), entries)

    def strings(self, value: object, where: str) -> tuple[str, ...]:
        """A string or a non-empty list of strings, as a tuple."""
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            self.fail(f"{where} must be a string or a list of strings, got {_shown(value)}")
        if not value:
            self.fail(f"{where} must not be an empty list")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{where}[{i}] must be a string, got {_shown(item)}")
        return tuple(value)

    def action(self, action: str, where: str) -> None:
        if _ACTION.fullmatch(action) is None:
            self.fail(
                f"{where}: {action!r} is not an AWS IoT action; write 'iot:<Action>' such as "
                "'iot:Publish', a pattern such as 'iot:Get*', 'iot:*' or '*'"
            )

    def resource(self, resource: str, where: str) -> None:
        if resource == "*":
            return
        if not resource.startswith("arn:") or resource.count(":") < 5:
            self.fail(f"{where} must be '*' or an ARN like '{_ARN_EXAMPLE}', got {resource!r}")

    def conditions(self, raw: object, where: str) -> tuple[Condition, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, dict):
            self.fail(
                f'{where} must be an object like {{"StringEquals": {{key: value}}}}, got '
                f"{_shown(raw)}"
            )
        out: list[Condition] = []
        for operator, block in raw.items():
            place = f"{where}.{operator}"
            if not isinstance(block, dict):
                self.fail(f"{place} must be an object of condition keys, got {_shown(block)}")
            if not block:
                self.fail(f"{place} must name at least one condition key")
            try:
                parse_operator(operator)
            except ValueError as exc:
                self.fail(f"{where}: {exc}")
            for key, value in block.items():
                values = self.condition_values(value, f'{place}["{key}"]')
                try:
                    out.append(Condition.of(operator, key, values))
                except ValueError as exc:
                    self.fail(f'{place}["{key}"]: {exc}')
        return tuple(out)

    def condition_values(self, value: object, where: str) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            self.fail(f"{where} must not be an empty list")
        out = []
        for item in items:
            # JSON true/10 are written unquoted in real policies ("Bool": {"k": true}).
            if isinstance(item, bool):
                out.append("true" if item else "false")
            elif isinstance(item, str):
                out.append(item)
            elif isinstance(item, int | float):
                out.append(json.dumps(item))
            else:
                self.fail(
                    f"{where} values must be strings, numbers or booleans, got {_shown(item)}"
                )
        return tuple(out)
