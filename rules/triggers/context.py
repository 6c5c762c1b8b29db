"""What every event source gets: the function runner, the local stores, the settings, and where
an event that could not be handled goes (the function's dead-letter queue)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rules.config import TriggerSettings

if TYPE_CHECKING:
    from rules.local.buckets import BucketStore
    from rules.local.functions import FunctionRunner
    from rules.local.queues import QueueStore

log = logging.getLogger("thingcore.triggers")

DEAD_LETTER_SUFFIX = "-dlq"


class Source(Protocol):
    """One event source of one function, run as a task by ``TriggerService``."""

    async def run(self) -> None:
        """Deliver events until cancelled; never raises (a failure is logged and retried, or
        dead-lettered)."""
        ...


@dataclass(slots=True)
class TriggerContext:
    functions: FunctionRunner
    queues: Callable[[], QueueStore]
    buckets: Callable[[], BucketStore]
    settings: TriggerSettings
    data_dir: Path
    region: str = "us-east-1"
    account_id: str = "000000000000"

    def dead_letter(self, function: str, event: Any, error: str, *, message_id: str) -> None:
        """Keep an event ``function`` failed on in the local queue ``<function>-dlq`` (called
        from a worker thread): ``{"function", "event", "error"}``, nothing dropped silently."""
        from rules.local.queues import SendItem

        body = json.dumps(
            {"function": function, "event": event, "error": error}, separators=(",", ":")
        ).encode("utf-8")
        queue = f"{function}{DEAD_LETTER_SUFFIX}"
        self.queues().send_batch([SendItem(queue, body, message_id)])
        log.warning("function %s failed on an event, kept in queue %s: %s", function, queue, error)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        s = self.settings
        wait: float = min(s.backoff_max, s.backoff_initial * 2 ** min(attempt - 1, 62))
        return wait
