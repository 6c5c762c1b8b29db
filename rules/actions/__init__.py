"""Actions by name (STYLE.md habit 10): one module per kind, looked up when a rule runs.

This release performs ``republish``; the actions issues add local buckets, queues and
functions and the cloud targets, each a module here.
"""

from __future__ import annotations

from typing import Any

from broker.bus import Bus
from rules.definition import Action
from rules.sql.compiler import CompiledRule
from rules.sql.context import EvalContext


def perform(action: Action, output: Any, ctx: EvalContext, bus: Bus, rule: CompiledRule) -> None:
    """Carry out one action for one rule output."""
    if action.kind == "republish":
        from rules.actions.republish import republish

        republish(action.params, output, ctx, bus, rule)
        return
    raise ValueError(f"no action kind {action.kind!r}")  # parse_definition refuses these
