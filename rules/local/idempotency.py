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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from rules.errors import TargetError
from rules.local.sqlite import SqliteFile

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


def check_key(value: object, what: str, error: type[TargetError]) -> str:
    """``value`` if it is a string of 1 to ``MAX_KEY`` characters, else ``error``."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY:
        raise error(f"{what} must be a string of 1 to {MAX_KEY} characters, not {value!r:.80}")
    return value


class IdempotencyStore(SqliteFile):
    """The message ids each consumer has processed, in a SQLite file many processes share.

    Thread-safe (one connection, a lock). Records older than ``retention`` seconds count as
    never made and are pruned now and then by ``record``. Usable as a context manager.
    """

    what = "idempotency database"
    error = IdempotencyError

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
        self.retention = retention
        self._clock = clock
        self._last_prune: float | None = None
        super().__init__(path)
        try:
            with self._transaction(write=True) as db:
                for statement in _SCHEMA:
                    db.execute(statement)
        except BaseException:
            self.close()
            raise

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
