"""The bucket event log (``rules.triggers.bucket_log``) on real SQLite files, and the events
``BucketStore.put`` appends to it: order, cursors, pruning, threads and processes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rules.local.buckets import EVENTS_FILE, BucketError, BucketStore
from rules.triggers.bucket_log import BucketEventError, BucketEventLog, ObjectCreated


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events(tmp_path: Path, clock: Clock) -> Iterator[BucketEventLog]:
    with BucketEventLog(tmp_path / "events.sqlite", clock=clock) as log:
        yield log


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BucketStore]:
    buckets = BucketStore(tmp_path / "buckets")
    yield buckets
    buckets.close()


def etag(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


def keys(found: list[ObjectCreated]) -> list[str]:
    return [e.key for e in found]


# -- the log -------------------------------------------------------------------------------------


def test_append_and_read_in_order_per_bucket(events: BucketEventLog, clock: Clock) -> None:
    first = events.append("a", "k1", 3, '"e1"')
    events.append("b", "other", 1, '"e2"')
    clock.now += 1
    third = events.append("a", "k2", 5, '"e3"', at=42.5)
    events.append("a", "k3", 0, '"e4"')
    assert third > first
    [one, two, _] = events.read(0, "a")
    assert one == ObjectCreated(first, "a", "k1", 3, '"e1"', 1_000_000.0, events.log_id)
    assert (two.seq, two.time) == (third, 42.5)
    assert one.message_id == f"{events.log_id}-{first}"
    assert one.sequencer == f"{first:016X}" and len(one.sequencer) == 16
    assert keys(events.read(first, "a")) == ["k2", "k3"]
    assert keys(events.read(0, "a", limit=2)) == ["k1", "k2"]
    assert keys(events.read(0, "b")) == ["other"]
    assert events.read(0, "none") == []
    assert events.end() == 4
    with pytest.raises(BucketEventError, match="limit must be an integer from 1 to 1000"):
        events.read(0, "a", limit=0)


def test_log_ids_are_per_file(tmp_path: Path, events: BucketEventLog) -> None:
    with BucketEventLog(tmp_path / "events.sqlite") as again:
        assert again.log_id == events.log_id
    with BucketEventLog(tmp_path / "other.sqlite") as other:
        # A log made anew numbers from 1 again: its message ids must not repeat the old ones.
        assert other.log_id != events.log_id
        assert other.append("a", "k", 0, '""') == events.append("a", "k", 0, '""') == 1
        [mine], [theirs] = other.read(0, "a"), events.read(0, "a")
        assert mine.message_id != theirs.message_id


def test_a_new_subscriber_starts_at_the_end(events: BucketEventLog) -> None:
    events.append("a", "old", 0, '""')
    events.append("b", "old", 0, '""')
    assert events.cursor("s1") is None
    assert events.subscribe("s1", "a") == 2
    assert events.cursor("s1") == 2
    new = events.append("a", "new", 0, '""')
    assert keys(events.read(events.subscribe("s1", "a"), "a")) == ["new"]
    # Subscribing again keeps the cursor; ``at`` only places a new one.
    assert events.subscribe("s1", "a", at=0) == 2
    assert events.subscribe("s2", "a", at=1) == 1
    assert events.advance("s1", new) is True
    assert events.advance("s1", 1) is True  # never back
    assert events.cursor("s1") == new
    assert events.advance("ghost", 5) is False
    assert events.cursor("ghost") is None
    assert events.subscribers() == {"s1": ("a", new), "s2": ("a", 1)}
    with pytest.raises(BucketEventError, match="reads bucket 'a', not 'b'"):
        events.subscribe("s1", "b")
    assert events.forget("s2") is True
    assert events.forget("s2") is False
    assert events.cursor("s2") is None


def test_prune_keeps_what_a_cursor_still_needs(events: BucketEventLog) -> None:
    seqs = [events.append("a", f"k{i}", 0, '""') for i in range(5)]
    events.append("lonely", "x", 0, '""')
    events.subscribe("slow", "a", at=seqs[1])
    events.subscribe("fast", "a", at=seqs[3])
    # Events every cursor of "a" has passed go, and every event of a bucket nobody reads.
    assert events.prune(3600) == 3
    assert keys(events.read(0, "a")) == ["k2", "k3", "k4"]
    assert events.read(0, "lonely") == []
    events.advance("slow", seqs[4])  # now "fast" (at k3) is the one behind
    assert events.prune(3600) == 2
    assert keys(events.read(0, "a")) == ["k4"]


def test_prune_drops_events_older_than_the_retention(events: BucketEventLog, clock: Clock) -> None:
    events.subscribe("s", "a")
    events.append("a", "old", 0, '""')
    clock.now += 100
    events.append("a", "young", 0, '""')
    events.subscribe("s", "a")  # seen now: its cursor stays
    assert events.prune(50) == 1
    assert keys(events.read(0, "a")) == ["young"]
    assert events.cursor("s") == 0


def test_prune_forgets_long_gone_subscribers_with_nothing_to_read(
    events: BucketEventLog, clock: Clock
) -> None:
    events.subscribe("gone", "a")
    events.subscribe("down", "b")
    clock.now += 10
    events.append("b", "while-down", 0, '""')
    clock.now += 100
    events.subscribe("live", "c")
    events.prune(100)
    # "gone" has nothing to read: deleted. "down" (a server stopped longer than the retention)
    # still has an event younger than the retention waiting: kept, with its event.
    assert set(events.subscribers()) == {"down", "live"}
    assert keys(events.read(0, "b")) == ["while-down"]


def test_seqs_are_never_given_twice(events: BucketEventLog) -> None:
    events.subscribe("s", "a")
    for i in range(3):
        events.append("a", f"k{i}", 0, '""')
    events.advance("s", 3)
    assert events.prune(3600) == 3
    assert events.read(0, "a") == []
    # A cursor at 3 must not miss the next event (plain rowids would give 1 again).
    assert events.append("a", "next", 0, '""') == 4
    assert keys(events.read(events.cursor("s") or 0, "a")) == ["next"]
    assert events.end() == 4


def test_prune_checks_the_retention(events: BucketEventLog) -> None:
    for wrong in (0, -1, float("nan"), "1", True):
        with pytest.raises(BucketEventError, match="retention must be"):
            events.prune(wrong)  # type: ignore[arg-type]


def test_appends_from_threads_and_connections(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    logs = [BucketEventLog(path), BucketEventLog(path)]  # two connections, as two processes
    seqs: list[list[int]] = [[] for _ in range(8)]

    def append(n: int) -> None:
        for i in range(50):
            seqs[n].append(logs[n % 2].append("a", f"t{n}/{i}", i, '""'))

    threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        flat = [s for per_thread in seqs for s in per_thread]
        assert sorted(flat) == list(range(1, 401))
        found = logs[0].read(0, "a", limit=1000)
        assert [e.seq for e in found] == list(range(1, 401))
        for n in range(8):
            # Each thread's events are in the log in the order it appended them.
            mine = [e.key for e in found if e.key.startswith(f"t{n}/")]
            assert mine == [f"t{n}/{i}" for i in range(50)]
    finally:
        for log in logs:
            log.close()


def test_appends_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from rules.triggers.bucket_log import BucketEventLog
        with BucketEventLog(Path({str(path)!r})) as log:
            for i in range(200):
                log.append("a", f"child/{{i}}", i, '""')
        """
    )
    with BucketEventLog(path) as log:
        child = subprocess.Popen([sys.executable, "-c", script])
        for i in range(200):
            log.append("a", f"parent/{i}", i, '""')
        assert child.wait(timeout=60) == 0
        found = log.read(0, "a", limit=1000)
    assert [e.seq for e in found] == list(range(1, 401))
    assert sorted(keys(found)) == sorted(
        [f"child/{i}" for i in range(200)] + [f"parent/{i}" for i in range(200)]
    )


