"""Rule errors that are not SQL errors (those are ``rules.sql.errors.RuleSqlError``)."""

from __future__ import annotations

from thingcore.errors import ThingcoreError


class RuleError(ThingcoreError):
    """A rule definition that cannot be used, or a rule that does not exist."""
