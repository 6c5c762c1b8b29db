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
