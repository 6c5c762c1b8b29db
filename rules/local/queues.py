"""Local queues: durable SQLite queues that rules deliver to, and the API to consume them.

One SQLite file (``<data dir>/queues.sqlite``) holds every queue. It behaves like a small SQS:

- a message sent with an id that is already in its queue (visible or in flight) is not added
  again, so a producer that retries a batch (the rules outbox after a crash) adds nothing twice;
- ``receive`` hands out the visible messages of the highest priority first, oldest first within
  a priority, and hides them for a visibility timeout; a consumer deletes a message with the
  receipt handle it got, or the message reappears when the timeout ends;
- a message received ``max_receives`` times that reappears once more is moved to the queue's
  dead-letter queue ``<queue>-dlq`` (with an attribute ``deadLetterSourceQueue``) instead.

Durability: a send is committed before it returns (``synchronous=NORMAL`` survives a killed
process, ``FULL`` a power loss). Several processes may use the file at once (WAL; writers wait
up to ``BUSY_TIMEOUT`` for each other). ``QueueStore`` is thread-safe.

Consuming from user code::

    store = QueueStore(Path("var/queues.sqlite"))
    consumer = QueueConsumer(store, "orders", idempotency=IdempotencyStore(Path("var/seen.sqlite")))
    consumer.run(lambda message: print(message.body), stop=stop_event)
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rules.config import LocalTargetSettings
from rules.errors import TargetError
from rules.local.idempotency import IdempotencyStore, check_key
from rules.local.sqlite import BUSY_TIMEOUT, SqliteFile

log = logging.getLogger(__name__)

QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,160}")
"""SQS names are 1-80 of these characters; rule dead-letter queues are ``<rule>-dlq``."""
DEAD_LETTER_SUFFIX = "-dlq"
SOURCE_ATTRIBUTE = "deadLetterSourceQueue"
"""The attribute a dead-lettered message carries: the queue it came from."""
MAX_PRIORITY = 9
MAX_BATCH = 1000
"""Messages one ``receive`` or ``peek`` returns at most."""
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_VALUE = 65536
"""Characters in one attribute value at most."""
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS queues (
        name TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        dead_letter INTEGER NOT NULL DEFAULT 0  -- 1: a dead-letter queue, its messages stay put
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY,        -- send order: "oldest first" within a priority
        queue TEXT NOT NULL,
        message_id TEXT NOT NULL,
        body BLOB NOT NULL,
        priority INTEGER NOT NULL,
        attributes TEXT NOT NULL,       -- JSON object of strings
        sent_at REAL NOT NULL,
        in_flight INTEGER NOT NULL DEFAULT 0,
        visible_at REAL NOT NULL,       -- of an in-flight message: when it may be received again
        receive_count INTEGER NOT NULL DEFAULT 0,
        receipt TEXT,                   -- of the latest receive, kept until the next one
        UNIQUE (queue, message_id)
    )""",
    # receive: the first visible rows of a queue in (priority DESC, seq) order, without a sort.
    "CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, in_flight, priority DESC, seq)",
    # receive: the in-flight rows of a queue whose visibility timeout has ended, as one range.
    "CREATE INDEX IF NOT EXISTS messages_expiry ON messages (queue, in_flight, visible_at)",
)


class QueueError(TargetError):
    """A queue operation that cannot be done: a bad name or argument, an unknown queue, or a
    queue file that cannot be used (``retryable`` when waiting may help: a lock, a full disk)."""


