"""``rules.triggers.queued``: a function invoked with batches of a local queue.

Real parts: a ``FunctionRunner`` whose handlers (written here under ``tmp_path``) record each
invocation in a JSON file, and a real ``QueueStore`` file with a short visibility timeout and
two receives before dead-lettering. Function timeouts are half a second, so a batch that fails
reappears after about 1.5 s (timeout plus ``VISIBILITY_MARGIN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from rules.config import TriggerSettings
from rules.local.buckets import BucketStore
from rules.local.functions import FunctionRunner
from rules.local.queues import SOURCE_ATTRIBUTE, QueueStore, SendItem, dead_letter_name
from rules.triggers.config import QueueEvent
from rules.triggers.context import TriggerContext
from rules.triggers.queued import QueueSource, batch_message_id, failed_items
from tests.rules.engine_support import until

TIMEOUT = 0.5
REGION = "eu-west-1"
ACCOUNT = "123456789012"

RECORDER = """
    import json
    import os
    import time

    OUT = os.environ["OUT"]


    def started(context):
        open(os.path.join(OUT, context.aws_request_id + ".started"), "w").close()


    def finish(event, context, started_at=None):
        data = {
            "records": event["Records"],
            "message_id": context.message_id,
            "request_id": context.aws_request_id,
            "started": started_at,
            "ended": time.time(),
        }
        path = os.path.join(OUT, context.aws_request_id)
        with open(path + ".tmp", "w") as file:
            json.dump(data, file)
        os.replace(path + ".tmp", path + ".json")
"""
"""``_record.py``, a helper module the handlers import: ``finish`` writes what the
invocation got to ``<OUT>/<request id>.json``."""


@pytest.fixture
def functions_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "functions"
    folder.mkdir()
    (folder / "_record.py").write_text(textwrap.dedent(RECORDER), encoding="utf-8")
    return folder


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    with QueueStore(tmp_path / "queues.sqlite", visibility_timeout=0.1, max_receives=2) as opened:
        yield opened


@pytest.fixture
async def runner(functions_dir: Path) -> AsyncIterator[FunctionRunner]:
    async with FunctionRunner(functions_dir, timeout=TIMEOUT, concurrency=4) as running:
        yield running


def no_buckets() -> BucketStore:
    raise AssertionError("a queue source uses no bucket")


@pytest.fixture
def ctx(runner: FunctionRunner, store: QueueStore, tmp_path: Path) -> TriggerContext:
    return TriggerContext(
        functions=runner,
        queues=lambda: store,
        buckets=no_buckets,
        settings=TriggerSettings(poll_interval=0.02),
        data_dir=tmp_path,
        region=REGION,
        account_id=ACCOUNT,
    )


def define(
    functions_dir: Path,
    out: Path,
    name: str,
    source: str,
    *,
    timeout: float = TIMEOUT,
    concurrency: int = 4,
) -> None:
    """Function ``name``: ``source``, with a sidecar giving its timeout, concurrency and OUT."""
    (functions_dir / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    (functions_dir / f"{name}.toml").write_text(
        f"timeout = {timeout}\nconcurrency = {concurrency}\n\n"
        f"[environment]\nOUT = {json.dumps(str(out))}\n",
        encoding="utf-8",
    )


def calls(out: Path) -> list[dict[str, Any]]:
    """What each finished invocation got, in the order they ended."""
    found = [json.loads(path.read_text()) for path in out.glob("*.json")]
    return sorted(found, key=lambda call: call["ended"])


def received(out: Path) -> list[tuple[str, str]]:
    """(messageId, ApproximateReceiveCount) of every record handed to the function."""
    return [
        (r["messageId"], r["attributes"]["ApproximateReceiveCount"])
        for call in calls(out)
        for r in call["records"]
    ]


def send(store: QueueStore, queue: str, bodies: dict[str, bytes]) -> None:
    store.send_batch([SendItem(queue, body, message_id) for message_id, body in bodies.items()])


@contextlib.asynccontextmanager
async def running(source: QueueSource) -> AsyncIterator[asyncio.Task[None]]:
    """``source.run()`` as a task, cancelled and awaited on the way out; it must not end
    (nor raise) by itself."""
    task = asyncio.create_task(source.run())
    try:
        yield task
    finally:
        if task.done():
            task.result()
            raise AssertionError("the source ended by itself")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


RECORD = """
    from _record import finish


    def handler(event, context):
        finish(event, context)
