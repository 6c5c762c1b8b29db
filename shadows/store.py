"""Shadows in SQL: a batch of requests read, applied and written in one transaction.

Synchronous: the service runs it in a worker thread, one batch at a time, which is what
groups concurrent updates into one commit (group commit); the CLI calls it directly. The
transaction takes the write lock before reading (SQLite ``BEGIN IMMEDIATE``, PostgreSQL an
advisory lock per shadow), so several processes on one database apply requests to a shadow
one after another and versions never fork.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.exc import SQLAlchemyError

from registry.db import Database
from shadows.batch import Op, Result, Writes, apply_batch, rejected
from shadows.config import ShadowSettings
from shadows.document import JsonObject, Shadow
from shadows.errors import ShadowError, ShadowErrorCode
from shadows.names import ShadowKey
from shadows.options import DEFAULT, ShadowOptions, ShadowOptionsError, parse_options

SHADOW_CHANGE = "shadow"
"""Change-feed kind announcing rows in ``shadow_messages`` (DESIGN.md, control plane)."""

_SELECT = text(
    'SELECT thing, name, version, document, "exists", updated_at FROM shadows '
    "WHERE thing IN :things"
).bindparams(bindparam("things", expanding=True))
_UPSERT = text(
    'INSERT INTO shadows (thing, name, version, document, "exists", updated_at) '
    "VALUES (:thing, :name, :version, :document, :exists, :updated_at) "
    "ON CONFLICT (thing, name) DO UPDATE SET version = excluded.version, "
    'document = excluded.document, "exists" = excluded."exists", '
    "updated_at = excluded.updated_at"
)
_HISTORY = text(
    "INSERT INTO shadow_history "
    "(thing, name, version, document, client_id, client_token, created_at) "
    "VALUES (:thing, :name, :version, :document, :client_id, :client_token, :created_at) "
    "ON CONFLICT (thing, name, version) DO UPDATE SET document = excluded.document, "
    "client_id = excluded.client_id, client_token = excluded.client_token, "
    "created_at = excluded.created_at"
)
# Rows above the newest version are an earlier life of a shadow that restarted at version 1
# (deleted more than 48 hours before): they must not pass for newer versions of this one.
_HISTORY_TRIM = text(
    "DELETE FROM shadow_history WHERE thing = :thing AND name = :name "
    "AND (version <= :below OR version > :newest)"
)
_REJECTION = text(
    "INSERT INTO shadow_rejections "
    "(thing, name, path, value, reason, version, client_id, created_at) "
    "VALUES (:thing, :name, :path, :value, :reason, :version, :client_id, :created_at)"
)
_MESSAGE = text(
    "INSERT INTO shadow_messages (topic, payload, created_at) VALUES (:topic, :payload, :at)"
)
_CHANGE = text("INSERT INTO changes (kind, key, created_at) VALUES (:kind, :key, :at)")


@dataclass(frozen=True, slots=True)
class ShadowSummary:
    thing: str
    name: str | None
    version: int
    updated_at: float


def _shadow_from_row(version: int, document: str, exists: bool, updated_at: float) -> Shadow:
    if not exists:
        return Shadow(version=version, timestamp=int(updated_at), exists=False)
    data = json.loads(document)
    return Shadow(
        data.get("desired", {}),
        data.get("reported", {}),
        data.get("metadata", {}),
        version,
        int(updated_at),
    )


def _document_text(shadow: Shadow) -> str:
    if not shadow.exists:
        return "{}"
    data: JsonObject = {}
    if shadow.desired:
        data["desired"] = shadow.desired
    if shadow.reported:
        data["reported"] = shadow.reported
    if shadow.metadata:
        data["metadata"] = shadow.metadata
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


class ShadowStore:
    """Shadow reads and batched writes on the registry's database."""

    def __init__(self, db: Database, settings: ShadowSettings) -> None:
        self.db = db
        self.settings = settings
        self.limits = settings.limits
        self.batches = 0
        self.committed = 0

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, keys: Iterable[ShadowKey]) -> Iterator[Connection]:
        with self.db.engine.connect() as conn:
            if self.db.is_sqlite:
                # Take the write lock before reading: a deferred transaction that read and
                # then finds another writer committed in between cannot be retried.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                for lock in sorted({f"{k.thing}/{k.stored_name}" for k in keys}):
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": lock})
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def _load(self, conn: Connection, keys: Iterable[ShadowKey]) -> dict[ShadowKey, Shadow]:
        wanted = set(keys)
        things = sorted({k.thing for k in wanted})
        loaded: dict[ShadowKey, Shadow] = {}
        for start in range(0, len(things), 500):
            rows = conn.execute(_SELECT, {"things": things[start : start + 500]})
            for thing, name, version, document, exists, updated_at in rows:
                key = ShadowKey(thing, name or None)
                if key in wanted:
                    loaded[key] = _shadow_from_row(version, document, exists, updated_at)
        return loaded

    def _write(self, conn: Connection, writes: Writes, now: float) -> None:
        if writes.shadows:
            conn.execute(
                _UPSERT,
                [
                    {
                        "thing": key.thing,
                        "name": key.stored_name,
                        "version": shadow.version,
                        "document": _document_text(shadow),
                        "exists": shadow.exists,
                        "updated_at": float(shadow.timestamp),
                    }
                    for key, shadow in writes.shadows.items()
                ],
            )
        if writes.history:
            conn.execute(
                _HISTORY,
                [
                    {
                        "thing": h.key.thing,
                        "name": h.key.stored_name,
                        "version": h.version,
                        "document": h.document,
                        "client_id": h.client_id,
                        "client_token": h.client_token,
                        "created_at": now,
                    }
                    for h in writes.history
                ],
            )
            trims: dict[ShadowKey, tuple[int, int]] = {}
            for h in writes.history:
                trims[h.key] = (h.version - h.keep, h.version)
            conn.execute(
                _HISTORY_TRIM,
                [
                    {"thing": k.thing, "name": k.stored_name, "below": below, "newest": newest}
                    for k, (below, newest) in trims.items()
                ],
            )
        if writes.rejections:
            conn.execute(
                _REJECTION,
                [
                    {
                        "thing": r.key.thing,
                        "name": r.key.stored_name,
                        "path": ".".join(r.rejection.path),
                        "value": json.dumps(r.rejection.value),
                        "reason": r.rejection.reason,
                        "version": r.version,
                        "client_id": r.client_id,
                        "created_at": now,
                    }
                    for r in writes.rejections
                ],
            )

    def run(self, ops: list[Op], *, outbox: bool = False) -> list[Result]:
        """Apply ``ops`` in order in one transaction; the results' messages may be published
        once this returns (the commit is done).

        ``outbox`` (requests made outside MQTT): the messages are also written to
        ``shadow_messages`` with a change row, so a running server publishes them. A database
        failure answers every request of the batch with 500 and writes nothing.
        """
        if not ops:
            return []
        now = time.time()
        try:
            with self._transaction(op.key for op in ops) as conn:
                loaded = self._load(conn, (op.key for op in ops))
                results, writes = apply_batch(
                    ops,
                    loaded,
                    int(now),
                    self.limits,
                    history_default=self.settings.history_default,
                    deleted_version_retention=self.settings.deleted_version_retention,
                )
                self._write(conn, writes, now)
                if outbox:
                    self._outbox(conn, results, now)
        except SQLAlchemyError:
            failure = ShadowError(ShadowErrorCode.INTERNAL, "Internal service failure")
            return [rejected(op.key, op.kind, failure.with_token(op.token), int(now)) for op in ops]
        self.batches += 1
        self.committed += len(ops)
        return results

    def _outbox(self, conn: Connection, results: list[Result], now: float) -> None:
        rows: list[dict[str, Any]] = [
            {"topic": topic, "payload": payload.decode("utf-8"), "at": now}
            for result in results
            if result.error is None
            for topic, payload in result.messages
        ]
        if not rows:
            return
        if not self.db.is_sqlite:
            # Change ids in commit order (registry.service.record_change explains).
            conn.execute(text("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE"))
        conn.execute(_MESSAGE, rows)
        conn.execute(_CHANGE, {"kind": SHADOW_CHANGE, "key": rows[0]["topic"][:256], "at": now})

    # -- reads for the CLI and the service ---------------------------------------------------

    def get(self, key: ShadowKey) -> Shadow | None:
        """The stored shadow (also a deleted one, ``exists`` False), or None."""
        with self.db.engine.connect() as conn:
            return self._load(conn, [key]).get(key)

    def options_for(self, thing: str) -> ShadowOptions:
        """The shadow options of ``thing``'s type (defaults when it has none)."""
        with self.db.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT tt.shadow_options FROM things t JOIN thing_types tt "
                    "ON tt.name = t.thing_type WHERE t.name = :thing"
                ),
                {"thing": thing},
            ).first()
        if row is None or row[0] is None:
            return DEFAULT
        try:
            return parse_options(row[0])
        except ShadowOptionsError:
            return DEFAULT

    def type_options(self) -> dict[str, ShadowOptions]:
        """Every thing type that has shadow options, parsed (broken ones are skipped)."""
        found: dict[str, ShadowOptions] = {}
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT name, shadow_options FROM thing_types WHERE shadow_options IS NOT NULL"
                )
            )
            for name, raw in rows:
                try:
                    found[name] = parse_options(raw)
                except ShadowOptionsError:
                    continue
        return found

    def thing_exists(self, thing: str) -> bool:
        with self.db.engine.connect() as conn:
            row = conn.execute(text("SELECT 1 FROM things WHERE name = :t"), {"t": thing}).first()
            return row is not None

    def list_shadows(
        self, thing: str | None = None, *, limit: int = 100, after: tuple[str, str] | None = None
    ) -> list[ShadowSummary]:
        """Existing shadows in (thing, name) order, ``limit`` of them after ``after``."""
        where = ['"exists" = :yes']
        params: dict[str, Any] = {"yes": True, "limit": limit}
        if thing is not None:
            where.append("thing = :thing")
            params["thing"] = thing
        if after is not None:
            where.append("(thing > :at OR (thing = :at AND name > :an))")
            params["at"], params["an"] = after
        sql = (
            "SELECT thing, name, version, updated_at FROM shadows WHERE "
            + " AND ".join(where)
            + " ORDER BY thing, name LIMIT :limit"
        )
        with self.db.engine.connect() as conn:
            return [
                ShadowSummary(t, n or None, v, u) for t, n, v, u in conn.execute(text(sql), params)
            ]

    def history(self, key: ShadowKey, limit: int = 20) -> list[dict[str, Any]]:
        """Kept versions of a shadow, newest first."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT version, document, client_id, client_token, created_at "
                    "FROM shadow_history WHERE thing = :t AND name = :n "
                    "ORDER BY version DESC LIMIT :limit"
                ),
                {"t": key.thing, "n": key.stored_name, "limit": limit},
            )
            return [
                {
                    "version": version,
                    "document": json.loads(document),
                    "clientId": client_id,
                    "clientToken": client_token,
                    "timestamp": created_at,
                }
                for version, document, client_id, client_token, created_at in rows
            ]

    def rejections(
        self, thing: str, name: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Recorded rejections of a thing's shadows (or one shadow), newest first."""
        sql = (
            "SELECT name, path, value, reason, version, client_id, created_at "
            "FROM shadow_rejections WHERE thing = :t"
        )
        params: dict[str, Any] = {"t": thing, "limit": limit}
        if name is not None:
            sql += " AND name = :n"
            params["n"] = name
        sql += " ORDER BY id DESC LIMIT :limit"
        with self.db.engine.connect() as conn:
            return [
                {
                    "shadow": n or None,
                    "path": path,
                    "value": json.loads(value),
                    "reason": reason,
                    "version": version,
                    "clientId": client_id,
                    "timestamp": created_at,
                }
                for n, path, value, reason, version, client_id, created_at in conn.execute(
                    text(sql), params
                )
            ]

    def delete_thing_shadows(self, thing: str) -> int:
        """Remove every shadow of ``thing`` (setting ``delete_with_thing``); returns how many."""
        with self.db.engine.begin() as conn:
            live = conn.execute(
                text('SELECT COUNT(*) FROM shadows WHERE thing = :t AND "exists" = :yes'),
                {"t": thing, "yes": True},
            ).scalar()
            conn.execute(text("DELETE FROM shadows WHERE thing = :t"), {"t": thing})
            conn.execute(text("DELETE FROM shadow_history WHERE thing = :t"), {"t": thing})
            conn.execute(text("DELETE FROM shadow_rejections WHERE thing = :t"), {"t": thing})
            return int(live or 0)

    # -- the message outbox -------------------------------------------------------------------

    def last_message_id(self) -> int:
        with self.db.engine.connect() as conn:
            value = conn.execute(text("SELECT MAX(id) FROM shadow_messages")).scalar()
            return int(value or 0)

    def messages_after(self, message_id: int, limit: int = 1000) -> list[tuple[int, str, bytes]]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, topic, payload FROM shadow_messages WHERE id > :id "
                    "ORDER BY id LIMIT :limit"
                ),
                {"id": message_id, "limit": limit},
            )
            return [(i, t, p.encode("utf-8")) for i, t, p in rows]

    def prune_messages(self, older_than: float) -> int:
        with self.db.engine.begin() as conn:
            result = conn.execute(
                text("DELETE FROM shadow_messages WHERE created_at < :t"), {"t": older_than}
            )
            return int(result.rowcount or 0)
