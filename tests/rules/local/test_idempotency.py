"""The idempotent-consumer records (``rules.local.idempotency``): real SQLite files, several
stores and processes on one file, retention on a fake clock."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rules.local.idempotency import IdempotencyError, IdempotencyStore
from rules.local.sqlite import connect_sqlite

REPO = Path(__file__).resolve().parents[3]
DAY = 86400.0


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "seen.sqlite"


@pytest.fixture
def store(path: Path, clock: FakeClock) -> Iterator[IdempotencyStore]:
    with IdempotencyStore(path, retention=DAY, clock=clock) as opened:
        yield opened


def rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        (count,) = db.execute("SELECT COUNT(*) FROM processed").fetchone()
    finally:
        db.close()
    return int(count)


def test_a_recorded_id_is_seen_by_that_consumer_only(store: IdempotencyStore) -> None:
    assert not store.seen("billing", "m1")
    store.record("billing", "m1")
    assert store.seen("billing", "m1")
    assert not store.seen("audit", "m1")
    assert not store.seen("billing", "m2")
    assert store.result("billing", "m1") is None


def test_a_result_is_kept_and_the_latest_record_wins(store: IdempotencyStore) -> None:
    store.record("fn", "invoke-1", b'{"statusCode": 200}')
    assert store.result("fn", "invoke-1") == b'{"statusCode": 200}'
    store.record("fn", "invoke-1", b"\x00binary")
    assert store.result("fn", "invoke-1") == b"\x00binary"
    assert store.result("fn", "never") is None


def test_records_are_forgotten_after_the_retention_and_pruned(
    store: IdempotencyStore, clock: FakeClock, path: Path
) -> None:
    store.record("c", "old")
    clock.now += DAY - 1
    assert store.seen("c", "old")
    clock.now += 2
    assert not store.seen("c", "old")
    assert store.result("c", "old") is None
    assert rows(path) == 1  # forgotten, not yet pruned

    # A record made a tenth of the retention after the last prune prunes again.
    clock.now += DAY / 10
    store.record("c", "new")
    assert rows(path) == 1
    assert store.seen("c", "new")


def test_stores_in_other_processes_see_the_same_records(
    store: IdempotencyStore, path: Path
) -> None:
    script = (
        "import sys; from pathlib import Path; "
        "from rules.local.idempotency import IdempotencyStore; "
        "s = IdempotencyStore(Path(sys.argv[1])); "
        "s.record('worker', 'from-child', b'done'); "
        "print(s.seen('worker', 'from-parent')); s.close()"
    )
    with IdempotencyStore(path) as parent:  # real clock: the child uses one too
        parent.record("worker", "from-parent")
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=30,
            check=True,
        )
        assert done.stdout.strip() == "True"
        assert parent.result("worker", "from-child") == b"done"


def test_threads_may_share_one_store(path: Path) -> None:
    with IdempotencyStore(path) as store:

        def record(worker: int) -> None:
            for i in range(50):
                store.record(f"w{worker}", f"m{i}")

        threads = [threading.Thread(target=record, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert all(store.seen(f"w{n}", f"m{i}") for n in range(4) for i in range(50))
    assert rows(path) == 200


def test_invalid_names_and_results_are_refused(store: IdempotencyStore) -> None:
    with pytest.raises(IdempotencyError, match="a consumer name must be a string of 1 to 512"):
        store.record("", "m1")
    with pytest.raises(IdempotencyError, match="a message id must be a string of 1 to 512"):
        store.seen("c", "x" * 513)
    with pytest.raises(IdempotencyError, match="a result must be bytes"):
        store.record("c", "m1", "text")  # type: ignore[arg-type]
    assert not store.seen("c", "m1")
    with pytest.raises(IdempotencyError, match="retention must be a positive"):
        IdempotencyStore(Path("unused.sqlite"), retention=0)


def test_a_closed_store_refuses_work(path: Path) -> None:
    store = IdempotencyStore(path)
    store.close()
    store.close()
    with pytest.raises(IdempotencyError, match="is closed"):
        store.seen("c", "m1")


def test_unusable_files_say_whether_to_retry(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(IdempotencyError, match="cannot open the idempotency database") as raised:
        IdempotencyStore(blocker / "seen.sqlite")
    assert raised.value.retryable is True

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x01" * 4096)
    with pytest.raises(IdempotencyError, match="cannot be used") as raised:
        IdempotencyStore(garbage)
    assert raised.value.retryable is False


def test_connect_sqlite_opens_in_wal_with_the_synchronous_asked(tmp_path: Path) -> None:
    db = connect_sqlite(tmp_path / "deep" / "folder" / "x.sqlite", synchronous="full")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert db.execute("PRAGMA busy_timeout").fetchone() == (10_000,)
    finally:
        db.close()
    with pytest.raises(ValueError, match="synchronous must be one of"):
        connect_sqlite(tmp_path / "y.sqlite", synchronous="SOMETIMES")
