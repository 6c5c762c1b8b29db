"""A function's event sources, as its sidecar ``<name>.toml`` declares them (``[[events]]``).

Each ``[[events]]`` table names exactly one source, in the spirit of AWS SAM's ``Events``::

    [[events]]
    schedule = "rate(5 minutes)"          # or "cron(0/15 8-17 ? * MON-FRI *)", UTC
    input = { report = "hourly" }         # optional: the event instead of EventBridge's

    [[events]]
    queue = "jobs"                        # a local queue: SQS's event source mapping
    batch_size = 10                       # messages per invocation at most (1-10000)
    batch_window = 2.0                    # seconds to gather a batch (0: what is there)

    [[events]]
    bucket = "uploads"                    # an object created in a local bucket
    prefix = "images/"                    # optional key filters, as S3's notifications
    suffix = ".jpg"

Parsing is pure (no IO): ``parse_events`` takes the TOML's ``events`` value and returns the
event dataclasses, or raises ``ValueError`` with what is wrong (the runner turns it into the
function's ``InvalidConfig`` error, naming the file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_EVENTS = 20
MAX_BATCH_SIZE = 10_000
MAX_BATCH_WINDOW = 300.0
"""Lambda's MaximumBatchingWindowInSeconds at most."""


@dataclass(frozen=True, slots=True)
class ScheduleEvent:
    expression: str
    """``rate(...)`` or ``cron(...)``, checked by ``rules.triggers.schedule``."""
    input: Any = None
    """The event each invocation gets; None: EventBridge's "Scheduled Event" document."""


@dataclass(frozen=True, slots=True)
class QueueEvent:
    queue: str
    batch_size: int = 10
    batch_window: float = 0.0


@dataclass(frozen=True, slots=True)
class BucketEvent:
    bucket: str
    prefix: str = ""
    suffix: str = ""


Event = ScheduleEvent | QueueEvent | BucketEvent

_KEYS: dict[str, frozenset[str]] = {
    "schedule": frozenset({"schedule", "input"}),
    "queue": frozenset({"queue", "batch_size", "batch_window"}),
    "bucket": frozenset({"bucket", "prefix", "suffix"}),
}


def parse_events(raw: Any) -> tuple[Event, ...]:
    """The ``[[events]]`` of a sidecar; ``ValueError`` naming the entry and the problem."""
    if not isinstance(raw, list):
        raise ValueError("events must be an array of tables ([[events]])")
    if len(raw) > MAX_EVENTS:
        raise ValueError(f"a function has at most {MAX_EVENTS} events, not {len(raw)}")
    return tuple(_event(entry, i) for i, entry in enumerate(raw))


def _event(entry: Any, index: int) -> Event:
    where = f"events[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a table")
    kinds = [k for k in _KEYS if k in entry]
    if len(kinds) != 1:
        raise ValueError(
            f"{where} must name exactly one source: schedule, queue or bucket "
            f"(it names {', '.join(kinds) or 'none'})"
        )
    [kind] = kinds
    unknown = sorted(set(entry) - _KEYS[kind])
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r} for a {kind} event "
            f"(known: {', '.join(sorted(_KEYS[kind]))})"
        )
    if kind == "schedule":
        from rules.triggers.schedule import parse_schedule

        expression = _text(entry["schedule"], f"{where}.schedule")
        parse_schedule(expression)  # ValueError with the position of the problem
        return ScheduleEvent(expression, entry.get("input"))
    if kind == "queue":
        from rules.local.queues import QueueError, check_queue_name

        name = _text(entry["queue"], f"{where}.queue")
        try:
            check_queue_name(name)
        except QueueError as exc:
            raise ValueError(f"{where}.queue: {exc}") from None
        size = entry.get("batch_size", 10)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
            raise ValueError(f"{where}.batch_size must be 1 to {MAX_BATCH_SIZE}, not {size!r}")
        window = entry.get("batch_window", 0.0)
        if (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not math.isfinite(window)
            or not 0 <= window <= MAX_BATCH_WINDOW
        ):
            raise ValueError(
                f"{where}.batch_window must be 0 to {MAX_BATCH_WINDOW:g} seconds, not {window!r}"
            )
        return QueueEvent(name, size, float(window))
    from rules.local.buckets import BucketError, check_bucket

    bucket = _text(entry["bucket"], f"{where}.bucket")
    try:
        check_bucket(bucket)
    except BucketError as exc:
        raise ValueError(f"{where}.bucket: {exc}") from None
    prefix = entry.get("prefix", "")
    suffix = entry.get("suffix", "")
    if not isinstance(prefix, str) or not isinstance(suffix, str):
        raise ValueError(f"{where}: prefix and suffix must be strings")
    return BucketEvent(bucket, prefix, suffix)


def describe_event(event: Event) -> dict[str, Any]:
    """The event as its sidecar table reads (for ``thingcore functions ls --json``)."""
    if isinstance(event, ScheduleEvent):
        found: dict[str, Any] = {"schedule": event.expression}
        if event.input is not None:
            found["input"] = event.input
        return found
    if isinstance(event, QueueEvent):
        return {
            "queue": event.queue,
            "batch_size": event.batch_size,
            "batch_window": event.batch_window,
        }
    return {"bucket": event.bucket, "prefix": event.prefix, "suffix": event.suffix}


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where} must be a non-empty string, not {value!r}")
    return value
