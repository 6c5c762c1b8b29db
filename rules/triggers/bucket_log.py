"""The log of objects created in the local buckets, which bucket event sources tail.

``BucketStore.put`` appends one event per object written (an overwrite too: S3 reports it as
``ObjectCreated:Put`` as well) to a SQLite file in the buckets folder,
``<buckets>/.thingcore-events.sqlite`` (bucket names cannot begin with ``.``, so it is never a
bucket, and listings skip it). Each ``BucketSource`` keeps a cursor in the same file, the
sequence number of the last event it finished, so a restarted server resumes where it stopped.

- ``seq`` numbers only grow (``AUTOINCREMENT``: a pruned number is never given again), so a
  cursor stays meaningful however much is pruned.
- A new subscriber starts at the end of the log, as an S3 notification sees only objects
  created after it was configured.
- ``prune`` deletes what no subscriber needs: events older than the retention, and events that
  every cursor of their bucket has passed (all of a bucket's events when nothing subscribes to
  it, since a new subscriber would start after them). A cursor whose subscriber has not been
  seen for longer than the retention and that has nothing left to read is deleted too; one that
  still has events waiting is kept, so a server that was down a long time loses nothing younger
  than the retention. ``forget`` deletes a cursor at once (a subscription removed for good).

Several processes append at once (the server's deliveries, function workers writing objects):
WAL and a busy timeout, as every ``SqliteFile``. ``BucketEventLog`` is thread-safe.
"""

from __future__ import annotations

import math
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rules.local.buckets import EVENTS_FILE, BucketError
from rules.local.sqlite import BUSY_TIMEOUT, SqliteFile

__all__ = ["EVENTS_FILE", "BucketEventError", "BucketEventLog", "ObjectCreated"]
SCHEMA_VERSION = 1
MAX_READ = 1000
"""Events one ``read`` returns at most."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so cursors stay valid
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,                     -- as ObjectInfo.etag: hex MD5 in double quotes
        time REAL NOT NULL                      -- epoch seconds the object was written
    )""",
    "CREATE INDEX IF NOT EXISTS events_bucket ON events (bucket, seq)",
    "CREATE INDEX IF NOT EXISTS events_time ON events (time)",
    """CREATE TABLE IF NOT EXISTS cursors (
        subscriber TEXT PRIMARY KEY,
        bucket TEXT NOT NULL,
        seq INTEGER NOT NULL,       -- the last event the subscriber finished
        seen_at REAL NOT NULL       -- when it last subscribed or advanced
    ) WITHOUT ROWID""",
)


class BucketEventError(BucketError):
    """The bucket event log cannot be used (``retryable`` when waiting may help)."""


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    """One event of the log: an object written to a bucket."""

    seq: int
    bucket: str
    key: str
    size: int
    etag: str
    """The hex MD5 in double quotes, as ``ObjectInfo.etag``."""
    time: float
    """Epoch seconds."""
    log_id: str
    """The id of the log file, which makes ``message_id`` unique beyond this file."""

    @property
    def sequencer(self) -> str:
        """S3's ``sequencer``: hex that orders the events of one key (here, of the log)."""
        return f"{self.seq:016X}"

    @property
    def message_id(self) -> str:
        """A stable id for the deliveries of this event (``context.message_id``)."""
        return f"{self.log_id}-{self.seq}"


