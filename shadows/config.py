"""The shadow service's settings (composed into ``thingcore.config.Settings`` as ``shadows``)."""

from __future__ import annotations

from dataclasses import dataclass

from shadows.document import ShadowLimits


@dataclass(frozen=True, slots=True)
class ShadowSettings:
    enabled: bool = True
    """Serve ``$aws/things/+/shadow/...``; off leaves those topics to ordinary clients."""
    max_state_bytes: int = 8192
    """AWS's 8 KB limit on desired + reported (metadata excluded)."""
    max_depth: int = 6
    """Levels of nesting inside desired or reported (AWS's rejection text says 6)."""
    max_client_token_bytes: int = 64
    require_thing: bool = False
    """Refuse shadows of thing names that are not in the registry (404 "Thing not found").
    Off by default: AWS accepts a classic shadow for any valid thing name."""
    delete_with_thing: bool = False
    """Delete a thing's shadows when the thing is deleted (AWS keeps them)."""
    deleted_version_retention: float = 48 * 3600
    """Seconds a deleted shadow's version is remembered: recreated within it, the shadow
    continues from that version; later it starts again at 1 (AWS: 48 hours)."""
    queue_size: int = 10_000
    """Requests waiting for the database; beyond it a request gets 429 at once."""
    max_batch: int = 500
    """Requests committed together at most (group commit: one transaction per batch)."""
    history_default: int = 0
    """Versions kept per shadow when a thing type's options do not say (0: none)."""

    def __post_init__(self) -> None:
        if self.max_state_bytes < 1 or self.max_depth < 1 or self.max_client_token_bytes < 1:
            raise ValueError("shadow limits must be positive")
        if self.queue_size < 1 or self.max_batch < 1:
            raise ValueError("queue_size and max_batch must be at least 1")
        if self.history_default < 0:
            raise ValueError("history_default must be 0 or more")

    @property
    def limits(self) -> ShadowLimits:
        return ShadowLimits(self.max_state_bytes, self.max_depth, self.max_client_token_bytes)