# -- BucketStore.put appends ---------------------------------------------------------------------


def test_put_logs_object_created(store: BucketStore, tmp_path: Path) -> None:
    info = store.put("uploads", "images/a.jpg", b"jpeg", message_id="m1")
    [created] = store.events().read(0, "uploads")
    assert (created.bucket, created.key, created.size, created.etag, created.time) == (
        "uploads",
        "images/a.jpg",
        4,
        etag(b"jpeg"),
        info.last_modified,
    )
    assert store.events_path == tmp_path / "buckets" / EVENTS_FILE
    assert store.events_path.is_file()


def test_every_put_of_a_key_is_logged_again(store: BucketStore) -> None:
    # An overwrite is ObjectCreated:Put too, and a put the outbox repeats logs its event again.
    store.put("uploads", "k", b"one")
    store.put("uploads", "k", b"two")
    store.put("uploads", "k", b"two")
    found = store.events().read(0, "uploads")
    assert [(e.key, e.etag) for e in found] == [
        ("k", etag(b"one")),
        ("k", etag(b"two")),
        ("k", etag(b"two")),
    ]
    assert len({e.seq for e in found}) == 3


def test_failed_puts_and_deletes_log_nothing(store: BucketStore) -> None:
    store.put("uploads", "a/b", b"x")
    with pytest.raises(BucketError):
        store.put("uploads", "a", b"folder collision")
    with pytest.raises(BucketError):
        store.put("uploads", "bad//key", b"x")
    store.delete("uploads", "a/b")  # deletes are not logged (no ObjectRemoved events yet)
    assert keys(store.events().read(0, "uploads")) == ["a/b"]


