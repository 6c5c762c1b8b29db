"""Rule errors that are not SQL errors (those are ``rules.sql.errors.RuleSqlError``)."""

from __future__ import annotations

from thingcore.errors import ThingcoreError


class RuleError(ThingcoreError):
    """A rule definition that cannot be used, or a rule that does not exist."""


class TargetError(ThingcoreError):
    """A delivery to a target (bucket, queue, function...) failed, or a target was misused.

    ``retryable`` says whether trying the same delivery later may succeed (the target is down,
    busy or timed out); a delivery that can never succeed (an invalid key, a function that does
    not exist) goes to the rule's error action at once.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ExternalCallError(TargetError):
    """A function of rule SQL that leaves the process (``aws_lambda``) failed.

    ``action`` and ``resource`` name it in AWS's error payload (``failedAction``,
    ``failedResource``) when the rule's evaluation gives up.
    """

    def __init__(self, message: str, *, action: str, resource: str, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)
        self.action = action
        self.resource = resource
