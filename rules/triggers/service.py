"""Runs every function's event sources: one task per ``[[events]]`` entry of each sidecar.

The functions folder is looked at every ``rules.triggers.scan_interval`` seconds (only files
whose size or time changed are read again, by the function runner's cache): a new entry starts
a source, a changed one replaces it, a removed one (or a removed function) stops it. A source
that stops loses nothing: queue messages stay in their queue, a bucket source's cursor stays
where it was, and a schedule only misses the fires while it is stopped (as EventBridge).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from rules.errors import TargetError
from rules.triggers.config import BucketEvent, Event, QueueEvent, ScheduleEvent, describe_event
from rules.triggers.context import Source, TriggerContext

log = logging.getLogger("thingcore.triggers")


def make_source(function: str, event: Event, ctx: TriggerContext) -> Source:
    if isinstance(event, ScheduleEvent):
        from rules.triggers.scheduled import ScheduleSource

        return ScheduleSource(function, event, ctx)
    if isinstance(event, QueueEvent):
        from rules.triggers.queued import QueueSource

        return QueueSource(function, event, ctx)
    if isinstance(event, BucketEvent):
        from rules.triggers.bucketed import BucketSource

        return BucketSource(function, event, ctx)
    raise TypeError(f"no source for {event!r}")


def source_key(function: str, event: Event) -> str:
    """What identifies a running source: its function and its table as written."""
    return f"{function}:{json.dumps(describe_event(event), sort_keys=True)}"


@dataclass(slots=True)
class _Running:
    function: str
    event: Event
    task: asyncio.Task[None]


@dataclass(slots=True)
class TriggerService:
    """The event sources of the functions in ``ctx.functions``'s folder; use ``async with``."""

    ctx: TriggerContext
    running: dict[str, _Running] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    """Functions whose sidecar cannot be read, with why (their sources are stopped)."""
    _scanner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TriggerService:
        await self.rescan()
        self._scanner = asyncio.create_task(self._scan_loop(), name="triggers-scan")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._scanner is not None:
            self._scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scanner
            self._scanner = None
        await self._stop(list(self.running))

    def sources(self) -> list[dict[str, Any]]:
        """The running sources: function and event, by function."""
        return [
            {"function": r.function, **describe_event(r.event)}
            for r in sorted(self.running.values(), key=lambda r: r.function)
        ]

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.settings.scan_interval)
            try:
                await self.rescan()
            except Exception:  # noqa: BLE001 - a bad folder must not end the scanning
                log.exception("looking for function events failed")

    async def rescan(self) -> None:
        """Start, replace and stop sources to match the functions' sidecars now."""
        wanted, broken = await asyncio.to_thread(self._wanted)
        for name, why in broken.items():
            if self.broken.get(name) != why:
                log.error("function %s: its events cannot run: %s", name, why)
        self.broken = broken
        removed = [key for key in self.running if key not in wanted]
        dropped = [self.running[k] for k in removed if self.running[k].function not in broken]
        await self._stop(removed)
        for running in dropped:
            await self._unsubscribe(running.function, running.event)
        for key, (function, event) in wanted.items():
            if key not in self.running:
                task = asyncio.create_task(
                    self._run(function, event), name=f"trigger {function} {key}"
                )
                self.running[key] = _Running(function, event, task)
                log.info("function %s: listening to %s", function, describe_event(event))

    def _wanted(self) -> tuple[dict[str, tuple[str, Event]], dict[str, str]]:
        runner = self.ctx.functions
        wanted: dict[str, tuple[str, Event]] = {}
        broken: dict[str, str] = {}
        for name in runner.names():
            try:
                info = runner.info(name)
            except TargetError as exc:
                broken[name] = str(exc)
                continue
            for event in info.events:
                wanted[source_key(name, event)] = (name, event)
        return wanted, broken

    async def _run(self, function: str, event: Event) -> None:
        source = make_source(function, event, self.ctx)
        try:
            await source.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a source's bug: said, and the next scan restarts it
            log.exception("function %s: event source %s failed", function, describe_event(event))
            self.running.pop(source_key(function, event), None)

    async def _unsubscribe(self, function: str, event: Event) -> None:
        # A bucket subscription the sidecar no longer has: its cursor goes, so adding it back
        # later starts with new objects instead of replaying what came meanwhile. (A function
        # whose sidecar is broken keeps its cursor: fixed, it resumes where it stopped.)
        if not isinstance(event, BucketEvent):
            return
        from rules.triggers.bucketed import subscriber_id

        try:
            await asyncio.to_thread(
                self.ctx.buckets().events().forget, subscriber_id(function, event)
            )
        except TargetError as exc:
            log.warning("function %s: its bucket cursor was not removed: %s", function, exc)

    async def _stop(self, keys: list[str]) -> None:
        stopping = [self.running.pop(key) for key in keys if key in self.running]
        for running in stopping:
            running.task.cancel()
        for running in stopping:
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
