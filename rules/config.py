"""The rules engine's settings (composed into ``thingcore.config.Settings`` as ``rules``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RulesSettings:
    enabled: bool = True
    """Evaluate the rules stored in the database against every published message."""
    action_queue_size: int = 100_000
    """Rule outputs waiting for their actions; beyond it an output is dropped and counted."""
    metrics_flush_interval: float = 5.0
    """Seconds between writes of the per-rule counters to the database (for the CLI)."""
    max_rules: int = 100_000
    max_republish_depth: int = 8
    """A message republished by a rule that triggers a republish that triggers... is dropped
    (and counted) after this many hops, so a rule that matches its own output cannot spin."""

    def __post_init__(self) -> None:
        if self.action_queue_size < 1:
            raise ValueError("action_queue_size must be at least 1")
        if self.max_republish_depth < 1:
            raise ValueError("max_republish_depth must be at least 1")
        if self.metrics_flush_interval <= 0:
            raise ValueError("metrics_flush_interval must be greater than 0")
