"""BucketSource: objects written to a local bucket invoke a function with S3's event, through
real bucket files, the event log, the queue file (dead letters) and function worker processes.

Settings are in hundredths of a second; tests wait on what the handlers wrote, with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rules.config import LocalTargetSettings, TriggerSettings
from rules.errors import TargetError
from rules.local.buckets import BucketStore
from rules.local.functions import FunctionRunner
from rules.local.queues import QueueStore
from rules.triggers.bucket_log import ObjectCreated
from rules.triggers.bucketed import BucketSource, matches, notification, subscriber_id
from rules.triggers.config import BucketEvent
from rules.triggers.context import TriggerContext
from tests.rules.engine_support import until

FAST = TriggerSettings(poll_interval=0.02, backoff_initial=0.01, backoff_max=0.05, max_attempts=3)

RECORDER = """
import json, os
from pathlib import Path

def handler(event, context):
    with Path(os.environ["SEEN"]).open("a") as f:
        f.write(json.dumps({"event": event, "message_id": context.message_id}) + "\\n")
"""


def write_function(data_dir: Path, name: str, source: str, seen: Path) -> None:
    folder = data_dir / "functions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    (folder / f"{name}.toml").write_text(f'[environment]\nSEEN = "{seen}"\n')


def seen(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def seen_keys(path: Path) -> list[str]:
    return [s["event"]["Records"][0]["s3"]["object"]["key"] for s in seen(path)]


class Local:
    """The stores and function runner of one data directory, as the server holds them."""

    def __init__(self, data_dir: Path, runner: FunctionRunner) -> None:
        self.data_dir = data_dir
        self.buckets = BucketStore(data_dir / "buckets")
        self.queues = QueueStore(data_dir / "queues.sqlite")
        self.runner = runner

    def context(
        self,
        settings: TriggerSettings = FAST,
        *,
        buckets: Callable[[], BucketStore] | None = None,
        queues: Callable[[], QueueStore] | None = None,
    ) -> TriggerContext:
        return TriggerContext(
            self.runner,
            queues or (lambda: self.queues),
            buckets or (lambda: self.buckets),
            settings,
            self.data_dir,
            region="eu-west-1",
        )

    def dead_letters(self, queue: str) -> list[tuple[str, dict[str, Any]]]:
        if queue not in {q.name for q in self.queues.queues()}:
            return []
        return [(m.message_id, json.loads(m.body)) for m in self.queues.peek(queue, limit=100)]

    def close(self) -> None:
        self.buckets.close()
        self.queues.close()


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[Local]:
    async with FunctionRunner(tmp_path / "functions", timeout=5) as runner:
        stores = Local(tmp_path, runner)
        yield stores
        stores.close()


@contextlib.asynccontextmanager
async def running(source: BucketSource) -> AsyncIterator[BucketSource]:
    """``source`` runs as a task (subscribed when this yields) until the block ends."""
    task = asyncio.create_task(source.run())
    events = source.ctx.buckets().events()
    try:
        await until(lambda: events.cursor(source.subscriber) is not None, "the subscription")
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()  # it never returned or raised on its own


# -- pure parts ------------------------------------------------------------------------------------


def test_notification_is_s3s_document() -> None:
    created = ObjectCreated(7, "uploads", "images/red flower=1.jpg", 3, '"abc"', 0.5, "log1")
    assert notification(created, region="eu-west-1", configuration_id="cfg") == {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "eu-west-1",
                "eventTime": "1970-01-01T00:00:00.500Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "thingcore"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": "0000000000000007",
                    "x-amz-id-2": "log1-7",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "cfg",
                    "bucket": {
                        "name": "uploads",
                        "ownerIdentity": {"principalId": "thingcore"},
                        "arn": "arn:aws:s3:::uploads",
                    },
                    "object": {
                        "key": "images/red+flower%3D1.jpg",
                        "size": 3,
                        "eTag": "abc",
                        "sequencer": "0000000000000007",
                    },
                },
            }
        ]
    }


def test_filters_and_subscriber_ids() -> None:
    jpegs = BucketEvent("uploads", "images/", ".jpg")
    assert matches(jpegs, "images/a.jpg")
    assert matches(jpegs, "images/deep/a.jpg")
    assert not matches(jpegs, "images/a.png")
    assert not matches(jpegs, "docs/a.jpg")
    assert matches(BucketEvent("uploads"), "anything")
    assert subscriber_id("thumbs", jpegs) == subscriber_id("thumbs", BucketEvent(*vars_of(jpegs)))
    others = {
        subscriber_id("other", jpegs),
        subscriber_id("thumbs", BucketEvent("uploads", "images/", ".png")),
        subscriber_id("thumbs", BucketEvent("uploads", "images/.jpg", "")),
        subscriber_id("thumbs", BucketEvent("elsewhere", "images/", ".jpg")),
    }
    assert subscriber_id("thumbs", jpegs) not in others
    assert len(others) == 4


def vars_of(event: BucketEvent) -> tuple[str, str, str]:
    return (event.bucket, event.prefix, event.suffix)


# -- delivery ------------------------------------------------------------------------------------


async def test_objects_under_the_filters_invoke_the_function(local: Local, tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    write_function(tmp_path, "thumbs", RECORDER, out)
    event = BucketEvent("uploads", "images/", ".jpg")
    async with running(BucketSource("thumbs", event, local.context())) as source:
        put = local.buckets.put("uploads", "images/red flower.jpg", b"jpeg")
        local.buckets.put("uploads", "images/a.png", b"png")
        local.buckets.put("uploads", "docs/b.jpg", b"doc")
        local.buckets.put("elsewhere", "images/c.jpg", b"other bucket")
        local.buckets.put("uploads", "images/sub/d.jpg", b"last")
        await until(lambda: len(seen(out)) >= 2, "two invocations")
        await until(lambda: source.delivered == 2, "the second to finish")
    first, second = seen(out)
    [created, *_] = local.buckets.events().read(0, "uploads")
    record = first["event"]["Records"][0]
    assert first["event"] == notification(
        created, region="eu-west-1", configuration_id=source.subscriber
    )
    assert record["s3"]["object"] == {
        "key": "images/red+flower.jpg",
        "size": 4,
        "eTag": put.etag.strip('"'),
        "sequencer": created.sequencer,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["eventTime"])
    assert first["message_id"] == created.message_id
    # The non-matching objects were skipped, in order, and nothing else came.
    assert seen_keys(out) == ["images/red+flower.jpg", "images/sub/d.jpg"]
    assert local.buckets.events().cursor(source.subscriber) == 5
    assert source.dead_lettered == 0


async def test_events_are_delivered_in_order(local: Local, tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    write_function(tmp_path, "ordered", RECORDER, out)
    async with running(BucketSource("ordered", BucketEvent("inbox"), local.context())):
        for i in range(30):
            local.buckets.put("inbox", f"k{i % 3}", f"{i}".encode())
        await until(lambda: len(seen(out)) == 30, "thirty invocations")
    sizes = [s["event"]["Records"][0]["s3"]["object"]["eTag"] for s in seen(out)]
    expected = [e.etag.strip('"') for e in local.buckets.events().read(0, "inbox")]
    assert sizes == expected
    sequencers = [s["event"]["Records"][0]["s3"]["object"]["sequencer"] for s in seen(out)]
    assert sequencers == sorted(sequencers)


FAILS_ON_BAD = """
import json, os
from pathlib import Path