def test_a_store_that_never_puts_makes_no_log(tmp_path: Path) -> None:
    root = tmp_path / "buckets"
    (root / "manual").mkdir(parents=True)
    (root / "manual" / "file").write_bytes(b"x")
    store = BucketStore(root)
    store.list("manual")
    store.get("manual", "file")
    store.buckets()
    store.delete("manual", "file")
    store.close()
    assert not list(root.glob(".thingcore-events*"))


def test_the_log_is_not_a_bucket(store: BucketStore) -> None:
    store.put("uploads", "k", b"x")
    assert list(store.root.glob(EVENTS_FILE + "*"))
    assert [b.name for b in store.buckets()] == ["uploads"]
    assert [o.key for o in store.list("uploads")] == ["k"]


def test_a_failed_append_fails_the_put_and_a_repeat_logs_it(
    store: BucketStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = store.events()

    def locked(*args: object, **kwargs: object) -> int:
        raise BucketEventError("the bucket event log stayed locked; try again", retryable=True)

    with monkeypatch.context() as patched:
        patched.setattr(events, "append", locked)
        with pytest.raises(BucketError, match="stayed locked") as caught:
            store.put("uploads", "k", b"body")
    assert caught.value.retryable is True
    # The object is written but its event is not: the put did not return, so its deliverer
    # repeats it, and the repeat logs the event.
    assert store.get("uploads", "k")[0] == b"body"
    assert store.events().read(0, "uploads") == []
    store.put("uploads", "k", b"body")
    assert keys(store.events().read(0, "uploads")) == ["k"]


def test_the_log_orders_one_keys_puts_as_they_were_written(
    store: BucketStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first put is held in its append while a second put of the key is tried: the second
    # must wait for the first to finish (the key's lock), or the log would say the first body
    # came last while the second one is the object.
    events = store.events()
    append = events.append
    appending, second_done = threading.Event(), threading.Event()

    def held(*args: object, **kwargs: object) -> int:
        if not appending.is_set():
            appending.set()
            second_done.wait(0.5)  # in vain when the key's lock works
        return append(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(events, "append", held)
    first = threading.Thread(target=store.put, args=("race", "same", b"first"))
    first.start()
    assert appending.wait(10)
    store.put("race", "same", b"second")
    second_done.set()
    first.join()
    found = store.events().read(0, "race")
    assert [e.etag for e in found] == [etag(b"first"), etag(b"second")]
    assert store.get("race", "same")[0] == b"second"


def test_close_and_reopen(store: BucketStore) -> None:
    store.put("uploads", "one", b"1")
    first = store.events()
    store.close()
    store.close()
    store.put("uploads", "two", b"2")
    assert store.events() is not first
    assert keys(store.events().read(0, "uploads")) == ["one", "two"]
