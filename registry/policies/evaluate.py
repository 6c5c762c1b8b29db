"""Decide one request against a set of policies, as AWS IoT and IAM do.

Default deny; the statements of all policies form one union; any matching ``Deny`` wins over any
``Allow``. A statement matches when its action, its resource and all its conditions match.

Policy variables: a ``Resource`` or ``NotResource`` entry whose variable does not resolve (an
unattached client's thing name, a missing attribute, an unknown variable) matches nothing, for
``Allow`` and ``Deny`` alike. So such an entry never grants through ``Resource``, and never
denies through ``Resource`` either; under ``NotResource`` it excludes nothing, so the statement
applies to every resource its other entries do not name. AWS documents only the ``Allow`` case
(statements using thing variables do not match for unattached clients, reference 4.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from registry.policies.context import RequestContext
from registry.policies.document import PolicyDocument, Statement
from registry.policies.glob import Glob, compile_glob
from registry.policies.variables import Template, parse_template


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of ``evaluate``, with the statement that decided it.

    Attributes:
        allowed: Whether the request may proceed.
        statement: The ``Deny`` that matched, or else the first ``Allow`` that matched; None
            when no statement matched (default deny).
        policy: The name of the policy holding ``statement``.
        reason: One line for a log or the CLI, e.g. ``allowed by policy 'p' Statement[0]``.
    """

    allowed: bool
    statement: Statement | None
    policy: str | None
    reason: str


def evaluate(
    policies: Sequence[PolicyDocument], action: str, resource: str, context: RequestContext
) -> Decision:
    """Decide whether ``context``'s client may do ``action`` on ``resource``.

    Args:
        policies: Every policy that applies to the principal (its own and its thing groups').
        action: E.g. ``"iot:Publish"``; compared case-insensitively.
        resource: The full ARN, e.g. from ``resource_arn("topic", "a/b", ...)``.
        context: The request facts that policy variables and condition keys read.

    Returns:
        The decision and the statement that made it.
    """
    action_key = action.lower()
    allow: tuple[PolicyDocument, Statement] | None = None
    for policy in policies:
        for statement in policy.statements:
            # Once an Allow is found only a Deny can change the outcome: skip other Allows.
            if statement.effect == "Allow" and allow is not None:
                continue
            if not _applies(statement, action_key, resource, context):
                continue
            if statement.effect == "Deny":
                return Decision(
                    False,
                    statement,
                    policy.name,
                    f"explicitly denied by {_place(policy, statement)}",
                )
            allow = (policy, statement)
    if allow is not None:
        policy, statement = allow
        return Decision(True, statement, policy.name, f"allowed by {_place(policy, statement)}")
    return Decision(
        False, None, None, f"no statement allows {action} on {resource}: denied by default"
    )


def statement_applies(
    statement: Statement, action: str, resource: str, context: RequestContext
) -> bool:
    """Whether ``statement`` matches the request, whatever its effect (for ``policies test``)."""
    return _applies(statement, action.lower(), resource, context)


def _applies(statement: Statement, action_key: str, resource: str, context: RequestContext) -> bool:
    # Cheapest first: the action test needs no variables and rules out most statements. Plain
    # loops, not any(<generator>) (SIM110): this runs for every statement on the broker's hot
    # path, and a generator per call made the whole evaluation about 60% slower.
    if statement.actions:
        if not _any_action(statement.actions, action_key):
            return False
    elif _any_action(statement.not_actions, action_key):
        return False
    if statement.resources:
        if not _any_resource(statement.resources, resource, context):
            return False
    elif _any_resource(statement.not_resources, resource, context):
        return False
    for condition in statement.conditions:  # noqa: SIM110 - hot path, see above
        if not condition.holds(context):
            return False
    return True


def _any_action(patterns: tuple[str, ...], action_key: str) -> bool:
    for glob in _action_globs(patterns):  # noqa: SIM110 - hot path, see _applies
        if glob.matches(action_key):
            return True
    return False


def _any_resource(entries: tuple[str, ...], resource: str, context: RequestContext) -> bool:
    for template in _templates(entries):  # noqa: SIM110 - hot path, see _applies
        if template.matches(resource, context):
            return True
    return False


@lru_cache(maxsize=4096)
def _action_globs(actions: tuple[str, ...]) -> tuple[Glob, ...]:
    # Actions are case-insensitive in IAM: lower-case the pattern once, the request per call.
    return tuple(compile_glob(a.lower()) for a in actions)


@lru_cache(maxsize=4096)
def _templates(resources: tuple[str, ...]) -> tuple[Template, ...]:
    return tuple(parse_template(r) for r in resources)


def _place(policy: PolicyDocument, statement: Statement) -> str:
    name = f"policy {policy.name!r}" if policy.name else "an unnamed policy"
    return f"{name} {statement.label}"
