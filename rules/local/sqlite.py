"""A SQLite file that local targets and the outbox share: one way to open it, to run a
transaction on it, and to say what went wrong with it.

``SqliteFile`` holds one connection in WAL mode and a lock, so one object serves several
threads (the server calls it from ``asyncio.to_thread`` workers) and several processes share
the file (the CLI beside a running server). Its errors are the subclass's ``TargetError``,
retryable where waiting may help (a lock held too long, a full disk).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from rules.errors import TargetError

BUSY_TIMEOUT = 10.0
"""Seconds a statement waits for another process's write lock before failing as retryable."""
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


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


class SqliteFile:
    """One SQLite file: a connection, a lock, and transactions whose errors are ``error``.

    Subclasses set ``what`` (named in messages) and ``error``, and create their schema.
    Usable as a context manager; closing twice is fine, later calls fail with ``error``.
    """

    what: ClassVar[str] = "database"
    error: ClassVar[type[TargetError]] = TargetError

    def __init__(
        self, path: Path, *, synchronous: str = "NORMAL", busy_timeout: float = BUSY_TIMEOUT
    ) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db: sqlite3.Connection | None = connect_sqlite(
                path, synchronous=synchronous, busy_timeout=busy_timeout
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._problem(exc) from exc

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
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db is None:
                raise self.error(f"the {self.what} {self.path} is closed")
            try:
                with transaction(self._db, write=write) as db:
                    yield db
            except sqlite3.Error as exc:
                raise self._problem(exc) from exc

    def _create_schema(self, statements: Sequence[str], version: int) -> None:
        """Create the tables (idempotent) and stamp the file with the schema ``version``;
        a file from a newer thingcore is refused rather than misread. Closes on failure."""
        try:
            with self._transaction(write=True) as db:
                (found,) = db.execute("PRAGMA user_version").fetchone()
                if found > version:
                    raise self.error(
                        f"the {self.what} {self.path} was written by a newer thingcore (schema "
                        f"{found}, this one knows {version}); use that version"
                    )
                for statement in statements:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={version}")
        except BaseException:
            self.close()
            raise

    def _problem(self, exc: BaseException) -> TargetError:
        message, retryable = database_problem(exc, self.path, self.what)
        return self.error(message, retryable=retryable)