def handler(event, context):
    key = event["Records"][0]["s3"]["object"]["key"]
    with Path(os.environ["SEEN"]).open("a") as f:
        f.write(json.dumps({"key": key, "message_id": context.message_id}) + "\\n")
    if key.startswith("bad"):
        raise ValueError("cannot read " + key)
"""


async def test_a_failing_event_is_retried_then_dead_lettered(local: Local, tmp_path: Path) -> None:
    out = tmp_path / "tries.jsonl"
    write_function(tmp_path, "picky", FAILS_ON_BAD, out)
    # The dead-letter queue fails once too: the event is kept all the same.
    refusals = [TargetError("the queue file is locked", retryable=True)]

    def queues() -> QueueStore:
        if refusals:
            raise refusals.pop()
        return local.queues

    source = BucketSource("picky", BucketEvent("inbox"), local.context(queues=queues))
    async with running(source):
        local.buckets.put("inbox", "bad.txt", b"x")
        local.buckets.put("inbox", "good.txt", b"y")
        await until(lambda: source.delivered == 1, "the good event")
    [bad, _] = local.buckets.events().read(0, "inbox")
    tries = seen(out)
    assert [t["key"] for t in tries] == ["bad.txt"] * 3 + ["good.txt"]
    assert {t["message_id"] for t in tries[:3]} == {bad.message_id}
    [(message_id, body)] = local.dead_letters("picky-dlq")
    assert message_id == bad.message_id
    assert body["function"] == "picky"
    assert body["event"]["Records"][0]["s3"]["object"]["key"] == "bad.txt"
    assert "ValueError: cannot read bad.txt" in body["error"]
    assert "after 3 tries" in body["error"]
    assert (source.dead_lettered, source.errors) == (1, 1)
    assert local.buckets.events().cursor(source.subscriber) == 2


async def test_a_restart_resumes_after_the_cursor(local: Local, tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    write_function(tmp_path, "resumes", RECORDER, out)
    event = BucketEvent("inbox", prefix="k")
    async with running(BucketSource("resumes", event, local.context())) as first:
        local.buckets.put("inbox", "k1", b"1")
        local.buckets.put("inbox", "k2", b"2")
        await until(lambda: first.delivered == 2, "two events")
    # Written while no source runs, by a store of another process (the CLI, say).
    other = BucketStore(tmp_path / "buckets")
    other.put("inbox", "k3", b"3")
    other.put("inbox", "skipped", b"-")
    other.put("inbox", "k4", b"4")
    other.close()
    async with FunctionRunner(tmp_path / "functions", timeout=5) as runner:
        restarted = Local(tmp_path, runner)
        try:
            async with running(BucketSource("resumes", event, restarted.context())) as second:
                await until(lambda: second.delivered == 2, "the events written meanwhile")
                restarted.buckets.put("inbox", "k5", b"5")
                await until(lambda: second.delivered == 3, "a new event")
        finally:
            restarted.close()
    assert seen_keys(out) == ["k1", "k2", "k3", "k4", "k5"]
    assert len({s["message_id"] for s in seen(out)}) == 5


async def test_a_new_subscription_does_not_replay_old_objects(local: Local, tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    write_function(tmp_path, "early", RECORDER, out)
    write_function(tmp_path, "late", RECORDER, tmp_path / "late.jsonl")
    local.buckets.put("inbox", "before-any", b"x")
    async with running(BucketSource("early", BucketEvent("inbox"), local.context())) as early:
        local.buckets.put("inbox", "before-late", b"x")
        await until(lambda: early.delivered == 1, "the early subscriber")
        # The log still holds "before-late" for... nobody now, but a subscription made now
        # must start after it anyway, as S3 notifies only of objects created afterwards.
        late = BucketSource("late", BucketEvent("inbox"), local.context())
        async with running(late):
            local.buckets.put("inbox", "after", b"x")
            await until(lambda: late.delivered == 1, "the late subscriber")
            await until(lambda: early.delivered == 2, "the early one")
    assert seen_keys(out) == ["before-late", "after"]
    assert seen_keys(tmp_path / "late.jsonl") == ["after"]


BLOCKS_UNTIL_RELEASED = """
import json, os, time
from pathlib import Path