"""


# -- batches -------------------------------------------------------------------------------------


async def test_messages_are_handled_in_batches_each_once_then_deleted(
    ctx: TriggerContext, store: QueueStore, functions_dir: Path, out: Path, name: str
) -> None:
    define(functions_dir, out, "agg", RECORD)
    ids = [f"m-{n:02}" for n in range(25)]
    send(store, name, {i: i.encode() for i in ids})

    async with running(QueueSource("agg", QueueEvent(name, batch_size=10), ctx)):
        await until(lambda: store.depth(name) == 0, "every message handled and deleted")

    batches = [[r["messageId"] for r in call["records"]] for call in calls(out)]
    assert sorted(len(batch) for batch in batches) == [5, 10, 10]
    assert sorted(i for batch in batches for i in batch) == ids  # each exactly once
    assert store.peek(name) == []


async def test_records_have_the_shape_lambda_gives_sqs_messages(
    ctx: TriggerContext, store: QueueStore, functions_dir: Path, out: Path, name: str
) -> None:
    define(functions_dir, out, "shape", RECORD)
    body = b"caf\xc3\xa9 \xff"  # not UTF-8 at the end: SQS bodies are text
    store.send(name, body, message_id="order-1", attributes={"kind": "order"})
    [waiting] = store.peek(name)

    async with running(QueueSource("shape", QueueEvent(name, batch_size=5), ctx)):
        await until(lambda: store.depth(name) == 0, "the message handled")

    [call] = calls(out)
    [record] = call["records"]
    handle = record.pop("receiptHandle")
    assert isinstance(handle, str)
    assert handle
    attributes = record.pop("attributes")
    assert attributes["ApproximateReceiveCount"] == "1"
    assert attributes["SentTimestamp"] == str(int(waiting.sent_at * 1000))
    assert int(attributes["ApproximateFirstReceiveTimestamp"]) >= int(attributes["SentTimestamp"])
    assert record == {
        "messageId": "order-1",
        "body": "café \ufffd",
        "messageAttributes": {
            "kind": {
                "stringValue": "order",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": hashlib.md5(body).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
        "awsRegion": REGION,
    }
    # A batch of one is delivered under the message's own id (``@idempotent`` keys on it).
    assert call["message_id"] == "order-1"
    assert call["request_id"] != "order-1"


async def test_a_batch_window_gathers_a_trickle_into_one_invocation(
    ctx: TriggerContext,
    store: QueueStore,
    functions_dir: Path,
    out: Path,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    define(functions_dir, out, "fanin", RECORD)
    polls = 0

    def counting() -> QueueStore:
        nonlocal polls
        polls += 1
        return store

    ctx.queues = counting
    source = QueueSource("fanin", QueueEvent(name, batch_size=10, batch_window=1.5), ctx)
    async with running(source) as task:
        # The queue does not exist yet: the source polls it as an empty one.
        await until(lambda: polls >= 3, "the source polling a queue not made yet")
        assert not task.done()
        ids = [f"t-{n}" for n in range(5)]
        for i in ids:  # sent over 0.2 s
            store.send(name, i.encode(), message_id=i)
            await asyncio.sleep(0.05)
        await until(lambda: store.depth(name) == 0, "the batch handled")

    [call] = calls(out)
    assert [r["messageId"] for r in call["records"]] == ids
    assert call["message_id"] == batch_message_id(ids)
    # A queue not made yet is an empty one, not a problem to report.
    assert [r.message for r in caplog.records if r.name == "rules.triggers.queued"] == []


# -- failures ------------------------------------------------------------------------------------


async def test_partial_batch_failure_leaves_only_the_failed_messages(
    ctx: TriggerContext, store: QueueStore, functions_dir: Path, out: Path, name: str
) -> None:
    define(
        functions_dir,
        out,
        "partial",
        """
        from _record import finish


        def handler(event, context):
            finish(event, context)
            return {
                "batchItemFailures": [
                    {"itemIdentifier": r["messageId"]}
                    for r in event["Records"]
                    if r["body"] == "bad" and r["attributes"]["ApproximateReceiveCount"] == "1"
                ]
            }
        """,
    )
    send(store, name, {"ok-1": b"ok", "bad-1": b"bad", "ok-2": b"ok", "bad-2": b"bad"})

    async with running(QueueSource("partial", QueueEvent(name, batch_size=10), ctx)):
        await until(lambda: store.depth(name) == 0, "the failed messages handled again")

    first, *again = calls(out)
    assert sorted(r["messageId"] for r in first["records"]) == ["bad-1", "bad-2", "ok-1", "ok-2"]
    assert sorted(received(out)[4:]) == [("bad-1", "2"), ("bad-2", "2")]
    # They came back after their visibility timeout (at least the function's timeout + 1 s),
    # not at once, and still say when they were first received.
    firsts = {
        r["messageId"]: int(r["attributes"]["ApproximateFirstReceiveTimestamp"])
        for r in first["records"]
    }
    for call in again:
        for r in call["records"]:
            assert (
                int(r["attributes"]["ApproximateFirstReceiveTimestamp"]) == firsts[r["messageId"]]
            )
            assert call["ended"] >= firsts[r["messageId"]] / 1000 + TIMEOUT + 0.8


async def test_a_batch_that_keeps_failing_goes_to_the_dead_letter_queue(
    ctx: TriggerContext, store: QueueStore, functions_dir: Path, out: Path, name: str
) -> None:
    define(
        functions_dir,
        out,
        "broken",
        """
        from _record import finish


        def handler(event, context):
            finish(event, context)
            raise ValueError("cannot handle this")
        """,
    )
    ids = ["p-1", "p-2", "p-3"]
    send(store, name, {i: b"poison" for i in ids})
    dlq = dead_letter_name(name)

    source = QueueSource("broken", QueueEvent(name, batch_size=10), ctx)
    async with running(source):
        await until(
            lambda: store.depth(name) == 0 and store.depth(dlq) == 3,
            "the messages dead-lettered",
            within=20,
        )

    moved = store.peek(dlq)
    assert sorted(m.message_id for m in moved) == ids
    assert {m.attributes[SOURCE_ATTRIBUTE] for m in moved} == {name}
    # Each was handed to the function max_receives (2) times, and nothing was deleted.
    assert sorted(received(out)) == sorted([(i, "1") for i in ids] + [(i, "2") for i in ids])
    assert source.failures == 2


# -- load leveling -------------------------------------------------------------------------------


async def test_concurrency_caps_the_batches_in_flight(
    ctx: TriggerContext, store: QueueStore, functions_dir: Path, out: Path, name: str
) -> None:
    define(
        functions_dir,
        out,
        "slow",
        """
        import time

        from _record import finish


        def handler(event, context):
            started = time.time()
            time.sleep(0.3)
            finish(event, context, started)
        """,
        timeout=5.0,
        concurrency=2,
    )
    send(store, name, {f"s-{n}": b"work" for n in range(6)})
    most_in_flight = 0

    def done() -> bool:
        nonlocal most_in_flight
        most_in_flight = max(most_in_flight, store.info(name).in_flight)
        return store.depth(name) == 0

    async with running(QueueSource("slow", QueueEvent(name, batch_size=1), ctx)):
        await until(done, "every message handled", within=20)

    # The queue held the burst: never more received than the function may run at once.
    assert most_in_flight <= 2
    changes = sorted(
        [(call["started"], 1) for call in calls(out)] + [(call["ended"], -1) for call in calls(out)]
    )
    overlap = most = 0
    for _, step in changes:
        overlap += step
        most = max(most, overlap)
    assert most == 2
    assert len(calls(out)) == 6


async def test_a_batch_waiting_for_a_busy_function_stays_hidden(
    ctx: TriggerContext,
    runner: FunctionRunner,
    store: QueueStore,
    functions_dir: Path,
    out: Path,
    name: str,
) -> None:
    # Other invocations (a rule's, say) hold the function's one worker for longer than the
    # batch's visibility timeout (timeout + 1 s): the source keeps its batch hidden meanwhile.
    define(
        functions_dir,
        out,
        "shared",
        """
        import time

        from _record import finish, started


        def handler(event, context):
            if "sleep" in event:
                started(context)
                time.sleep(event["sleep"])
                return None
            finish(event, context)
        """,
        concurrency=1,
    )
    others = [
        asyncio.create_task(runner.invoke("shared", {"sleep": TIMEOUT - 0.1})) for _ in range(6)
    ]
    await until(lambda: any(out.glob("*.started")), "the function busy")
    store.send(name, b"waits", message_id="w-1")
    hidden_since: float | None = None
    reappeared = False

    def handled() -> bool:
        nonlocal hidden_since, reappeared
        counts = store.info(name)
        if counts.in_flight and hidden_since is None:
            hidden_since = asyncio.get_running_loop().time()
        reappeared |= hidden_since is not None and counts.visible > 0
        return store.depth(name) == 0

    async with running(QueueSource("shared", QueueEvent(name, batch_size=10), ctx)):
        await until(handled, "the batch handled", within=20)
    await asyncio.gather(*others)

    assert not reappeared
    assert received(out) == [("w-1", "1")]
    [call] = calls(out)
    first_received = int(call["records"][0]["attributes"]["ApproximateFirstReceiveTimestamp"])
    assert call["ended"] - first_received / 1000 > TIMEOUT + 1.0  # it did wait that long


# -- cancellation --------------------------------------------------------------------------------


async def test_a_source_cancelled_mid_invocation_gives_its_messages_back(
    ctx: TriggerContext, store: QueueStore, functions_dir: Path, out: Path, name: str
) -> None:
    define(
        functions_dir,
        out,
        "stuck",
        """
        import time

        from _record import started


        def handler(event, context):
            started(context)
            time.sleep(30)
        """,
        timeout=30.0,
    )
    ids = ["c-1", "c-2", "c-3"]
    send(store, name, {i: b"job" for i in ids})

    async with running(QueueSource("stuck", QueueEvent(name, batch_size=10), ctx)):
        await until(lambda: any(out.glob("*.started")), "the invocation started")

    # Not deleted, and visible again at once (not after the 31 s visibility timeout).
    assert store.depth(name) == 3
    back = store.peek(name)
    assert sorted(m.message_id for m in back) == ids
    assert {m.receive_count for m in back} == {1}

    define(functions_dir, out, "stuck", RECORD)  # fixed: the next source handles them
    async with running(QueueSource("stuck", QueueEvent(name, batch_size=10), ctx)):
        await until(lambda: store.depth(name) == 0, "the messages handled after all")
    assert sorted(received(out)) == [(i, "2") for i in ids]


# -- the pure parts ------------------------------------------------------------------------------


def test_partial_batch_responses_are_read_as_lambda_reads_them() -> None:
    ids = ["a", "b", "c"]
    successes: tuple[Any, ...] = (
        None,
        "done",
        {},
        {"batchItemFailures": None},
        {"batchItemFailures": []},
    )
    for success in successes:
        assert failed_items(success, ids) == set()
    assert failed_items({"batchItemFailures": [{"itemIdentifier": "b"}]}, ids) == {"b"}
    for invalid in (
        {"batchItemFailures": "b"},
        {"batchItemFailures": ["b"]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"id": "b"}]},
        {"batchItemFailures": [{"itemIdentifier": "z"}]},
    ):
        assert failed_items(invalid, ids) is None


def test_a_batch_is_delivered_under_an_id_of_exactly_its_messages() -> None:
    assert batch_message_id(["only"]) == "only"
    assert batch_message_id(["a", "b"]) == batch_message_id(["a", "b"])
    assert batch_message_id(["a", "b"]) != batch_message_id(["a", "b", "c"])
    assert batch_message_id(["a", "b"]) != batch_message_id(["b", "a"])
