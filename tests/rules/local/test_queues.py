"""Local queues (``rules.local.queues``): real SQLite files under ``tmp_path``.

Time-dependent behaviour (visibility timeouts, dead-lettering, ages) runs on a fake clock;
concurrency runs on real threads and real processes sharing one file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rules.config import LocalTargetSettings
from rules.local.idempotency import IdempotencyStore
from rules.local.queues import (
    READY,
    SOURCE_ATTRIBUTE,
    QueueConsumer,
    QueueError,
    QueueInfo,
    QueueMessage,
    QueueStore,
    SendItem,
    dead_letter_name,
)

REPO = Path(__file__).resolve().parents[3]


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "queues.sqlite"


@pytest.fixture
def store(path: Path, clock: FakeClock) -> Iterator[QueueStore]:
    with QueueStore(path, visibility_timeout=30, max_receives=3, clock=clock) as opened:
        yield opened


def ids(messages: list[QueueMessage]) -> list[str]:
    return [m.message_id for m in messages]


def items(queue: str, count: int, *, prefix: str = "m", priority: int = 0) -> list[SendItem]:
    return [SendItem(queue, f"body-{i}".encode(), f"{prefix}{i}", priority) for i in range(count)]


# -- send and receive --------------------------------------------------------------------------


def test_receive_takes_the_highest_priority_first_then_the_oldest(
    store: QueueStore, clock: FakeClock
) -> None:
    for message_id, priority in [
        ("low-1", 0),
        ("mid-1", 5),
        ("mid-2", 5),
        ("top", 9),
        ("low-2", 0),
    ]:
        store.send("orders", message_id.encode(), message_id=message_id, priority=priority)
        clock.advance(1)

    received = store.receive("orders", max_messages=10)

    assert ids(received) == ["top", "mid-1", "mid-2", "low-1", "low-2"]
    assert [m.body for m in received] == [b"top", b"mid-1", b"mid-2", b"low-1", b"low-2"]
    assert all(m.receive_count == 1 and m.queue == "orders" for m in received)
    handles = {m.receipt_handle for m in received}
    assert None not in handles
    assert len(handles) == 5
    assert received[3].sent_at == 1_000_000.0


def test_receive_returns_at_most_max_messages_and_nothing_when_empty(store: QueueStore) -> None:
    store.send_batch(items("orders", 5))
    assert ids(store.receive("orders", max_messages=2)) == ["m0", "m1"]
    assert ids(store.receive("orders")) == ["m2"]
    assert ids(store.receive("orders", max_messages=10)) == ["m3", "m4"]
    assert store.receive("orders", max_messages=10) == []


def test_a_message_id_already_in_the_queue_is_not_added_again(store: QueueStore) -> None:
    first = [
        SendItem("orders", b"a", "id-a"),
        SendItem("orders", b"b", "id-b"),
        SendItem("orders", b"a again", "id-a"),  # a duplicate within the batch
    ]
    assert store.send_batch(first) == 2
    # A retried batch adds only what is new; the id is per queue.
    again = [*first, SendItem("orders", b"c", "id-c"), SendItem("other", b"a", "id-a")]
    assert store.send_batch(again) == 2
    assert store.depth("orders") == 3

    [message] = store.receive("orders")
    assert message.body == b"a"  # the first one sent won
    assert store.send("orders", b"in flight", message_id="id-a") == "id-a"
    assert store.depth("orders") == 3  # still in flight: not added

    assert message.receipt_handle is not None
    assert store.delete("orders", message.receipt_handle)
    store.send("orders", b"after delete", message_id="id-a")
    assert store.depth("orders") == 3  # gone from the queue: the id may come back


def test_send_makes_a_uuid_when_no_id_is_given(store: QueueStore) -> None:
    first = store.send("orders", b"x", attributes={"source": "test"})
    second = store.send("orders", b"x")
    assert first != second
    assert len(first) == 36
    assert first.count("-") == 4
    [peeked, _] = store.peek("orders")
    assert peeked.message_id == first
    assert peeked.attributes == {"source": "test"}


def test_messages_survive_closing_and_reopening_the_file(path: Path, clock: FakeClock) -> None:
    with QueueStore(path, clock=clock) as first:
        first.send_batch(items("orders", 3, priority=4))
    with QueueStore(path, clock=clock) as second:
        received = second.receive("orders", max_messages=5)
    assert ids(received) == ["m0", "m1", "m2"]
    assert {m.priority for m in received} == {4}


# -- visibility ------------------------------------------------------------------------------------


def test_a_received_message_is_hidden_until_its_visibility_timeout_ends(
    store: QueueStore, clock: FakeClock
) -> None:
    store.send("orders", b"x", message_id="one")
    [first] = store.receive("orders")

    assert store.receive("orders") == []
    assert store.peek("orders") == []
    [info] = store.queues()
    assert (info.visible, info.in_flight) == (0, 1)

    clock.advance(29.9)
    assert store.receive("orders") == []
    clock.advance(0.1)
    [second] = store.receive("orders")

    assert second.message_id == "one"
    assert second.receive_count == 2
    assert second.receipt_handle != first.receipt_handle
    assert first.receipt_handle is not None
    assert second.receipt_handle is not None
    assert store.delete("orders", first.receipt_handle) is False  # stale: received again
    assert store.delete("orders", second.receipt_handle) is True
    assert store.delete("orders", second.receipt_handle) is False  # already deleted
    assert store.depth("orders") == 0


def test_a_handle_stays_good_after_its_timeout_until_another_receive(
    store: QueueStore, clock: FakeClock
) -> None:
    store.send("orders", b"x", message_id="one")
    store.send("orders", b"y", message_id="two", priority=1)
    [two] = store.receive("orders")
    clock.advance(31)
    # "two" is visible again but nobody took it: its last receiver may still delete it (SQS).
    [peeked, _] = store.peek("orders")
    assert peeked.message_id == "two"
    assert two.receipt_handle is not None
    assert store.delete("orders", two.receipt_handle) is True
    assert ids(store.receive("orders", max_messages=5)) == ["one"]


def test_receive_may_set_its_own_visibility_timeout(store: QueueStore, clock: FakeClock) -> None:
    store.send("orders", b"x")
    store.receive("orders", visibility_timeout=2)
    clock.advance(2)
    assert len(store.receive("orders", visibility_timeout=0)) == 1
    # 0 hides nothing: visible again at once.
    assert len(store.receive("orders")) == 1


def test_change_visibility_extends_or_ends_the_hiding(store: QueueStore, clock: FakeClock) -> None:
    store.send("orders", b"x")
    [message] = store.receive("orders")
    handle = message.receipt_handle
    assert handle is not None

    assert store.change_visibility("orders", handle, 100)
    clock.advance(60)
    assert store.receive("orders") == []  # 30 s would have ended; 100 s from the change not
    assert store.change_visibility("orders", handle, 0)
    [again] = store.receive("orders")
    assert again.receive_count == 2
    assert store.change_visibility("orders", handle, 10) is False  # stale now
    assert store.change_visibility("other", str(again.receipt_handle), 10) is False


def test_a_malformed_receipt_handle_is_an_error(store: QueueStore) -> None:
    store.send("orders", b"x")
    with pytest.raises(QueueError, match="not a receipt handle"):
        store.delete("orders", "nonsense")


# -- dead letters ----------------------------------------------------------------------------------


def test_a_message_received_max_receives_times_moves_to_the_dead_letter_queue(
    store: QueueStore, clock: FakeClock
) -> None:
    store.send("orders", b"poison", message_id="bad", priority=7, attributes={"k": "v"})
    store.send("orders", b"fine", message_id="good")
    for attempt in (1, 2, 3):
        [message] = store.receive("orders")
        assert (message.message_id, message.receive_count) == ("bad", attempt)
        clock.advance(30)

    # The fourth receive moves "bad" instead of returning it, and takes the next one.
    assert ids(store.receive("orders")) == ["good"]
    assert store.depth("orders") == 1
    [dead] = store.peek("orders-dlq")
    assert dead.message_id == "bad"
    assert dead.body == b"poison"
    assert dead.priority == 7
    assert dead.attributes == {"k": "v", SOURCE_ATTRIBUTE: "orders"}
    assert dead.receive_count == 0
    assert dead.sent_at == 1_000_000.0

    infos = {info.name: info for info in store.queues()}
    assert infos["orders"].dead_letter == "orders-dlq"
    assert infos["orders-dlq"].dead_letter == ""
    assert infos["orders-dlq"].as_dict()["deadLetterQueue"] is None


def test_messages_of_a_dead_letter_queue_are_never_moved_further(
    store: QueueStore, clock: FakeClock
) -> None:
    store.send("rule-dlq", b"failed delivery", message_id="d1")
    for attempt in range(1, 6):
        [message] = store.receive("rule-dlq")
        assert message.receive_count == attempt
        clock.advance(30)
    assert store.depth("rule-dlq") == 1
    assert [i.name for i in store.queues()] == ["rule-dlq"]


def test_peek_leaves_out_what_the_next_receive_would_dead_letter(
    store: QueueStore, clock: FakeClock
) -> None:
    store.send("orders", b"x", message_id="bad")
    for _ in range(3):
        store.receive("orders")
        clock.advance(30)
    assert store.peek("orders") == []
    [info] = store.queues()  # counted where it still lives
    assert (info.visible, info.in_flight) == (1, 0)


def test_a_long_queue_name_still_has_a_valid_dead_letter_name() -> None:
    name = "q" * 160
    assert len(dead_letter_name(name)) == 160
    assert dead_letter_name(name).endswith("-dlq")
    assert dead_letter_name("orders") == "orders-dlq"


# -- peek, purge, listing --------------------------------------------------------------------------


def test_peek_shows_what_receive_would_take_and_changes_nothing(
    store: QueueStore, clock: FakeClock
) -> None:
    store.send_batch([*items("orders", 3), SendItem("orders", b"urgent", "u", 9)])
    [taken] = store.receive("orders")  # "u", in flight
    clock.advance(1)

    peeked = store.peek("orders", limit=10)
    assert ids(peeked) == ["m0", "m1", "m2"]
    assert all(m.receipt_handle is None and m.receive_count == 0 for m in peeked)
    assert store.peek("orders", limit=2) == peeked[:2]

    clock.advance(30)  # "u" is visible again and first in line
    assert ids(store.peek("orders", limit=2)) == ["u", "m0"]
    assert store.peek("orders")[0].receive_count == 1
    assert ids(store.receive("orders", max_messages=4)) == ["u", "m0", "m1", "m2"]
    assert taken.message_id == "u"


def test_purge_deletes_visible_and_in_flight_messages(store: QueueStore) -> None:
    store.send_batch([*items("orders", 4), *items("other", 2)])
    store.receive("orders")
    assert store.purge("orders") == 4
    assert store.depth("orders") == 0
    assert store.depth("other") == 2
    assert store.purge("orders") == 0  # the queue itself stays
    assert [i.name for i in store.queues()] == ["orders", "other"]


def test_queues_lists_every_queue_with_its_counts(store: QueueStore, clock: FakeClock) -> None:
    assert store.queues() == []
    store.send_batch(items("b-queue", 3))
    clock.advance(10)
    store.send_batch(items("a-queue", 1))
    store.receive("b-queue", max_messages=2)
    store.purge("a-queue")
    clock.advance(5)

    assert store.queues() == [
        QueueInfo("a-queue", visible=0, in_flight=0, dead_letter="a-queue-dlq", oldest_age=None),
        QueueInfo("b-queue", visible=1, in_flight=2, dead_letter="b-queue-dlq", oldest_age=15.0),
    ]
    assert store.info("b-queue").as_dict() == {
        "name": "b-queue",
        "visible": 1,
        "inFlight": 2,
        "deadLetterQueue": "b-queue-dlq",
        "oldestAge": 15.0,
    }
    assert store.depth("b-queue") == 3
    assert store.depth("never-sent") == 0


def test_from_settings_uses_the_settings_path_and_timeouts(tmp_path: Path) -> None:
    settings = LocalTargetSettings(queue_visibility_timeout=0, queue_max_receives=1)
    with QueueStore.from_settings(settings, tmp_path / "var") as store:
        assert store.path == tmp_path / "var" / "queues.sqlite"
        store.send("orders", b"x")
        store.receive("orders")
        # Visibility 0 and one receive allowed: the next receive dead-letters it.
        assert store.receive("orders") == []
        assert store.depth("orders-dlq") == 1
    assert (tmp_path / "var" / "queues.sqlite").exists()


def test_receive_reads_an_index_range_without_sorting(store: QueueStore, path: Path) -> None:
    store.send_batch(items("orders", 2000, priority=3))
    db = sqlite3.connect(path)
    try:
        plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {READY}", ("orders", 10)))
    finally:
        db.close()
    assert "messages_ready" in plan
    assert "TEMP B-TREE" not in plan


# -- batches ---------------------------------------------------------------------------------------


def test_a_batch_of_ten_thousand_is_one_call(store: QueueStore) -> None:
    batch = [
        SendItem("bulk", f"{i}".encode(), f"b{i}", priority=9 if i == 9_999 else 0)
        for i in range(10_000)
    ]
    assert store.send_batch(batch) == 10_000
    assert store.send_batch(batch) == 0
    assert store.depth("bulk") == 10_000
    assert ids(store.receive("bulk", max_messages=3)) == ["b9999", "b0", "b1"]


def test_a_batch_that_fails_midway_leaves_nothing(store: QueueStore, path: Path) -> None:
    # A trigger refuses one row in the middle of the batch, inside SQLite: the whole
    # transaction must roll back, the queue's creation included.
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.message_id = 'm5000' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    db.commit()
    db.close()

    with pytest.raises(QueueError, match="refused by the test") as raised:
        store.send_batch(items("bulk", 10_000))
    assert raised.value.retryable is False
    assert store.depth("bulk") == 0
    assert store.queues() == []
    # The store is usable afterwards.
    assert store.send_batch(items("bulk", 3)) == 3


def test_invalid_items_are_refused_when_made_so_a_batch_never_starts() -> None:
    with pytest.raises(QueueError, match="priority must be from 0 to 9, not 10"):
        [*items("bulk", 10), SendItem("bulk", b"x", "bad", priority=10)]
    with pytest.raises(QueueError, match="body must be bytes"):
        SendItem("bulk", "text", "id")  # type: ignore[arg-type]
    with pytest.raises(QueueError, match="attribute 'n' must be a string"):
        SendItem("bulk", b"x", "id", attributes={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(QueueError, match="message id must be a string of 1 to 512"):
        SendItem("bulk", b"x", "")
    assert SendItem("bulk", bytearray(b"x"), "id").body == b"x"  # type: ignore[arg-type]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "has space", "dot.ted", "q" * 161, "ünicode", "a/b"])
def test_invalid_queue_names_are_refused_with_the_rule(store: QueueStore, name: str) -> None:
    for call in (
        lambda: store.send(name, b"x"),
        lambda: store.receive(name),
        lambda: store.peek(name),
        lambda: store.depth(name),
    ):
        with pytest.raises(QueueError, match="use 1 to 160 letters, digits, '-' or '_'") as raised:
            call()
        assert raised.value.retryable is False


@pytest.mark.parametrize("priority", [-1, 10, True, 1.5])
def test_priorities_outside_0_to_9_are_refused(store: QueueStore, priority: object) -> None:
    with pytest.raises(QueueError, match="priority must be"):
        store.send("orders", b"x", priority=priority)  # type: ignore[arg-type]
    assert store.queues() == []


def test_an_unknown_queue_names_the_queues_there_are(store: QueueStore) -> None:
    with pytest.raises(QueueError, match="^no queue named ghost; there are no queues yet$"):
        store.peek("ghost")
    store.send("b", b"x")
    store.send("a", b"x")
    for call in (store.peek, store.receive, store.purge, store.info):
        with pytest.raises(QueueError, match="^no queue named ghost; queues: a, b$") as raised:
            call("ghost")
        assert raised.value.retryable is False


def test_bad_arguments_are_refused(store: QueueStore) -> None:
    store.send("orders", b"x")
    with pytest.raises(QueueError, match="max_messages must be an integer from 1 to 1000"):
        store.receive("orders", max_messages=0)
    with pytest.raises(QueueError, match="visibility_timeout must not be negative"):
        store.receive("orders", visibility_timeout=-1)
    with pytest.raises(QueueError, match="limit must be an integer from 1 to 1000"):
        store.peek("orders", limit=1001)
    assert store.depth("orders") == 1


def test_a_database_locked_beyond_the_busy_timeout_is_retryable(path: Path) -> None:
    with QueueStore(path, busy_timeout=0.1) as store:
        store.send("orders", b"x")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(QueueError, match="locked by another process") as raised:
                store.send("orders", b"y")
            assert raised.value.retryable is True
            # Readers are not blocked by a writer (WAL).
            assert store.depth("orders") == 1
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        store.send("orders", b"y")
        assert store.depth("orders") == 2


def test_a_file_that_cannot_be_made_is_retryable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(QueueError, match="cannot open the queue database") as raised:
        QueueStore(blocker / "queues.sqlite")
    assert raised.value.retryable is True


def test_a_file_that_is_not_a_database_is_not_retryable(path: Path) -> None:
    path.write_bytes(b"this is not SQLite " * 100)
    with pytest.raises(QueueError, match="cannot be used") as raised:
        QueueStore(path)
    assert raised.value.retryable is False


def test_a_closed_store_refuses_work(path: Path) -> None:
    store = QueueStore(path)
    store.close()
    store.close()
    with pytest.raises(QueueError, match="is closed"):
        store.send("orders", b"x")


# -- concurrency -------------------------------------------------------------------------------


WORKER = r"""
import json, sys, time
from pathlib import Path
from rules.local.queues import QueueStore