def handler(event, context):
    seen = Path(os.environ["SEEN"])
    with seen.open("a") as f:
        f.write(json.dumps({"start": context.message_id}) + "\\n")
    while not (seen.parent / "release").exists():
        time.sleep(0.01)
    with seen.open("a") as f:
        f.write(json.dumps({"done": context.message_id}) + "\\n")
"""


async def test_an_event_cancelled_mid_invocation_comes_again(local: Local, tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    write_function(tmp_path, "slow", BLOCKS_UNTIL_RELEASED, out)
    event = BucketEvent("inbox")
    async with running(BucketSource("slow", event, local.context())) as first:
        local.buckets.put("inbox", "k", b"x")
        await until(lambda: len(seen(out)) == 1, "the invocation to start")
    # Cancelled mid-invocation: the worker is killed and the cursor stays before the event.
    [created] = local.buckets.events().read(0, "inbox")
    assert local.buckets.events().cursor(first.subscriber) == created.seq - 1
    assert first.delivered == 0
    (tmp_path / "release").touch()
    async with running(BucketSource("slow", event, local.context())) as second:
        await until(lambda: second.delivered == 1, "the event again")
    assert seen(out) == [
        {"start": created.message_id},
        {"start": created.message_id},
        {"done": created.message_id},
    ]
    assert local.buckets.events().cursor(second.subscriber) == created.seq


async def test_a_failing_log_is_retried(local: Local, tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    write_function(tmp_path, "patient", RECORDER, out)
    failures = [TargetError("disk full", retryable=True) for _ in range(2)]

    def buckets() -> BucketStore:
        if failures:
            raise failures.pop()
        return local.buckets

    source = BucketSource("patient", BucketEvent("inbox"), local.context(buckets=buckets))
    task = asyncio.create_task(source.run())
    try:
        await until(lambda: source.errors == 2 and not failures, "two failures")
        await until(
            lambda: local.buckets.events().cursor(source.subscriber) is not None, "a subscription"
        )
        local.buckets.put("inbox", "k", b"x")
        await until(lambda: source.delivered == 1, "the event")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert seen_keys(out) == ["k"]


async def test_handled_events_are_pruned(local: Local, tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    write_function(tmp_path, "tidy", RECORDER, out)
    settings = TriggerSettings(
        poll_interval=0.02, backoff_initial=0.01, backoff_max=0.05, bucket_events_retention=3600
    )
    source = BucketSource("tidy", BucketEvent("inbox"), local.context(settings))
    events = local.buckets.events()
    # Pruning is every minute at most: shorten it for the test.
    with patched_prune_every(0.05):
        async with running(source):
            for i in range(3):
                local.buckets.put("inbox", f"k{i}", b"x")
            await until(lambda: source.delivered == 3, "three events")
            await until(lambda: events.read(0, "inbox") == [], "the handled events to go")
    assert events.end() == 3


@contextlib.contextmanager
def patched_prune_every(seconds: float) -> Iterator[None]:
    import rules.triggers.bucketed as module

    before = module.PRUNE_EVERY
    module.PRUNE_EVERY = seconds
    try:
        yield
    finally:
        module.PRUNE_EVERY = before


# -- handlers that write objects -------------------------------------------------------------------

THUMBNAILER = """
import os
from pathlib import Path
from urllib.parse import unquote_plus