class BucketEventLog(SqliteFile):
    """The object-created events of every local bucket and the cursors of their subscribers.

    Args:
        path: The SQLite file (created with its folder).
        synchronous: SQLite ``synchronous``: NORMAL survives a killed process, FULL a power loss.
        clock: Epoch seconds now (tests pass a fake one).
        busy_timeout: Seconds a statement waits for another process's write lock before it
            fails with a retryable ``BucketEventError``.
    """

    what = "bucket event log"
    error = BucketEventError

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self._clock = clock
        super().__init__(path, synchronous=synchronous, busy_timeout=busy_timeout)
        self._create_schema(_SCHEMA, SCHEMA_VERSION)
        # The log's id goes into every event's message id: a log made anew (the buckets folder
        # reset) numbers from 1 again, and its events must not look like ones already handled
        # (to ``context.once``, or to the dead-letter queue, which ignores a known id).
        try:
            with self._transaction(write=True) as db:
                db.execute(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES ('log_id', ?)",
                    (uuid.uuid4().hex[:16],),
                )
                (found,) = db.execute("SELECT value FROM meta WHERE name = 'log_id'").fetchone()
        except BaseException:
            self.close()
            raise
        self.log_id: str = found

    # -- the events ----------------------------------------------------------------------------

    def append(
        self, bucket: str, key: str, size: int, etag: str, *, at: float | None = None
    ) -> int:
        """Log that ``key`` was written to ``bucket`` (at ``at``, default now); its seq."""
        with self._transaction(write=True) as db:
            [(seq,)] = db.execute(
                "INSERT INTO events (bucket, key, size, etag, time) VALUES (?, ?, ?, ?, ?) "
                "RETURNING seq",
                (bucket, key, size, etag, self._clock() if at is None else at),
            ).fetchall()
        return int(seq)

    def read(self, after: int, bucket: str, limit: int = 100) -> list[ObjectCreated]:
        """The events of ``bucket`` after seq ``after``, oldest first, ``limit`` at most."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_READ:
            raise BucketEventError(f"limit must be an integer from 1 to {MAX_READ}, not {limit!r}")
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT seq, bucket, key, size, etag, time FROM events "
                "WHERE bucket = ? AND seq > ? ORDER BY seq LIMIT ?",
                (bucket, after, limit),
            ).fetchall()
        return [
            ObjectCreated(seq, name, key, size, etag, at, self.log_id)
            for seq, name, key, size, etag, at in rows
        ]

    def end(self) -> int:
        """The seq of the last event ever appended (0 for a new log)."""
        with self._transaction(write=False) as db:
            return self._end(db)

    # -- the cursors ---------------------------------------------------------------------------

    def subscribe(self, subscriber: str, bucket: str, *, at: int | None = None) -> int:
        """The cursor of ``subscriber`` (of ``bucket``), made if it has none: at ``at``, or at
        the end of the log, so a new subscriber sees only what is written from now on.

        Marks the subscriber as seen (``prune`` keeps its cursor).
        """
        with self._transaction(write=True) as db:
            row = db.execute(
                "SELECT seq, bucket FROM cursors WHERE subscriber = ?", (subscriber,)
            ).fetchone()
            if row is not None and row[1] != bucket:
                raise BucketEventError(
                    f"subscriber {subscriber!r} reads bucket {row[1]!r}, not {bucket!r}; "
                    "give each subscription its own id"
                )
            seq = row[0] if row is not None else (self._end(db) if at is None else at)
            db.execute(
                "INSERT INTO cursors (subscriber, bucket, seq, seen_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (subscriber) DO UPDATE SET seen_at = excluded.seen_at",
                (subscriber, bucket, seq, self._clock()),
            )
        return int(seq)

    def cursor(self, subscriber: str) -> int | None:
        """The seq of the last event ``subscriber`` finished; None if it has no cursor."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT seq FROM cursors WHERE subscriber = ?", (subscriber,)
            ).fetchone()
        return None if row is None else int(row[0])

    def advance(self, subscriber: str, seq: int) -> bool:
        """Move ``subscriber``'s cursor forward to ``seq`` (never back); False if it has no
        cursor (``subscribe`` first)."""
        with self._transaction(write=True) as db:
            changed = db.execute(
                "UPDATE cursors SET seq = MAX(seq, ?), seen_at = ? WHERE subscriber = ?",
                (seq, self._clock(), subscriber),
            ).rowcount
        return changed > 0

    def forget(self, subscriber: str) -> bool:
        """Delete ``subscriber``'s cursor (its subscription is gone); False if it had none."""
        with self._transaction(write=True) as db:
            deleted = db.execute("DELETE FROM cursors WHERE subscriber = ?", (subscriber,)).rowcount
        return deleted > 0

    def subscribers(self) -> dict[str, tuple[str, int]]:
        """Every cursor: subscriber -> (bucket, seq)."""
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT subscriber, bucket, seq FROM cursors ORDER BY subscriber")
            return {subscriber: (bucket, seq) for subscriber, bucket, seq in rows}

    # -- pruning -------------------------------------------------------------------------------

    def prune(self, retention: float) -> int:
        """Delete the events no subscriber needs and the cursors of long-gone subscribers (see
        the module docstring); how many events went."""
        if isinstance(retention, bool) or not isinstance(retention, int | float):
            raise BucketEventError(f"retention must be a number of seconds, not {retention!r}")
        if not math.isfinite(retention) or retention <= 0:
            raise BucketEventError(f"retention must be greater than 0 seconds, not {retention}")
        cutoff = self._clock() - retention
        with self._transaction(write=True) as db:
            deleted = db.execute("DELETE FROM events WHERE time < ?", (cutoff,)).rowcount
            db.execute(
                "DELETE FROM cursors AS c WHERE c.seen_at < ? AND NOT EXISTS ("
                "SELECT 1 FROM events AS e WHERE e.bucket = c.bucket AND e.seq > c.seq)",
                (cutoff,),
            )
            needed = dict(
                db.execute("SELECT bucket, MIN(seq) FROM cursors GROUP BY bucket").fetchall()
            )
            buckets = [b for (b,) in db.execute("SELECT DISTINCT bucket FROM events").fetchall()]
            for bucket in buckets:
                if bucket in needed:
                    deleted += db.execute(
                        "DELETE FROM events WHERE bucket = ? AND seq <= ?",
                        (bucket, needed[bucket]),
                    ).rowcount
                else:
                    # Nobody reads it: a subscriber made later starts after these events.
                    deleted += db.execute("DELETE FROM events WHERE bucket = ?", (bucket,)).rowcount
        return deleted

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _end(db: sqlite3.Connection) -> int:
        # sqlite_sequence holds the last seq ever given, even when the events are all pruned.
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return 0 if row is None else int(row[0])