store = QueueStore(Path(sys.argv[1]), visibility_timeout=60)
print("ready", flush=True)
sys.stdin.readline()  # start together
got, batch = [], int(sys.argv[2])
while messages := store.receive("work", max_messages=batch):
    got.extend(m.message_id for m in messages)
    time.sleep(0.001)  # handling them, outside the lock (SQLite's lock is not fair)
store.close()
print(json.dumps(got), flush=True)
"""


def test_two_processes_never_receive_the_same_message(store: QueueStore, path: Path) -> None:
    store.send_batch(items("work", 600))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), batch],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for batch in ("1", "3")
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=30)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [w.returncode for w in workers] == [0, 0]
    first, second = (json.loads(out) for out in outputs)
    assert len(first) == len(set(first))
    assert len(second) == len(set(second))
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == {f"m{i}" for i in range(600)}
    assert first and second, (len(first), len(second))  # both took part
    [info] = store.queues()
    assert (info.visible, info.in_flight) == (0, 600)


def test_threads_sharing_one_store_never_receive_the_same_message(path: Path) -> None:
    with QueueStore(path) as store:
        store.send_batch(items("work", 400))
        got: list[list[str]] = [[] for _ in range(4)]
        start = threading.Barrier(4)

        def take(mine: list[str]) -> None:
            start.wait(timeout=10)
            while messages := store.receive("work", max_messages=2):
                mine.extend(ids(messages))

        threads = [threading.Thread(target=take, args=(mine,)) for mine in got]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        every = [message_id for mine in got for message_id in mine]
        assert len(every) == len(set(every)) == 400


# -- the consumer ----------------------------------------------------------------------------------


def test_poll_handles_and_deletes_each_message(store: QueueStore) -> None:
    store.send_batch(items("orders", 3))
    seen: list[bytes] = []
    consumer = QueueConsumer(store, "orders")
    assert consumer.poll(lambda m: seen.append(m.body), max_messages=2) == 2
    assert consumer.poll(lambda m: seen.append(m.body), max_messages=2) == 1
    assert consumer.poll(lambda m: seen.append(m.body)) == 0
    assert seen == [b"body-0", b"body-1", b"body-2"]
    assert store.depth("orders") == 0


def test_a_handler_that_raises_leaves_the_message_to_reappear(
    store: QueueStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store.send("orders", b"x", message_id="flaky")
    calls: list[int] = []

    def handler(message: QueueMessage) -> None:
        calls.append(message.receive_count)
        if len(calls) == 1:
            raise RuntimeError("downstream is down")

    consumer = QueueConsumer(store, "orders", visibility_timeout=5)
    with caplog.at_level(logging.ERROR, logger="rules.local.queues"):
        assert consumer.poll(handler) == 0
    assert consumer.failures == 1
    assert "handler failed on message flaky of queue orders" in caplog.text
    assert store.depth("orders") == 1
    assert consumer.poll(handler) == 0  # hidden for its 5 s
    clock.advance(5)
    assert consumer.poll(handler) == 1
    assert calls == [1, 2]
    assert store.depth("orders") == 0


def test_with_idempotency_a_processed_id_is_deleted_without_the_handler(
    store: QueueStore, tmp_path: Path
) -> None:
    with IdempotencyStore(tmp_path / "seen.sqlite") as seen:
        consumer = QueueConsumer(store, "orders", idempotency=seen, consumer="billing")
        handled: list[str] = []
        store.send("orders", b"charge 5", message_id="order-1")
        assert consumer.poll(lambda m: handled.append(m.message_id)) == 1
        assert seen.seen("billing", "order-1")

        # The producer sends it again (a retried batch after the first copy was deleted).
        store.send("orders", b"charge 5", message_id="order-1")
        store.send("orders", b"charge 7", message_id="order-2")
        assert consumer.poll(lambda m: handled.append(m.message_id)) == 1
        assert handled == ["order-1", "order-2"]
        assert consumer.duplicates == 1
        assert store.depth("orders") == 0

        # Another consumer keeps its own record.
        store.send("orders", b"charge 5", message_id="order-1")
        other = QueueConsumer(store, "orders", idempotency=seen, consumer="audit")
        assert other.poll(lambda m: handled.append(m.message_id)) == 1
        assert handled == ["order-1", "order-2", "order-1"]


def test_run_polls_until_stopped(store: QueueStore) -> None:
    store.send_batch(items("orders", 5))
    stop = threading.Event()
    handled: list[str] = []

    def handler(message: QueueMessage) -> None:
        handled.append(message.message_id)
        if len(handled) == 7:
            stop.set()

    consumer = QueueConsumer(store, "orders", wait=0.01)
    runner = threading.Thread(target=consumer.run, args=(handler,), kwargs={"stop": stop})
    runner.start()
    # Messages sent while it runs (after an empty poll) are handled too.
    store.send_batch(items("orders", 2, prefix="late"))
    assert stop.wait(timeout=10)
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert sorted(handled) == sorted([f"m{i}" for i in range(5)] + ["late0", "late1"])


async def test_messages_yields_and_ack_deletes(store: QueueStore, tmp_path: Path) -> None:
    store.send_batch(items("orders", 3))
    with IdempotencyStore(tmp_path / "seen.sqlite") as seen:
        seen.record("async", "m1")  # processed before a crash, never deleted
        consumer = QueueConsumer(store, "orders", idempotency=seen, consumer="async", wait=0.01)
        got: list[str] = []
        async with asyncio.timeout(10):
            async for message in consumer.messages():
                got.append(message.message_id)
                await asyncio.to_thread(consumer.ack, message)
                if len(got) == 2:
                    break
        assert got == ["m0", "m2"]
        assert seen.seen("async", "m2")
    assert store.depth("orders") == 0


def test_ack_needs_a_received_message(store: QueueStore) -> None:
    store.send("orders", b"x")
    [peeked] = store.peek("orders")
    with pytest.raises(QueueError, match="only a received message"):
        QueueConsumer(store, "orders").ack(peeked)


def test_queues_are_created_empty_and_deleted_with_their_messages(tmp_path: Path) -> None:
    with QueueStore(tmp_path / "q.sqlite") as store:
        assert store.create_queue("jobs") is True
        assert store.create_queue("jobs") is False  # idempotent
        assert store.info("jobs").visible == 0
        store.send_batch([SendItem("jobs", b"a", "1"), SendItem("jobs", b"b", "2")])
        assert store.delete_queue("jobs") == 2
        assert "jobs" not in {q.name for q in store.queues()}
        with pytest.raises(QueueError, match="no queue named jobs"):
            store.delete_queue("jobs")
        with pytest.raises(QueueError):
            store.create_queue("not a name")