from rules.local.buckets import BucketStore

def handler(event, context):
    store = BucketStore(Path(os.environ["THINGCORE_BUCKETS_DIR"]))
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        body, _ = store.get(bucket, key)
        store.put("thumbnails", "small/" + key, body[:4], content_type="image/jpeg")
"""


async def test_a_handler_writes_objects_that_trigger_another(tmp_path: Path) -> None:
    # The server's runner (from settings) gives every worker THINGCORE_BUCKETS_DIR; the
    # thumbnail's put, in the worker process, logs an event another function gets.
    out = tmp_path / "seen.jsonl"
    write_function(tmp_path, "thumbnail", THUMBNAILER, tmp_path / "unused")
    write_function(tmp_path, "indexer", RECORDER, out)
    runner = FunctionRunner.from_settings(LocalTargetSettings(), tmp_path)
    async with runner:
        local = Local(tmp_path, runner)
        try:
            ctx = local.context()
            uploads = BucketSource("thumbnail", BucketEvent("uploads", suffix=".jpg"), ctx)
            thumbs = BucketSource("indexer", BucketEvent("thumbnails"), ctx)
            async with running(uploads), running(thumbs):
                local.buckets.put("uploads", "cats/big cat.jpg", b"JPEGDATA")
                await until(lambda: thumbs.delivered == 1, "the thumbnail's event")
            assert local.buckets.get("thumbnails", "small/cats/big cat.jpg")[0] == b"JPEG"
        finally:
            local.close()
    assert seen_keys(out) == ["small/cats/big+cat.jpg"]
