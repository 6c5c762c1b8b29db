"""Rule definitions in AWS's shape (``TopicRulePayload``, reference 2.1), validated at the edge.

A definition is stored as the JSON the user gave (so a rule copied from AWS reads naturally);
``RuleDefinition`` checks it: the name, the SQL (it compiles), the SQL version, and each action
(exactly one kind per entry, a kind thingcore has, its parameters).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rules.actions import AWS_ONLY, KINDS
from rules.errors import RuleError
from rules.sql.compiler import CompiledRule, check_template, compile_rule

if TYPE_CHECKING:
    from rules.config import RulesSettings

_RULE_NAME = re.compile(r"[a-zA-Z0-9_]{1,128}")
MAX_ACTIONS = 10


def rule_name(name: str) -> str:
    if not _RULE_NAME.fullmatch(name):
        raise RuleError(f"rule name {name!r} is invalid: use 1-128 letters, digits or '_'")
    return name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TopicRulePayload(_Model):
    sql: str = Field(min_length=1)
    description: str | None = None
    aws_iot_sql_version: str | None = Field(default=None, alias="awsIotSqlVersion")
    rule_disabled: bool = Field(default=False, alias="ruleDisabled")
    actions: list[dict[str, dict[str, Any]]] = Field(default_factory=list)
    error_action: dict[str, dict[str, Any]] | None = Field(default=None, alias="errorAction")


@dataclass(frozen=True, slots=True)
class Action:
    kind: str
    params: Any
    """The validated parameter model (``rules.actions.<kind>.Params``)."""


@dataclass(frozen=True, slots=True)
class RuleDefinition:
    name: str
    payload: TopicRulePayload
    actions: tuple[Action, ...]
    error_action: Action | None
    compiled: CompiledRule
    """The SQL, compiled once when the definition is checked."""

    @property
    def sql_version(self) -> str | None:
        return self.payload.aws_iot_sql_version

    @property
    def disabled(self) -> bool:
        return self.payload.rule_disabled

    def to_json(self) -> str:
        return self.payload.model_dump_json(by_alias=True, exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.to_json())
        return data


def _action(entry: dict[str, dict[str, Any]], where: str) -> Action:
    if len(entry) != 1:
        raise RuleError(f"{where} must name exactly one action kind, not {sorted(entry)}")
    [(kind, params)] = entry.items()
    module = KINDS.get(kind)
    if module is None:
        supported = ", ".join(sorted(KINDS))
        if kind in AWS_ONLY:
            raise RuleError(
                f"{where}: {kind!r} is an AWS IoT action that thingcore does not implement; "
                f"the supported actions are: {supported} (a function action can forward "
                "to any service)"
            )
        raise RuleError(f"{where}: there is no action kind {kind!r}; supported: {supported}")
    try:
        return Action(kind, module.Params.model_validate(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise RuleError(f"{where} ({kind}): {problems}") from None


def parse_definition(name: str, payload: dict[str, Any] | str | bytes) -> RuleDefinition:
    """Validate a rule: its name, its payload's shape and actions, and that its SQL compiles
    (``RuleSqlError``, with the position, when it does not)."""
    rule_name(name)
    try:
        raw = json.loads(payload) if isinstance(payload, str | bytes) else payload
    except ValueError as exc:
        raise RuleError(f"rule {name}: the definition is not valid JSON: {exc}") from None
    try:
        model = TopicRulePayload.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise RuleError(f"rule {name}: {problems}") from None
    if len(model.actions) > MAX_ACTIONS:
        raise RuleError(f"rule {name}: at most {MAX_ACTIONS} actions per rule (AWS's limit)")
    actions = tuple(_action(a, f"rule {name}: actions[{i}]") for i, a in enumerate(model.actions))
    error_action = None
    if model.error_action is not None:
        error_action = _action(model.error_action, f"rule {name}: errorAction")
    compiled = compile_rule(model.sql, model.aws_iot_sql_version)
    for action in actions:
        for template in _templates(action):
            check_template(template, compiled.version)
    if error_action is not None:
        # The error action runs when the message has failed: no external calls (reference 2.4).
        for template in _templates(error_action):
            check_template(template, compiled.version, allow_external=False)
    return RuleDefinition(name, model, actions, error_action, compiled)


def missing_extras(definition: RuleDefinition, settings: RulesSettings) -> list[str]:
    """What ``definition``'s actions need that is not installed, each with its install command
    (an ``s3`` action needs boto3 only where it goes to AWS, say); empty when all is there."""
    problems: list[str] = []
    actions = [*definition.actions, *filter(None, [definition.error_action])]
    for action in actions:
        needs = getattr(KINDS[action.kind], "needs", None)
        problem = needs(action.params, settings) if needs is not None else None
        if problem is not None and problem not in problems:
            problems.append(problem)
    return problems


def _templates(action: Action) -> list[str]:
    """The parameters of an action that are substitution templates (reference 2.5)."""
    found: list[str] = KINDS[action.kind].templates(action.params)
    return found