def check_queue_name(name: object) -> str:
    """``name`` if it is a valid queue name, else ``QueueError`` saying what is valid."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise QueueError(
            f"invalid queue name {name!r:.200}: use 1 to 160 letters, digits, '-' or '_'"
        )
    return name


def dead_letter_name(queue: str) -> str:
    """The dead-letter queue of ``queue``: ``<queue>-dlq`` (the name cut to keep 160 chars)."""
    return queue[: 160 - len(DEAD_LETTER_SUFFIX)] + DEAD_LETTER_SUFFIX


def is_dead_letter_name(queue: str) -> bool:
    return queue.endswith(DEAD_LETTER_SUFFIX)


def _check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise QueueError(f"priority must be an integer from 0 to {MAX_PRIORITY}, not {priority!r}")
    if not 0 <= priority <= MAX_PRIORITY:
        raise QueueError(f"priority must be from 0 to {MAX_PRIORITY}, not {priority}")
    return priority


def _check_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise QueueError(f"{what} must be a number of seconds, not {value!r}")
    if value < 0:
        raise QueueError(f"{what} must not be negative, not {value}")
    return float(value)


def _check_count(value: object, what: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise QueueError(f"{what} must be an integer from 1 to {most}, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class SendItem:
    """One message to add to a queue; checks itself when made (``QueueError``).

    ``message_id`` is the producer's stable id: a message whose id is already in the queue
    (visible or in flight) is not added again. ``priority`` 0 to 9, higher received first.
    """

    queue: str
    body: bytes
    message_id: str
    priority: int = 0
    attributes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        check_key(self.message_id, "a message id", QueueError)
        _check_priority(self.priority)
        if isinstance(self.body, bytearray | memoryview):
            object.__setattr__(self, "body", bytes(self.body))
        elif not isinstance(self.body, bytes):
            raise QueueError(f"a message body must be bytes, not {type(self.body).__name__}")
        if not isinstance(self.attributes, dict):
            raise QueueError(
                f"attributes must be a dict of strings, not {type(self.attributes).__name__}"
            )
        if len(self.attributes) > MAX_ATTRIBUTES:
            raise QueueError(
                f"a message has at most {MAX_ATTRIBUTES} attributes, not {len(self.attributes)}"
            )
        for key, value in self.attributes.items():
            check_key(key, "an attribute name", QueueError)
            if not isinstance(value, str) or len(value) > MAX_ATTRIBUTE_VALUE:
                raise QueueError(
                    f"attribute {key!r} must be a string of at most {MAX_ATTRIBUTE_VALUE} "
                    f"characters, not {value!r:.80}"
                )
        # A copy: the caller's dict may change after the message is made.
        object.__setattr__(self, "attributes", dict(self.attributes))


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """A message as ``receive`` (with a receipt handle) or ``peek`` (without) returns it."""

    queue: str
    message_id: str
    body: bytes
    priority: int
    attributes: dict[str, str]
    sent_at: float
    """Epoch seconds when it was sent (to its first queue, for a dead-lettered message)."""
    receive_count: int
    """Receives including this one; for ``peek``, the receives so far."""
    receipt_handle: str | None
    """What ``delete`` and ``change_visibility`` take; None from ``peek``."""


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue's counts, as ``QueueStore.queues`` returns them."""

    name: str
    visible: int
    """Messages a receive may take now (including some that will go to the dead-letter queue)."""
    in_flight: int
    """Received messages within their visibility timeout."""
    dead_letter: str
    """Where messages received too often go: ``<name>-dlq``; "" for a dead-letter queue."""
    oldest_age: float | None
    """Seconds since the oldest message was sent; None when the queue is empty."""

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` shape (camelCase keys)."""
        return {
            "name": self.name,
            "visible": self.visible,
            "inFlight": self.in_flight,
            "deadLetterQueue": self.dead_letter or None,
            "oldestAge": self.oldest_age,
        }


_COLUMNS = "seq, queue, message_id, body, priority, attributes, sent_at, receive_count"
_Row = tuple[int, str, str, bytes, int, str, float, int]
READY = (
    f"SELECT {_COLUMNS} FROM messages WHERE queue = ? AND in_flight = 0 "
    "ORDER BY priority DESC, seq LIMIT ?"
)
"""The next visible messages of a queue: a range of the index ``messages_ready``, no sort."""


def _message(row: _Row, receipt: str | None, receive_count: int) -> QueueMessage:
    _, queue, message_id, body, priority, attributes, sent_at, _ = row
    return QueueMessage(
        queue=queue,
        message_id=message_id,
        body=body,
        priority=priority,
        attributes=json.loads(attributes),
        sent_at=sent_at,
        receive_count=receive_count,
        receipt_handle=receipt,
    )


def _parse_receipt(handle: object) -> int:
    """The message row a receipt handle names (``<seq>.<random>``)."""
    if isinstance(handle, str):
        seq, dot, token = handle.partition(".")
        if dot and seq.isdigit() and token:
            return int(seq)
    raise QueueError(f"{handle!r:.80} is not a receipt handle returned by receive")


class QueueStore(SqliteFile):
    """Every local queue, in one SQLite file; see the module docstring for the behaviour.

    One connection per store, shared by threads under a lock (the server calls it from
    ``asyncio.to_thread`` workers). Use it as a context manager, or call ``close``.

    Args:
        path: The SQLite file (created with its folder).
        visibility_timeout: Seconds a received message stays hidden, unless receive says.
        max_receives: Receives after which a message that reappears is dead-lettered.
        synchronous: SQLite ``synchronous``: NORMAL survives a killed process, FULL a power loss.
        clock: Epoch seconds now (tests pass a fake one).
        busy_timeout: Seconds a statement waits for another process's write lock before it
            fails with a retryable ``QueueError``.
    """

    what = "queue database"
    error = QueueError

    def __init__(
        self,
        path: Path,
        *,
        visibility_timeout: float = 30.0,
        max_receives: int = 5,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.visibility_timeout = _check_seconds(visibility_timeout, "visibility_timeout")
        self.max_receives = _check_count(max_receives, "max_receives", 1_000_000)
        self._clock = clock
        super().__init__(path, synchronous=synchronous, busy_timeout=busy_timeout)
        self._create_schema(_SCHEMA, SCHEMA_VERSION)

    @classmethod
    def from_settings(cls, settings: LocalTargetSettings, data_dir: Path) -> QueueStore:
        """The store at ``settings.queues(data_dir)`` with the settings' timeouts."""
        return cls(
            settings.queues(data_dir),
            visibility_timeout=settings.queue_visibility_timeout,
            max_receives=settings.queue_max_receives,
            synchronous=settings.synchronous,
        )

    # -- sending -------------------------------------------------------------------------------

    def send_batch(self, items: Sequence[SendItem]) -> int:
        """Add ``items`` in one transaction (all or none); how many were new.

        Queues are created by their first message. An item whose id is already in its queue,
        or earlier in the batch, is skipped.
        """
        if not items:
            return 0
        now = self._clock()
        # A dead-letter queue made by a first send (a rule's DLQ) is marked as one too.
        names = {item.queue for item in items}
        with self._transaction(write=True) as db:
            db.executemany(
                "INSERT OR IGNORE INTO queues (name, created_at, dead_letter) VALUES (?, ?, ?)",
                [(name, now, is_dead_letter_name(name)) for name in sorted(names)],
            )
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO messages "
                "(queue, message_id, body, priority, attributes, sent_at, visible_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        item.queue,
                        item.message_id,
                        item.body,
                        item.priority,
                        json.dumps(item.attributes, separators=(",", ":")),
                        now,
                        now,
                    )
                    for item in items
                ),
            )
            return db.total_changes - before

    def send(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        priority: int = 0,
        attributes: dict[str, str] | None = None,
    ) -> str:
        """Add one message; its id (a new uuid4 unless given). A duplicate id adds nothing."""
        item = SendItem(
            queue,
            body,
            message_id if message_id is not None else str(uuid.uuid4()),
            priority,
            attributes if attributes is not None else {},
        )
        self.send_batch([item])
        return item.message_id

    # -- receiving -----------------------------------------------------------------------------

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout: float | None = None
    ) -> list[QueueMessage]:
        """Take up to ``max_messages`` visible messages, highest priority first, then oldest.

        Each is hidden for ``visibility_timeout`` seconds (default: the store's) and gets a new
        receipt handle. Messages received ``max_receives`` times whose timeout ended are moved
        to the dead-letter queue on the way. An empty list when nothing is visible.
        """
        check_queue_name(queue)
        limit = _check_count(max_messages, "max_messages", MAX_BATCH)
        timeout = (
            self.visibility_timeout
            if visibility_timeout is None
            else _check_seconds(visibility_timeout, "visibility_timeout")
        )
        with self._transaction(write=True) as db:
            is_dead_letter = self._require(db, queue)
            now = self._clock()
            self._release_expired(db, queue, is_dead_letter, now)
            rows: list[_Row] = db.execute(READY, (queue, limit)).fetchall()
            received = []
            for row in rows:
                receipt = f"{row[0]}.{uuid.uuid4().hex}"
                db.execute(
                    "UPDATE messages SET in_flight = 1, visible_at = ?, receipt = ?, "
                    "receive_count = receive_count + 1 WHERE seq = ?",
                    (now + timeout, receipt, row[0]),
                )
                received.append(_message(row, receipt, row[7] + 1))
        return received

    def _release_expired(
        self, db: sqlite3.Connection, queue: str, is_dead_letter: bool, now: float
    ) -> None:
        """Make in-flight messages whose timeout ended visible again, or dead-letter them."""
        expired: list[_Row] = db.execute(
            f"SELECT {_COLUMNS} FROM messages "
            "WHERE queue = ? AND in_flight = 1 AND visible_at <= ?",
            (queue, now),
        ).fetchall()
        moving = [] if is_dead_letter else [r for r in expired if r[7] >= self.max_receives]
        moved = {r[0] for r in moving}
        # The receipt stays: its holder may still delete the message until it is received again.
        db.executemany(
            "UPDATE messages SET in_flight = 0 WHERE seq = ?",
            [(r[0],) for r in expired if r[0] not in moved],
        )
        if not moving:
            return
        target = dead_letter_name(queue)
        db.execute(
            "INSERT OR IGNORE INTO queues (name, created_at, dead_letter) VALUES (?, ?, 1)",
            (target, now),
        )
        # The moved copy keeps the message id (a duplicate id already dead-lettered is not
        # added twice) and the original send time; its receive count starts again, and the
        # receipt handles held for the original go stale.
        db.executemany(
            "INSERT OR IGNORE INTO messages "
            "(queue, message_id, body, priority, attributes, sent_at, visible_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    target,
                    message_id,
                    body,
                    priority,
                    json.dumps(
                        {**json.loads(attributes), SOURCE_ATTRIBUTE: queue}, separators=(",", ":")
                    ),
                    sent_at,
                    now,
                )
                for (_, _, message_id, body, priority, attributes, sent_at, _) in moving
            ],
        )
        db.executemany("DELETE FROM messages WHERE seq = ?", [(r[0],) for r in moving])
        log.info("moved %d messages from queue %s to %s", len(moving), queue, target)

    def delete(self, queue: str, receipt_handle: str) -> bool:
        """Delete the message a receive returned; False if the handle is stale (the message
        was received again, dead-lettered, purged or already deleted)."""
        check_queue_name(queue)
        seq = _parse_receipt(receipt_handle)
        with self._transaction(write=True) as db:
            deleted = db.execute(
                "DELETE FROM messages WHERE seq = ? AND queue = ? AND receipt = ?",
                (seq, queue, receipt_handle),
            ).rowcount
        return deleted > 0

    def change_visibility(self, queue: str, receipt_handle: str, timeout: float) -> bool:
        """Hide a received message for ``timeout`` seconds from now (0: visible at once);
        False if the handle is stale."""
        check_queue_name(queue)
        seq = _parse_receipt(receipt_handle)
        hidden = _check_seconds(timeout, "timeout")
        with self._transaction(write=True) as db:
            changed = db.execute(
                "UPDATE messages SET in_flight = 1, visible_at = ? "
                "WHERE seq = ? AND queue = ? AND receipt = ?",
                (self._clock() + hidden, seq, queue, receipt_handle),
            ).rowcount
        return changed > 0

    # -- looking -------------------------------------------------------------------------------

    def peek(self, queue: str, limit: int = 10) -> list[QueueMessage]:
        """Up to ``limit`` messages a receive would take now, in its order; changes nothing."""
        check_queue_name(queue)
        count = _check_count(limit, "limit", MAX_BATCH)
        with self._transaction(write=False) as db:
            is_dead_letter = self._require(db, queue)
            now = self._clock()
            ready: list[_Row] = db.execute(READY, (queue, count)).fetchall()
            # In-flight messages whose timeout ended are visible too, unless receive would
            # move them to the dead-letter queue.
            most = None if is_dead_letter else self.max_receives
            expired: list[_Row] = db.execute(
                f"SELECT {_COLUMNS} FROM messages "
                "WHERE queue = ? AND in_flight = 1 AND visible_at <= ? "
                "AND (? IS NULL OR receive_count < ?) ORDER BY priority DESC, seq LIMIT ?",
                (queue, now, most, most, count),
            ).fetchall()
        rows = heapq.nsmallest(count, ready + expired, key=lambda r: (-r[4], r[0]))
        return [_message(row, None, row[7]) for row in rows]

    def create_queue(self, queue: str) -> bool:
        """Create an empty queue; False if it exists (idempotent, as SQS's CreateQueue)."""
        check_queue_name(queue)
        with self._transaction(write=True) as db:
            made = db.execute(
                "INSERT OR IGNORE INTO queues (name, created_at, dead_letter) VALUES (?, ?, ?)",
                (queue, self._clock(), is_dead_letter_name(queue)),
            ).rowcount
        return made > 0

    def delete_queue(self, queue: str) -> int:
        """Delete ``queue`` with its messages (its dead-letter queue stays); how many went.
        ``QueueError`` if there is no such queue."""
        check_queue_name(queue)
        with self._transaction(write=True) as db:
            self._require(db, queue)
            count: int = db.execute("DELETE FROM messages WHERE queue = ?", (queue,)).rowcount
            db.execute("DELETE FROM queues WHERE name = ?", (queue,))
        return count

    def purge(self, queue: str) -> int:
        """Delete every message of ``queue`` (visible and in flight); how many."""
        check_queue_name(queue)
        with self._transaction(write=True) as db:
            self._require(db, queue)
            return db.execute("DELETE FROM messages WHERE queue = ?", (queue,)).rowcount

    def queues(self) -> list[QueueInfo]:
        """Every queue, by name, with its counts (empty queues too)."""
        with self._transaction(write=False) as db:
            return self._infos(db, None)

    def info(self, queue: str) -> QueueInfo:
        """One queue's counts; ``QueueError`` if there is no such queue."""
        check_queue_name(queue)
        with self._transaction(write=False) as db:
            self._require(db, queue)
            [found] = self._infos(db, queue)
        return found

    def depth(self, queue: str) -> int:
        """Messages in ``queue``, visible and in flight; 0 for a queue not created yet."""
        check_queue_name(queue)
        with self._transaction(write=False) as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM messages WHERE queue = ?", (queue,)
            ).fetchone()
        return int(count)

    # -- internals -----------------------------------------------------------------------------

    def _infos(self, db: sqlite3.Connection, queue: str | None) -> list[QueueInfo]:
        now = self._clock()
        rows = db.execute(
            "SELECT q.name, q.dead_letter, "
            "COALESCE(SUM(m.in_flight = 0 OR m.visible_at <= :now), 0), "
            "COALESCE(SUM(m.in_flight = 1 AND m.visible_at > :now), 0), "
            "MIN(m.sent_at) "
            "FROM queues AS q LEFT JOIN messages AS m ON m.queue = q.name "
            "WHERE :name IS NULL OR q.name = :name "
            "GROUP BY q.name ORDER BY q.name",
            {"now": now, "name": queue},
        ).fetchall()
        return [
            QueueInfo(
                name=name,
                visible=visible,
                in_flight=in_flight,
                dead_letter="" if dead_letter else dead_letter_name(name),
                oldest_age=None if oldest is None else max(0.0, now - oldest),
            )
            for name, dead_letter, visible, in_flight, oldest in rows
        ]

    def _require(self, db: sqlite3.Connection, queue: str) -> bool:
        """Whether ``queue`` is a dead-letter queue; ``QueueError`` naming the queues there
        are when it does not exist."""
        row = db.execute("SELECT dead_letter FROM queues WHERE name = ?", (queue,)).fetchone()
        if row is not None:
            return bool(row[0])
        shown = 20
        names = [
            n for (n,) in db.execute("SELECT name FROM queues ORDER BY name LIMIT ?", (shown + 1,))
        ]
        if not names:
            raise QueueError(f"no queue named {queue}; there are no queues yet")
        listed = ", ".join(names[:shown])
        if len(names) > shown:
            (total,) = db.execute("SELECT COUNT(*) FROM queues").fetchone()
            listed += f" and {total - shown} more"
        raise QueueError(f"no queue named {queue}; queues: {listed}")


class QueueConsumer:
    """Process a queue's messages with a handler, deleting each one the handler finished.

    Delivery is at least once: a handler that raises (or a process that dies while handling)
    leaves the message to reappear after its visibility timeout, and ``max_receives`` failures
    dead-letter it. With an ``IdempotencyStore``, each finished message id is recorded under
    ``consumer``, and a redelivered id (the process died between handling and deleting, or the
    producer sent it again after it was deleted) is deleted without calling the handler.

    Example::

        consumer = QueueConsumer(store, "orders", idempotency=seen, consumer="billing")
        consumer.run(bill, stop=stop_event)          # or, in a loop of your own:
        consumer.poll(bill)                           # one receive; returns how many handled
    """

    def __init__(
        self,
        store: QueueStore,
        queue: str,
        *,
        idempotency: IdempotencyStore | None = None,
        consumer: str = "default",
        visibility_timeout: float | None = None,
        wait: float = 0.2,
    ) -> None:
        self.store = store
        self.queue = check_queue_name(queue)
        self.idempotency = idempotency
        self.consumer = check_key(consumer, "a consumer name", QueueError)
        self.visibility_timeout = (
            None
            if visibility_timeout is None
            else _check_seconds(visibility_timeout, "visibility_timeout")
        )
        self.wait = _check_seconds(wait, "wait")
        self.failures = 0
        """Handler calls that raised (each message reappears after its visibility timeout)."""
        self.duplicates = 0
        """Messages deleted unhandled because the idempotency store had their id."""

    def poll(self, handler: Callable[[QueueMessage], None], *, max_messages: int = 10) -> int:
        """Receive once and handle what came: how many messages the handler finished."""
        return self._poll(handler, max_messages)[1]

    def run(
        self,
        handler: Callable[[QueueMessage], None],
        *,
        stop: threading.Event | None = None,
        max_messages: int = 10,
    ) -> None:
        """Poll until ``stop`` is set (forever without one), waiting ``wait`` seconds whenever
        the queue is empty."""
        stop = stop if stop is not None else threading.Event()
        while not stop.is_set():
            received, _ = self._poll(handler, max_messages)
            if not received:
                stop.wait(self.wait)

    async def messages(self, *, max_messages: int = 10) -> AsyncIterator[QueueMessage]:
        """The queue's messages as they come, forever; call ``ack`` for each one finished.

        The store is used from a worker thread, so the event loop is never blocked.
        ``ack`` blocks for a short write: from a coroutine, ``await asyncio.to_thread(
        consumer.ack, message)``. A message not acked reappears after its visibility timeout.
        """
        while True:
            batch = await asyncio.to_thread(self._receive, max_messages)
            if not batch:
                await asyncio.sleep(self.wait)
                continue
            for message in batch:
                if await asyncio.to_thread(self._already_done, message):
                    continue
                yield message

    def ack(self, message: QueueMessage) -> None:
        """Mark ``message`` finished: record its id (with idempotency), then delete it.

        A stale receipt handle (the message's visibility timeout ended and it was received
        again) is logged: the other receiver has it, and skips it if it uses the same
        idempotency store.
        """
        if message.receipt_handle is None:
            raise QueueError(
                "only a received message can be acknowledged (a peeked one has no receipt)"
            )
        if self.idempotency is not None:
            self.idempotency.record(self.consumer, message.message_id)
        if not self.store.delete(message.queue, message.receipt_handle):
            log.warning(
                "message %s of queue %s was acknowledged after its visibility timeout; "
                "it may be handled again",
                message.message_id,
                message.queue,
            )

    def _receive(self, max_messages: int) -> list[QueueMessage]:
        return self.store.receive(
            self.queue, max_messages=max_messages, visibility_timeout=self.visibility_timeout
        )

    def _already_done(self, message: QueueMessage) -> bool:
        """Whether the idempotency store has ``message``'s id; if so it is deleted."""
        if self.idempotency is None or not self.idempotency.seen(self.consumer, message.message_id):
            return False
        self.duplicates += 1
        if message.receipt_handle is not None:
            self.store.delete(message.queue, message.receipt_handle)
        return True

    def _poll(self, handler: Callable[[QueueMessage], None], max_messages: int) -> tuple[int, int]:
        batch = self._receive(max_messages)
        handled = 0
        for message in batch:
            if self._already_done(message):
                continue
            try:
                handler(message)
            except Exception:
                # User code: any failure leaves the message for a later try, counted and logged.
                self.failures += 1
                log.exception(
                    "handler failed on message %s of queue %s (receive %d); it reappears after "
                    "its visibility timeout",
                    message.message_id,
                    message.queue,
                    message.receive_count,
                )
                continue
            self.ack(message)
            handled += 1
        return len(batch), handled
