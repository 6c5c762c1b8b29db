"""Idempotent consumers: remember which message ids a consumer has processed.

Queues and functions deliver at least once: a consumer that crashes after its work but before
it deletes the message sees the message again. A consumer that records each id it finished
(with an optional result, for functions that must answer a retried invocation the same way)
can skip the repeat. Records live in a SQLite file shared by any number of processes and are
forgotten after ``retention`` seconds (SQS's longest message retention is 14 days; the default
of 7 days covers redeliveries from any local queue with sane settings).

Example::

    with IdempotencyStore(Path("var/processed.sqlite")) as seen:
        if not seen.seen("billing", message.message_id):
            charge(message)
            seen.record("billing", message.message_id)

This module also holds ``connect_sqlite``, the way every local target opens its SQLite file.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Self

from rules.errors import TargetError

BUSY_TIMEOUT = 10.0
"""Seconds a statement waits for another process's write lock before failing as retryable."""
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
MAX_KEY = 512
"""Longest consumer name or message id, in characters."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS processed (
        consumer TEXT NOT NULL,
        message_id TEXT NOT NULL,
        result BLOB,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (consumer, message_id)
    ) WITHOUT ROWID""",
    # Pruning deletes a range of this index, not a scan of the table.
    "CREATE INDEX IF NOT EXISTS processed_age ON processed (recorded_at)",
)


class IdempotencyError(TargetError):
    """The idempotency file cannot be used, or a consumer name or message id is invalid."""


def connect_sqlite(
    path: Path, *, synchronous: str = "NORMAL", busy_timeout: float = BUSY_TIMEOUT
) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` (created with its folder) in WAL mode.

    WAL lets readers in other processes (the CLI beside a running server) go on while one
    writes; ``busy_timeout`` makes a writer wait for the lock instead of failing at once. The
    connection is in autocommit mode so callers say ``BEGIN IMMEDIATE`` themselves (a deferred
    transaction that reads, then writes, can fail with SQLITE_BUSY without waiting). It may be
    used from several threads, one at a time: callers hold a lock.

    Raises ``OSError`` or ``sqlite3.Error``; callers turn them into their own errors.
    """
    mode = synchronous.upper()
    if mode not in SYNCHRONOUS:
        raise ValueError(
            f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        _enable_wal(db, busy_timeout)
        db.execute(f"PRAGMA synchronous={mode}")
    except BaseException:
        db.close()
        raise
    return db


def _enable_wal(db: sqlite3.Connection, patience: float) -> None:
    # Switching to WAL needs an exclusive lock, and SQLite answers "database is locked" at once
    # (not through the busy handler) while another process creates the same new file.
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def database_problem(exc: BaseException, path: Path, what: str) -> tuple[str, bool]:
    """What went wrong with the SQLite file ``path`` (a ``what``), and whether to retry.

    A lock held past the busy timeout, a read-only or full disk, a folder that cannot be
    created may all pass; a file that is not a database or is damaged will not.
    """
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return (
            f"the {what} {path} stayed locked by another process beyond the busy timeout; "
            "try again",
            True,
        )
    if isinstance(exc, OSError):
        text = exc.strerror or text
        return f"cannot open the {what} {path}: {text}; check the folder and its permissions", True
    if isinstance(exc, sqlite3.OperationalError):
        return (
            f"cannot use the {what} {path}: {text}; check its permissions and the free disk space",
            True,
        )
    return (
        f"the {what} {path} cannot be used: {text}; move it away to start an empty one",
        False,
    )


@contextmanager
def transaction(db: sqlite3.Connection, *, write: bool) -> Iterator[sqlite3.Connection]:
    """One transaction on an autocommit connection: committed if the body returns, else rolled
    back. ``write`` takes the write lock first (``BEGIN IMMEDIATE``), so a transaction that
    reads, then writes waits for the lock instead of failing halfway."""
    try:
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with suppress(sqlite3.Error):  # the first error is the one to report
                db.execute("ROLLBACK")
        raise


def check_key(value: object, what: str, error: type[TargetError]) -> str:
    """``value`` if it is a string of 1 to ``MAX_KEY`` characters, else ``error``."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY:
        raise error(f"{what} must be a string of 1 to {MAX_KEY} characters, not {value!r:.80}")
    return value


class IdempotencyStore:
    """The message ids each consumer has processed, in a SQLite file many processes share.

    Thread-safe (one connection, a lock). Records older than ``retention`` seconds count as
    never made and are pruned now and then by ``record``. Usable as a context manager.
    """

    PRUNE_EVERY = 3600.0
    """Seconds between prunes at most (less for a short retention)."""

    def __init__(
        self,
        path: Path,
        *,
        retention: float = 7 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not math.isfinite(retention) or retention <= 0:
            raise IdempotencyError(
                f"retention must be a positive number of seconds, not {retention}"
            )
        self.path = path
        self.retention = retention
        self._clock = clock
        self._lock = threading.Lock()
        self._last_prune: float | None = None
        try:
            self._db: sqlite3.Connection | None = connect_sqlite(path)
        except (OSError, sqlite3.Error) as exc:
            message, retryable = database_problem(exc, path, "idempotency database")
            raise IdempotencyError(message, retryable=retryable) from exc
        try:
            with self._transaction(write=True) as db:
                for statement in _SCHEMA:
                    db.execute(statement)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; later calls fail. Closing twice is fine."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def seen(self, consumer: str, message_id: str) -> bool:
        """Whether ``consumer`` recorded ``message_id`` within the retention."""
        return self._fetch(consumer, message_id) is not None

    def result(self, consumer: str, message_id: str) -> bytes | None:
        """The result recorded with ``message_id``; None if none was, or it was not recorded."""
        row = self._fetch(consumer, message_id)
        return None if row is None else row[0]

    def record(self, consumer: str, message_id: str, result: bytes | None = None) -> None:
        """Remember that ``consumer`` processed ``message_id`` (again: the later result wins)."""
        check_key(consumer, "a consumer name", IdempotencyError)
        check_key(message_id, "a message id", IdempotencyError)
        if result is not None and not isinstance(result, bytes):
            raise IdempotencyError(f"a result must be bytes or None, not {type(result).__name__}")
        with self._transaction(write=True) as db:
            now = self._clock()
            db.execute(
                "INSERT OR REPLACE INTO processed (consumer, message_id, result, recorded_at) "
                "VALUES (?, ?, ?, ?)",
                (consumer, message_id, result, now),
            )
            # Prune within the same transaction, bounded in time by the index on recorded_at.
            if self._last_prune is None or now - self._last_prune >= self._prune_interval:
                db.execute("DELETE FROM processed WHERE recorded_at < ?", (now - self.retention,))
                self._last_prune = now

    @property
    def _prune_interval(self) -> float:
        return min(self.PRUNE_EVERY, self.retention / 10)

    def _fetch(self, consumer: str, message_id: str) -> tuple[bytes | None] | None:
        check_key(consumer, "a consumer name", IdempotencyError)
        check_key(message_id, "a message id", IdempotencyError)
        with self._transaction(write=False) as db:
            row: tuple[bytes | None] | None = db.execute(
                "SELECT result FROM processed "
                "WHERE consumer = ? AND message_id = ? AND recorded_at >= ?",
                (consumer, message_id, self._clock() - self.retention),
            ).fetchone()
        return row

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db is None:
                raise IdempotencyError(f"the idempotency store {self.path} is closed")
            try:
                with transaction(self._db, write=write) as db:
                    yield db
            except sqlite3.Error as exc:
                message, retryable = database_problem(exc, self.path, "idempotency database")
                raise IdempotencyError(message, retryable=retryable) from exc
