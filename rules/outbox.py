"""The durable outbox: rule deliveries owed to their targets, in a local SQLite file.

A delivery is owed from the moment its row commits until its target has it (the row is then
deleted) or it has failed for good (its error delivery is inserted in the same transaction).
Rows are written by one task per server in group commits (``write``: a loop pass's new rows,
completions and retries in one transaction) and read back per target, in id order, when a
target's lane has more than it holds in memory or after a restart. Ids are given out here, in
memory, so the engine knows a row's place before it is written.

The file is the server's own (``<data dir>/outbox.sqlite``), also with a PostgreSQL registry:
a delivery is owed by the server that accepted the message, like MQTT session state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rules.local.sqlite import SqliteFile

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS deliveries ("
    " id INTEGER PRIMARY KEY,"
    " message_id TEXT NOT NULL,"
    " output_id TEXT NOT NULL,"
    " rule TEXT NOT NULL,"
    " action INTEGER NOT NULL,"
    " siblings INTEGER NOT NULL,"
    " kind TEXT NOT NULL,"
    " target TEXT NOT NULL,"
    " params TEXT NOT NULL,"
    " body BLOB NOT NULL,"
    " origin TEXT NOT NULL,"
    " payload BLOB NOT NULL,"
    " depth INTEGER NOT NULL,"
    " created REAL NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL DEFAULT 0,"
    " error TEXT)",
    "CREATE INDEX IF NOT EXISTS deliveries_owed ON deliveries (target, id) WHERE state = 0",
    "CREATE INDEX IF NOT EXISTS deliveries_outputs ON deliveries (output_id) WHERE siblings > 1",
)

OWED, WAITING = 0, 1
"""Row states: owed to its target; failed, waiting for the other actions of its output."""

_COLUMNS = (
    "id, message_id, output_id, rule, action, siblings, kind, target, params, body, origin,"
    " payload, depth, created, attempts, state, error"
)


@dataclass(frozen=True, slots=True)
class Row:
    """One delivery as stored (``rules.delivery`` turns it into a ``Delivery``)."""

    id: int
    message_id: str
    output_id: str
    rule: str
    action: int
    siblings: int
    kind: str
    target: str
    params: dict[str, Any]
    body: bytes
    origin: dict[str, Any]
    payload: bytes
    depth: int
    created: float
    attempts: int = 0
    state: int = OWED
    error: str | None = None

    def values(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.message_id,
            self.output_id,
            self.rule,
            self.action,
            self.siblings,
            self.kind,
            self.target,
            orjson.dumps(self.params),
            self.body,
            orjson.dumps(self.origin),
            self.payload,
            self.depth,
            self.created,
            self.attempts,
            self.state,
            self.error,
        )


def _row(values: Sequence[Any]) -> Row:
    (id_, mid, oid, rule, action, siblings, kind, target, params, body, origin, payload,
     depth, created, attempts, state, error) = values  # fmt: skip
    return Row(
        id_, mid, oid, rule, action, siblings, kind, target, orjson.loads(params), bytes(body),
        orjson.loads(origin), bytes(payload), depth, created, attempts, state, error,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Update:
    id: int
    attempts: int
    error: str | None
    state: int = OWED


@dataclass(frozen=True, slots=True)
class TargetDepth:
    target: str
    owed: int
    last_id: int
    oldest: float | None


class Outbox(SqliteFile):
    """The outbox file; thread-safe (calls come from ``asyncio.to_thread`` workers)."""

    what = "rules outbox"

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        super().__init__(path, synchronous=synchronous)
        try:
            with self._transaction(write=True) as db:
                for statement in _SCHEMA:
                    db.execute(statement)
                (last,) = db.execute("SELECT coalesce(max(id), 0) FROM deliveries").fetchone()
        except BaseException:
            self.close()
            raise
        self._next = int(last) + 1

    def allocate(self) -> int:
        """The next row id (event loop only)."""
        found = self._next
        self._next += 1
        return found

    def write(
        self, inserts: Sequence[Row], updates: Sequence[Update], deletes: Sequence[int]
    ) -> None:
        """One group commit: updates, then deletes, then inserts, in one transaction."""
        with self._transaction(write=True) as db:
            if updates:
                db.executemany(
                    "UPDATE deliveries SET attempts = ?, error = ?, state = ? WHERE id = ?",
                    [(u.attempts, u.error, u.state, u.id) for u in updates],
                )
            if deletes:
                db.executemany("DELETE FROM deliveries WHERE id = ?", [(i,) for i in deletes])
            if inserts:
                db.executemany(
                    f"INSERT INTO deliveries ({_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [r.values() for r in inserts],
                )

    def load(self, target: str, after: int, limit: int) -> list[Row]:
        """Owed rows of ``target`` with ids above ``after``, in id order."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM deliveries WHERE target = ? AND state = 0 AND id > ?"
                " ORDER BY id LIMIT ?",
                (target, after, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    def depths(self) -> list[TargetDepth]:
        """Owed rows per target (for start-up and ``thingcore targets``)."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT target, count(*), max(id), min(created) FROM deliveries"
                " WHERE state = 0 GROUP BY target ORDER BY target"
            ).fetchall()
        return [TargetDepth(t, n, last, oldest) for t, n, last, oldest in rows]

    def open_outputs(self) -> list[Row]:
        """Rows of outputs with several actions (to count what each still waits for)."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM deliveries WHERE siblings > 1 ORDER BY id"
            ).fetchall()
        return [_row(r) for r in rows]

    def count(self) -> int:
        with self._transaction(write=False) as db:
            (n,) = db.execute("SELECT count(*) FROM deliveries").fetchone()
        return int(n)
