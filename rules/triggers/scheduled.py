"""A function invoked on a schedule (``schedule = "rate(...)"`` or ``"cron(...)"``), as an
EventBridge scheduled rule with a Lambda target invokes it.

``ScheduleSource.run`` sleeps until the next fire time and invokes the function with the
event's ``input``, or else EventBridge's "Scheduled Event" document. Each fire gets one id: the
document's ``id`` and the invocation's ``context.message_id``, the same on every retry, so
``context.once`` can make a handler idempotent.

Time comes from ``clock`` (epoch seconds), read again after every sleep, and sleeps last at most
``MAX_SLEEP`` seconds: a clock set forward or a machine that was suspended is noticed within that
time. A fire found more than ``LATE_LIMIT`` seconds late is missed, not made up for (EventBridge
does not catch up on the fires a stopped server missed either); a clock set back does not repeat
a fire already made.

Each fire's invocation runs as its own task, so a slow handler does not delay the next fire; but
no more fires are in flight than the function's ``concurrency``: a fire that finds them all busy
waits for one to end. A failed invocation is retried (Lambda's asynchronous invocation) up to
``settings.max_attempts`` tries, ``ctx.backoff(attempt)`` seconds apart, unless its error is not
retryable (a missing function, an event that is not JSON); then the event goes to the local queue
``<function>-dlq`` with the fire's id.

Cancelling ``run`` cancels the invocations in flight (their workers are killed) and waits for
them; a dead-letter write already begun is let finish. A cancelled fire is not made again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from rules.local.functions import FunctionError
from rules.triggers.config import ScheduleEvent, describe_event
from rules.triggers.context import TriggerContext
from rules.triggers.schedule import parse_schedule

log = logging.getLogger("thingcore.triggers")

MAX_SLEEP = 30.0
"""Seconds one sleep lasts at most before the clock is read again."""
LATE_LIMIT = 60.0
"""Seconds after its time a fire is still made; later, it was missed (the clock jumped, the
machine slept). EventBridge's own delivery is within a minute of the scheduled time."""
IDLE_AFTER_ERROR = 1.0
"""Seconds the loop waits after an unexpected error before it looks at the clock again."""


