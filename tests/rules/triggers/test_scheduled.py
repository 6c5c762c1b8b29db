"""``ScheduleSource``: a real ``FunctionRunner`` invoked on a schedule driven by a fake clock.

The source's clock and its sleep are a ``FakeTime`` the test moves forward: a sleep ends when
the fake clock reaches its end, so a minute passes in no time and nothing waits on ``sleep``.
Handlers record what they got in a JSON-lines file; failed events land in a real queue file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest

from rules.config import TriggerSettings
from rules.local.functions import FunctionRunner
from rules.local.queues import QueueStore
from rules.triggers.config import ScheduleEvent
from rules.triggers.context import TriggerContext
from rules.triggers.scheduled import IDLE_AFTER_ERROR, LATE_LIMIT, MAX_SLEEP, ScheduleSource
from tests.rules.engine_support import until

START = datetime(2024, 5, 6, 10, 0, 30, tzinfo=UTC)
"""Half a minute before the first fire of ``rate(1 minute)``."""

SETTINGS = TriggerSettings(max_attempts=3, backoff_initial=0.01, backoff_max=0.05)


class FakeTime:
    """A wall clock that moves only when told, and sleeps that end when it reaches them.

    A real sleep lasts its duration whatever the wall clock does, so ``jump`` moves the clock
    and the ends of the sleeps in progress together, while ``advance`` lets time pass.
    """

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        entry = (self.now + seconds, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    def sleeping(self) -> list[float]:
        """When the sleeps in progress end."""
        return [end for end, future in self._sleepers if not future.done()]

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for end, future in self._sleepers:
            if end <= self.now and not future.done():
                future.set_result(None)

    def jump(self, seconds: float) -> None:
        self.now += seconds
        self._sleepers = [(end + seconds, future) for end, future in self._sleepers]


async def asleep(fake: FakeTime) -> float:
    """Wait for the source to sleep; how long until that sleep ends."""
    await until(lambda: bool(fake.sleeping()), "the source to sleep")
    return min(fake.sleeping()) - fake.now


async def pass_time(fake: FakeTime, seconds: float) -> None:
    """Let ``seconds`` pass sleep by sleep, as they would for a real source."""
    target = fake.now + seconds
    while fake.now < target:
        left = await asleep(fake)
        fake.advance(min(left, target - fake.now))


def write_function(directory: Path, name: str, body: str, sidecar: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(body).lstrip())
    if sidecar:
        (directory / f"{name}.toml").write_text(textwrap.dedent(sidecar).lstrip())


def recorder(seen: Path, *, then: str = "") -> str:
    """A handler that appends the event, message id and request id to ``seen``; then ``then``."""
    return f"""
        import json, os, time
        from pathlib import Path

        def handler(event, context):
            with open({str(seen)!r}, "a") as f:
                f.write(json.dumps({{
                    "event": event,
                    "message_id": context.message_id,
                    "request_id": context.aws_request_id,
                    "pid": os.getpid(),
                }}) + "\\n")
            {then or "pass"}
        """


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def no_buckets() -> NoReturn:
    pytest.fail("no bucket is used here")


@pytest.fixture
def functions_dir(tmp_path: Path) -> Path:
    return tmp_path / "functions"


@pytest.fixture
def seen(tmp_path: Path) -> Path:
    return tmp_path / "seen.jsonl"


@pytest.fixture
def queues(tmp_path: Path) -> Iterator[QueueStore]:
    with QueueStore(tmp_path / "queues.sqlite") as store:
        yield store


@pytest.fixture
async def ctx(
    tmp_path: Path, functions_dir: Path, queues: QueueStore
) -> AsyncIterator[TriggerContext]:
    async with FunctionRunner(functions_dir, timeout=5.0, concurrency=2) as runner:
        yield TriggerContext(runner, lambda: queues, no_buckets, SETTINGS, tmp_path)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime(START)


def source(
    ctx: TriggerContext, fake: FakeTime, name: str, expression: str, payload: Any = None
) -> ScheduleSource:
    return ScheduleSource(
        name, ScheduleEvent(expression, payload), ctx, clock=fake.time, sleep=fake.sleep
    )


@contextlib.asynccontextmanager
async def running(schedule: ScheduleSource) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(schedule.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def dead_letters(queues: QueueStore, name: str) -> list[Any]:
    if f"{name}-dlq" not in {q.name for q in queues.queues()}:
        return []
    return [(m.message_id, json.loads(m.body)) for m in queues.peek(f"{name}-dlq", limit=100)]


# -- firing --------------------------------------------------------------------------------------


async def test_rate_fires_each_minute_with_eventbridges_scheduled_event(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path
) -> None:
    write_function(functions_dir, "tick", recorder(seen))
    schedule = source(ctx, fake, "tick", "rate(1 minute)")
    async with running(schedule):
        assert await asleep(fake) == 30.0  # 10:00:30 -> 10:01:00
        assert schedule.next_fire == datetime(2024, 5, 6, 10, 1, tzinfo=UTC)
        fake.advance(29.9)
        assert fake.sleeping(), "woke before the fire time"
        fake.advance(0.1)
        await until(lambda: len(lines(seen)) == 1, "the first fire")
        await pass_time(fake, 60)
        await until(lambda: len(lines(seen)) == 2, "the second fire")

    first, second = lines(seen)
    event = first["event"]
    assert event == {
        "version": "0",
        "id": first["message_id"],
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "2024-05-06T10:01:00Z",
        "region": "us-east-1",
        "resources": [schedule.rule_arn],
        "detail": {},
    }
    assert re.fullmatch(
        r"arn:aws:events:us-east-1:000000000000:rule/tick-schedule-[0-9a-f]{8}", schedule.rule_arn
    )
    assert second["event"]["time"] == "2024-05-06T10:02:00Z"
    assert second["event"]["resources"] == event["resources"]
    assert second["message_id"] != first["message_id"]
    assert schedule.fired == 2
    # The rule's name is stable: the same entry gives the same ARN in a new source.
    assert source(ctx, fake, "tick", "rate(1 minute)").rule_arn == schedule.rule_arn
    assert source(ctx, fake, "tick", "rate(2 minutes)").rule_arn != schedule.rule_arn


async def test_cron_fires_at_its_times(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path
) -> None:
    write_function(functions_dir, "report", recorder(seen))
    schedule = source(ctx, fake, "report", "cron(0/15 10 ? * MON-FRI *)")
    async with running(schedule):
        await pass_time(fake, 15 * 60)  # 10:15:30
        await until(lambda: len(lines(seen)) == 1, "the 10:15 fire")
        assert schedule.next_fire == datetime(2024, 5, 6, 10, 30, tzinfo=UTC)
        # Long waits are slept in pieces of at most MAX_SLEEP, the clock read after each.
        assert max(fake.sleeps) == MAX_SLEEP
    assert [line["event"]["time"] for line in lines(seen)] == ["2024-05-06T10:15:00Z"]


async def test_input_is_the_event_when_given(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path
) -> None:
    write_function(functions_dir, "hourly", recorder(seen))
    payload = {"report": "hourly", "tags": ["a", 1]}
    async with running(source(ctx, fake, "hourly", "rate(1 minute)", payload)):
        await pass_time(fake, 30)
        await until(lambda: len(lines(seen)) == 1, "the fire")
    [line] = lines(seen)
    assert line["event"] == payload
    assert line["message_id"]


# -- the clock -----------------------------------------------------------------------------------


async def test_a_clock_jump_forward_misses_fires_without_catching_up(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path
) -> None:
    write_function(functions_dir, "tick", recorder(seen))
    schedule = source(ctx, fake, "tick", "rate(1 minute)")
    async with running(schedule):
        await asleep(fake)
        fake.advance(3600)  # the machine slept for an hour: 11:00:30
        await until(lambda: schedule.missed == 1, "the fire of 10:01 to be missed")
        assert await asleep(fake) == 30.0  # to 11:01, not 10:02
        assert schedule.fired == 0
        await pass_time(fake, 30)
        await until(lambda: len(lines(seen)) == 1, "the 11:01 fire")
    assert [line["event"]["time"] for line in lines(seen)] == ["2024-05-06T11:01:00Z"]
    assert schedule.missed == 1


async def test_a_fire_a_little_late_is_still_made(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path
) -> None:
    write_function(functions_dir, "tick", recorder(seen))
    schedule = source(ctx, fake, "tick", "rate(1 minute)")
    async with running(schedule):
        await asleep(fake)
        fake.advance(30 + LATE_LIMIT)  # exactly LATE_LIMIT late: still made
        await until(lambda: len(lines(seen)) == 1, "the late fire")
    assert lines(seen)[0]["event"]["time"] == "2024-05-06T10:01:00Z"
    assert schedule.missed == 0


async def test_a_clock_set_back_does_not_repeat_fires(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path
) -> None:
    write_function(functions_dir, "tick", recorder(seen))
    schedule = source(ctx, fake, "tick", "rate(1 minute)")
    async with running(schedule):
        await pass_time(fake, 30)  # 10:01:00
        await until(lambda: len(lines(seen)) == 1, "the 10:01 fire")
        await asleep(fake)
        fake.jump(-150)  # 09:58:30
        await pass_time(fake, 180)  # to 10:01:30: 09:59, 10:00 and 10:01 are not fired again
        await asleep(fake)  # the source has dealt with the last wake-up
        assert schedule.fired == 1
        await pass_time(fake, 30)
        await until(lambda: len(lines(seen)) == 2, "the 10:02 fire")
    assert [line["event"]["time"] for line in lines(seen)] == [
        "2024-05-06T10:01:00Z",
        "2024-05-06T10:02:00Z",
    ]


async def test_a_schedule_that_never_fires_again_sleeps(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path
) -> None:
    write_function(functions_dir, "old", recorder(seen))
    schedule = source(ctx, fake, "old", "cron(0 0 * * ? 2020)")
    async with running(schedule) as task:
        assert await asleep(fake) == MAX_SLEEP
        await pass_time(fake, 3 * MAX_SLEEP)
        assert schedule.next_fire is None
        assert not task.done()
    assert schedule.fired == 0
    assert lines(seen) == []


# -- slow handlers and concurrency --------------------------------------------------------------


async def test_a_slow_handler_does_not_delay_the_next_fire_but_concurrency_bounds_them(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    wait_for_release = (
        f"deadline = time.monotonic() + 10\n"
        f"            while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:\n"
        f"                time.sleep(0.01)"
    )
    write_function(
        functions_dir, "slow", recorder(seen, then=wait_for_release), "concurrency = 2\n"
    )
    schedule = source(ctx, fake, "slow", "rate(1 minute)")
    async with running(schedule):
        await pass_time(fake, 30)  # 10:01
        await until(lambda: len(lines(seen)) == 1, "the 10:01 fire to start")
        await pass_time(fake, 60)  # 10:02, while 10:01 still runs
        await until(lambda: len(lines(seen)) == 2, "the 10:02 fire to start")
        fake.advance(60)  # 10:03: both workers busy, so this fire waits for one
        await until(lambda: schedule.busy_waits == 1, "the 10:03 fire to wait")
        assert schedule.fired == 2
        assert not fake.sleeping()  # the source waits for a slot, not for the next time
        release.touch()
        await until(lambda: len(lines(seen)) == 3, "the 10:03 fire to start")
        assert schedule.fired == 3
    assert [line["event"]["time"][11:16] for line in lines(seen)] == ["10:01", "10:02", "10:03"]


# -- failures ------------------------------------------------------------------------------------


async def test_a_failing_handler_is_retried_with_one_message_id_then_dead_lettered(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path, queues: QueueStore
) -> None:
    write_function(
        functions_dir, "broken", recorder(seen, then='raise ValueError("no sensor data")')
    )
    schedule = source(ctx, fake, "broken", "rate(1 minute)")
    async with running(schedule):
        await pass_time(fake, 30)
        await until(lambda: schedule.dead_lettered == 1, "the dead letter")
    tries = lines(seen)
    assert len(tries) == SETTINGS.max_attempts
    assert len({t["message_id"] for t in tries}) == 1
    assert len({t["request_id"] for t in tries}) == 1  # as Lambda's asynchronous retries
    message_id = tries[0]["message_id"]
    [(dead_id, body)] = dead_letters(queues, "broken")
    assert dead_id == message_id
    assert body["function"] == "broken"
    assert body["event"] == tries[0]["event"]
    assert body["event"]["id"] == message_id
    assert "ValueError: no sensor data" in body["error"]


async def test_an_error_that_cannot_pass_is_not_retried(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path, queues: QueueStore
) -> None:
    # A return value that is not JSON is InvalidReturn: trying again cannot help.
    write_function(functions_dir, "odd", recorder(seen, then="return {1, 2}"))
    schedule = source(ctx, fake, "odd", "rate(1 minute)", {"n": 1})
    async with running(schedule):
        await pass_time(fake, 30)
        await until(lambda: bool(dead_letters(queues, "odd")), "the dead letter")
    assert len(lines(seen)) == 1
    [(_, body)] = dead_letters(queues, "odd")
    assert body["event"] == {"n": 1}
    assert "returned an invalid value" in body["error"]


async def test_cancelled_mid_invocation_leaves_nothing_running(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path, queues: QueueStore
) -> None:
    write_function(functions_dir, "long", recorder(seen, then="time.sleep(30)"), "timeout = 60\n")
    schedule = source(ctx, fake, "long", "rate(1 minute)")
    task = asyncio.create_task(schedule.run())
    try:
        await asleep(fake)
        fake.advance(30)
        await until(lambda: len(lines(seen)) == 1, "the handler to start")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("schedule long")]
    with pytest.raises(ProcessLookupError):
        os.kill(lines(seen)[0]["pid"], 0)  # the worker was killed (and reaped)
    assert dead_letters(queues, "long") == []  # a cancelled fire is not a failed one
    assert schedule.dead_lettered == 0


async def test_cancelled_while_dead_lettering_lets_the_write_finish(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, queues: QueueStore, tmp_path: Path
) -> None:
    write_function(functions_dir, "odd", "def handler(event, context):\n    return {1, 2}\n")
    entered, gate = threading.Event(), threading.Event()

    def gated_queues() -> QueueStore:
        entered.set()
        gate.wait(10)
        return queues

    gated = TriggerContext(ctx.functions, gated_queues, no_buckets, SETTINGS, tmp_path)
    schedule = ScheduleSource(
        "odd", ScheduleEvent("rate(1 minute)"), gated, clock=fake.time, sleep=fake.sleep
    )
    task = asyncio.create_task(schedule.run())
    try:
        await pass_time(fake, 30)
        await until(entered.is_set, "the dead-letter write to begin")
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.2)
        assert not done, "run ended while its dead-letter write was still going on"
    finally:
        gate.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()
    assert len(dead_letters(queues, "odd")) == 1


async def test_a_failing_step_is_logged_and_the_schedule_goes_on(
    ctx: TriggerContext, fake: FakeTime, functions_dir: Path, seen: Path
) -> None:
    write_function(functions_dir, "tick", recorder(seen))
    calls = 0

    def flaky_clock() -> float:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("clock unavailable")
        return fake.time()

    schedule = ScheduleSource(
        "tick", ScheduleEvent("rate(1 minute)"), ctx, clock=flaky_clock, sleep=fake.sleep
    )
    async with running(schedule):
        assert await asleep(fake) == IDLE_AFTER_ERROR
        await pass_time(fake, 30)
        await until(lambda: len(lines(seen)) == 1, "the fire after the failure")


async def test_a_bad_expression_is_refused_when_made(ctx: TriggerContext) -> None:
    with pytest.raises(ValueError, match="rate of 1 takes the singular unit"):
        ScheduleSource("tick", ScheduleEvent("rate(1 hours)"), ctx)