class ScheduleSource:
    """Invokes ``function`` at the times of ``event.expression`` until cancelled.

    Args:
        function: The local function's name.
        event: The sidecar's ``[[events]]`` entry (its expression is parsed here again;
            ``ScheduleError``, a ``ValueError``, if it is invalid).
        ctx: The function runner, settings and dead-letter queue.
        clock: Epoch seconds now (tests pass a fake one).
        sleep: How the source waits for a fire time (tests pass one driven by their clock);
            the retries' backoff waits with ``asyncio.sleep``.
    """

    def __init__(
        self,
        function: str,
        event: ScheduleEvent,
        ctx: TriggerContext,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.function = function
        self.event = event
        self.ctx = ctx
        self.schedule = parse_schedule(event.expression)
        # EventBridge names the rule in ``resources``; a local schedule has no rule, so its
        # name is derived from the entry as written: the same across restarts.
        table = json.dumps(describe_event(event), sort_keys=True, default=str)
        digest = hashlib.sha256(f"{function}:{table}".encode()).hexdigest()[:8]
        self.rule_arn = (
            f"arn:aws:events:{ctx.region}:{ctx.account_id}:rule/{function}-schedule-{digest}"
        )
        self.next_fire: datetime | None = None
        """The fire time the source waits for (None before ``run`` and when none is left)."""
        self.fired = 0
        """Fires whose invocation was started."""
        self.missed = 0
        """Fires found more than ``LATE_LIMIT`` seconds late, and skipped."""
        self.dead_lettered = 0
        """Fires whose every try failed, kept in ``<function>-dlq``."""
        self.busy_waits = 0
        """Fires that found the function's concurrency in flight and waited for a slot."""
        self._clock = clock
        self._sleep = sleep
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Fire until cancelled; never raises anything else."""
        try:
            previous: datetime | None = None
            while True:
                try:
                    previous = await self._step(previous)
                except Exception:  # noqa: BLE001 - a bug here must not end the schedule
                    log.exception("function %s: schedule %s failed", self.function, self.schedule)
                    await self._sleep(IDLE_AFTER_ERROR)
        finally:
            await self._stop()

    async def _step(self, previous: datetime | None) -> datetime | None:
        """Sleep towards the next fire time and make the fire when it has come; the last fire
        time dealt with (made or missed)."""
        now = self._now()
        # Never the same fire twice, even when the clock was set back since.
        due = self.schedule.next_after(now if previous is None else max(now, previous))
        self.next_fire = due
        if due is None:  # the schedule's years are over: nothing to do but wait to be stopped
            await self._sleep(MAX_SLEEP)
            return previous
        await self._sleep(min((due - now).total_seconds(), MAX_SLEEP))
        now = self._now()
        if now < due:
            return previous  # not yet: look again from the clock (it may have moved)
        late = (now - due).total_seconds()
        if late > LATE_LIMIT:
            self.missed += 1
            log.warning(
                "function %s: missed the fire of %s at %s (the clock is %.0f s past it)",
                self.function,
                self.schedule,
                _timestamp(due),
                late,
            )
            return due
        await self._fire(due)
        return due

    async def _fire(self, due: datetime) -> None:
        message_id = str(uuid.uuid4())
        event = self.event.input
        if event is None:
            event = self.scheduled_event(due, message_id)
        limit = self._concurrency()
        if len(self._in_flight) >= limit:
            self.busy_waits += 1
            while len(self._in_flight) >= limit:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        self.fired += 1
        task = asyncio.create_task(
            self._deliver(event, message_id), name=f"schedule {self.function} {_timestamp(due)}"
        )
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def scheduled_event(self, due: datetime, event_id: str) -> dict[str, Any]:
        """EventBridge's "Scheduled Event" for the fire at ``due``."""
        return {
            "version": "0",
            "id": event_id,
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.ctx.account_id,
            "time": _timestamp(due),
            "region": self.ctx.region,
            "resources": [self.rule_arn],
            "detail": {},
        }

    async def _deliver(self, event: Any, message_id: str) -> None:
        """Invoke with retries, then dead-letter; never raises but CancelledError."""
        # Lambda keeps the request id of an asynchronous invocation across its retries.
        request_id = str(uuid.uuid4())
        attempts = self.ctx.settings.max_attempts
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                await self.ctx.functions.invoke(
                    self.function, event, request_id=request_id, message_id=message_id
                )
                return
            except FunctionError as exc:
                error, retryable = str(exc), exc.retryable
            except Exception as exc:  # noqa: BLE001 - the boundary of one invocation
                log.exception("function %s: a scheduled invocation failed", self.function)
                error, retryable = f"{type(exc).__name__}: {exc}", True
            if not retryable or attempt == attempts:
                break
            wait = self.ctx.backoff(attempt)
            log.info(
                "function %s: scheduled invocation failed (try %d of %d), again in %.2f s: %s",
                self.function,
                attempt,
                attempts,
                wait,
                error,
            )
            await asyncio.sleep(wait)
        await self._dead_letter(event, error, message_id)

    async def _dead_letter(self, event: Any, error: str, message_id: str) -> None:
        write = asyncio.ensure_future(
            asyncio.to_thread(
                self.ctx.dead_letter, self.function, event, error, message_id=message_id
            )
        )
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            # The write is one transaction in a thread that cannot be stopped: let it end
            # before whoever cancels this closes the queue store.
            await asyncio.wait({write})
            if not write.cancelled():
                write.exception()  # retrieved: a failure now is the next start's to see
            raise
        except Exception:  # noqa: BLE001 - a broken queue store: said, the fire is lost
            log.exception(
                "function %s: a failed scheduled event could not be kept in its dead-letter "
                "queue: %s",
                self.function,
                error,
            )
            return
        self.dead_lettered += 1

    def _concurrency(self) -> int:
        try:
            return self.ctx.functions.info(self.function).concurrency
        except FunctionError:
            return 1  # its invocation will fail and say why

    async def _stop(self) -> None:
        """Cancel the invocations in flight and wait for them to end."""
        while self._in_flight:
            tasks = set(self._in_flight)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
