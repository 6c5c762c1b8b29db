"""Local topics: SNS-like fan-out to local queues, where the ``sns`` action delivers while no
AWS endpoint is configured.

One SQLite file (``<data dir>/topics.sqlite``) holds the topics and their subscriptions; the
messages themselves go to the queues' own file (``rules.local.queues``). It behaves like a
small SNS whose only subscribers are SQS queues:

- a topic exists once created (``thingcore topics create NAME``): publishing to one that does
  not exist fails for good, as SNS answers ``NotFound``; a topic without subscribers takes the
  message and delivers it nowhere, as SNS does;
- ``publish`` adds the message to every subscribed queue in one transaction of the queue file
  (all of them or none), with the publisher's message id: a redelivery of the same message
  (the rules outbox after a crash) adds nothing to a queue that still holds it;
- a subscription gets SNS's JSON envelope (``Type``, ``MessageId``, ``TopicArn``, ``Subject``,
  ``Message``, ``Timestamp``, ``MessageAttributes``), or with ``raw`` the message itself and
  its attributes as the queue message's attributes (SNS's ``RawMessageDelivery``). The
  envelope is not signed: there is no SNS certificate to verify it against;
- with ``json_structure`` (SNS's ``MessageStructure=json``) the message is a JSON object with
  a ``"default"`` text and optionally an ``"sqs"`` text, which is what queues get.

``TopicStore`` is thread-safe, and several processes may share the file (the CLI beside a
running server), like the queue store.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rules.config import LocalTargetSettings
from rules.errors import TargetError
from rules.local.idempotency import check_key
from rules.local.queues import QueueStore, SendItem, check_queue_name
from rules.local.sqlite import BUSY_TIMEOUT, SqliteFile

TOPIC_NAME = re.compile(r"(?=.{1,256}\Z)[A-Za-z0-9_-]+(?:\.fifo)?\Z")
"""SNS's topic names: 1 to 256 letters, digits, '-' or '_', a FIFO topic's ending ``.fifo``."""
MAX_MESSAGE = 262_144
"""Bytes in one message at most (SNS's limit, 256 KiB)."""
MAX_SUBJECT = 100
"""Characters in a subject at most (SNS's limit)."""
MAX_ATTRIBUTES = 10
"""Message attributes at most (SNS's limit for a message delivered to SQS)."""
MAX_SUBSCRIPTIONS = 1000
"""Queues subscribed to one topic at most: a publish adds a message to each in one
transaction, so the fan-out of one message stays bounded."""
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"
SCHEMA_VERSION = 1

_REGION = re.compile(r"[a-z0-9-]{1,32}")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS topics (
        name TEXT PRIMARY KEY,
        created_at REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS subscriptions (
        topic TEXT NOT NULL,
        queue TEXT NOT NULL,
        raw INTEGER NOT NULL,           -- 1: the message as is (SNS's RawMessageDelivery)
        created_at REAL NOT NULL,
        PRIMARY KEY (topic, queue)
    ) WITHOUT ROWID""",
)


class TopicError(TargetError):
    """A topic operation that cannot be done: a bad name or message, an unknown topic, or a
    topics file that cannot be used (``retryable`` when waiting may help: a lock, a full disk)."""


def check_topic_name(name: object) -> str:
    """``name`` if it is a valid topic name, else ``TopicError`` saying what is valid."""
    if not isinstance(name, str) or not TOPIC_NAME.match(name):
        raise TopicError(
            f"invalid topic name {name!r:.300}: use 1 to 256 letters, digits, '-' or '_' "
            "(a FIFO topic's name ends with '.fifo')"
        )
    return name


@dataclass(frozen=True, slots=True)
class TopicSubscription:
    """A queue subscribed to a topic."""

    topic: str
    queue: str
    raw: bool
    """The message as is (SNS's RawMessageDelivery), not wrapped in SNS's JSON envelope."""

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "raw": self.raw}


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as ``TopicStore.topics`` returns it."""

    name: str
    arn: str
    subscriptions: tuple[TopicSubscription, ...]
    """By queue name."""

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` shape (camelCase keys)."""
        return {
            "name": self.name,
            "topicArn": self.arn,
            "subscriptions": [s.as_dict() for s in self.subscriptions],
        }


def _timestamp(epoch: float) -> str:
    """SNS's ``Timestamp``: ISO 8601 UTC with milliseconds, ``2024-05-02T00:54:06.655Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def message_text(body: object) -> str:
    """The message as text: SNS messages are UTF-8 text, a binary one is refused."""
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if not isinstance(body, bytes):
        raise TopicError(f"a message body must be bytes, not {type(body).__name__}")
    if not body:
        raise TopicError("the message is empty; SNS takes no empty messages")
    if len(body) > MAX_MESSAGE:
        raise TopicError(
            f"the message is {len(body)} bytes; a topic takes at most {MAX_MESSAGE} (256 KiB)"
        )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise TopicError(
            "a topic message must be UTF-8 text, as SNS requires; a binary rule output can be "
            "sent base64-encoded (SELECT encode(*, 'base64') AS data FROM ...)"
        ) from None


def structured_text(text: str) -> str:
    """The text queues get from a ``MessageStructure=json`` message: its ``"sqs"`` value, else
    its ``"default"`` one."""
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("default"), str):
        raise TopicError(
            'with the JSON message structure the message must be a JSON object with a "default" '
            'text (and optionally an "sqs" text for queues), such as {"default": "..."}'
        )
    chosen = document.get("sqs", document["default"])
    if not isinstance(chosen, str):
        raise TopicError(
            'the "sqs" value of a JSON-structured message must be text, not '
            f"{type(chosen).__name__}"
        )
    return chosen


def _check_subject(subject: object) -> str:
    """SNS's subject rule: 1 to 100 printable characters, no line breaks."""
    if (
        not isinstance(subject, str)
        or not 1 <= len(subject) <= MAX_SUBJECT
        or any(unicodedata.category(c).startswith("C") for c in subject)
    ):
        raise TopicError(
            f"a subject must be 1 to {MAX_SUBJECT} printable characters without line breaks, "
            f"not {subject!r:.120}"
        )
    return subject


def _check_attributes(attributes: object) -> dict[str, str]:
    if not isinstance(attributes, dict):
        raise TopicError(f"attributes must be a dict of strings, not {type(attributes).__name__}")
    if len(attributes) > MAX_ATTRIBUTES:
        raise TopicError(
            f"a topic message has at most {MAX_ATTRIBUTES} attributes, not {len(attributes)}"
        )
    for name, value in attributes.items():
        # SNS's attribute names: its characters, no leading "AWS." or "Amazon." (reserved).
        if (
            not isinstance(name, str)
            or not _ATTRIBUTE_NAME.fullmatch(name)
            or name.lower().startswith(("aws.", "amazon."))
        ):
            raise TopicError(
                f"invalid attribute name {name!r:.80}: use 1 to 256 letters, digits, '_', '-' "
                "or '.', not starting with 'AWS.' or 'Amazon.'"
            )
        if not isinstance(value, str):
            raise TopicError(f"attribute {name!r} must be a string, not {value!r:.80}")
    return dict(attributes)


class TopicStore(SqliteFile):
    """Every local topic and its subscribed queues, in one SQLite file; see the module
    docstring for the behaviour. Use it as a context manager, or call ``close`` (which does
    not close ``queues``: its owner does).

    Args:
        path: The SQLite file (created with its folder).
        queues: Where published messages go.
        region: The region in the topics' ARNs (``arn:aws:sns:<region>:<account>:<name>``).
        account: The account id in the topics' ARNs (12 digits).
        synchronous: SQLite ``synchronous``: NORMAL survives a killed process, FULL a power loss.
        clock: Epoch seconds now (the envelope's ``Timestamp``; tests pass a fake one).
        busy_timeout: Seconds a statement waits for another process's write lock before it
            fails with a retryable ``TopicError``.
    """

    what = "topics database"
    error = TopicError

    def __init__(
        self,
        path: Path,
        queues: QueueStore,
        *,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        if not _REGION.fullmatch(region):
            raise TopicError(f"invalid region {region!r:.80}: such as us-east-1")
        if not (account.isascii() and account.isdigit() and len(account) == 12):
            raise TopicError(f"invalid account id {account!r:.80}: 12 digits, as in AWS ARNs")
        self.queues = queues
        self.region = region
        self.account = account
        self._clock = clock
        super().__init__(path, synchronous=synchronous, busy_timeout=busy_timeout)
        self._create_schema(_SCHEMA, SCHEMA_VERSION)

    @classmethod
    def from_settings(
        cls,
        settings: LocalTargetSettings,
        data_dir: Path,
        queues: QueueStore,
        *,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
    ) -> TopicStore:
        """The store at ``settings.topics(data_dir)``, publishing to ``queues``."""
        return cls(
            settings.topics(data_dir),
            queues,
            region=region,
            account=account,
            synchronous=settings.synchronous,
        )

    def arn(self, topic: str) -> str:
        """The topic's ARN, as in the envelope's ``TopicArn``."""
        return f"arn:aws:sns:{self.region}:{self.account}:{check_topic_name(topic)}"

    # -- topics and subscriptions ----------------------------------------------------------------

    def create(self, topic: str) -> bool:
        """Create ``topic``; False if it exists already (SNS's CreateTopic is idempotent too)."""
        check_topic_name(topic)
        with self._transaction(write=True) as db:
            added = db.execute(
                "INSERT OR IGNORE INTO topics (name, created_at) VALUES (?, ?)",
                (topic, self._clock()),
            ).rowcount
        return added > 0

    def delete(self, topic: str) -> bool:
        """Delete ``topic`` and its subscriptions (the queues and their messages stay); False
        if there is no such topic."""
        check_topic_name(topic)
        with self._transaction(write=True) as db:
            db.execute("DELETE FROM subscriptions WHERE topic = ?", (topic,))
            deleted = db.execute("DELETE FROM topics WHERE name = ?", (topic,)).rowcount
        return deleted > 0

    def subscribe(self, topic: str, queue: str, *, raw: bool = False) -> bool:
        """Subscribe ``queue`` to ``topic`` (which must exist; the queue is made by its first
        message); False if it was subscribed already with the same ``raw``. Subscribing again
        with another ``raw`` changes it."""
        check_topic_name(topic)
        check_queue_name(queue)
        with self._transaction(write=True) as db:
            self._require(db, topic)
            row = db.execute(
                "SELECT raw FROM subscriptions WHERE topic = ? AND queue = ?", (topic, queue)
            ).fetchone()
            if row is not None:
                if bool(row[0]) == raw:
                    return False
                db.execute(
                    "UPDATE subscriptions SET raw = ? WHERE topic = ? AND queue = ?",
                    (raw, topic, queue),
                )
                return True
            (count,) = db.execute(
                "SELECT COUNT(*) FROM subscriptions WHERE topic = ?", (topic,)
            ).fetchone()
            if count >= MAX_SUBSCRIPTIONS:
                raise TopicError(
                    f"topic {topic} already has {count} subscriptions, the most one topic may "
                    "have; publish to several topics instead"
                )
            db.execute(
                "INSERT INTO subscriptions (topic, queue, raw, created_at) VALUES (?, ?, ?, ?)",
                (topic, queue, raw, self._clock()),
            )
        return True

    def unsubscribe(self, topic: str, queue: str) -> bool:
        """Stop delivering ``topic``'s messages to ``queue``; False if it was not subscribed.
        ``TopicError`` if there is no such topic."""
        check_topic_name(topic)
        check_queue_name(queue)
        with self._transaction(write=True) as db:
            self._require(db, topic)
            removed = db.execute(
                "DELETE FROM subscriptions WHERE topic = ? AND queue = ?", (topic, queue)
            ).rowcount
        return removed > 0

    def topics(self) -> list[TopicInfo]:
        """Every topic, by name, with its subscriptions."""
        with self._transaction(write=False) as db:
            names = [n for (n,) in db.execute("SELECT name FROM topics ORDER BY name")]
            found: dict[str, list[TopicSubscription]] = {name: [] for name in names}
            for topic, queue, raw in db.execute(
                "SELECT topic, queue, raw FROM subscriptions ORDER BY topic, queue"
            ):
                if topic in found:
                    found[topic].append(TopicSubscription(topic, queue, bool(raw)))
        return [TopicInfo(name, self.arn(name), tuple(subs)) for name, subs in found.items()]

    def subscriptions(self, topic: str) -> list[TopicSubscription]:
        """``topic``'s subscriptions by queue name; ``TopicError`` if there is no such topic."""
        check_topic_name(topic)
        with self._transaction(write=False) as db:
            self._require(db, topic)
            return self._subscriptions(db, topic)

    # -- publishing ------------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        body: bytes,
        *,
        message_id: str,
        attributes: dict[str, str] | None = None,
        subject: str | None = None,
        json_structure: bool = False,
    ) -> int:
        """Add the message to every queue subscribed to ``topic``, in one transaction (all or
        none); how many queues it was added to (a queue that holds ``message_id`` already is
        not counted: nothing was added there). 0 for a topic without subscribers.

        ``TopicError`` (not retryable) for an unknown topic, a message that is not UTF-8 text
        or too long, a bad subject or attributes, and a ``json_structure`` message that is not
        a JSON object with a ``"default"`` text; retryable for a file that is busy or full.
        """
        check_topic_name(topic)
        check_key(message_id, "a message id", TopicError)
        message = message_text(body)
        if json_structure:
            message = structured_text(message)
        given = _check_attributes(attributes if attributes is not None else {})
        if subject is not None:
            _check_subject(subject)
        with self._transaction(write=False) as db:
            self._require(db, topic)
            subscriptions = self._subscriptions(db, topic)
        if not subscriptions:
            return 0
        raw_body = message.encode("utf-8")
        envelope = self._envelope(topic, message, message_id, given, subject)
        items = [
            SendItem(
                queue=s.queue,
                body=raw_body if s.raw else envelope,
                message_id=message_id,
                # RawMessageDelivery passes the attributes as the queue message's attributes;
                # the envelope carries them in its body instead.
                attributes=given if s.raw else {},
            )
            for s in subscriptions
        ]
        try:
            return self.queues.send_batch(items)
        except TopicError:
            raise
        except TargetError as exc:  # QueueError: a bad message id, a busy queue file...
            raise TopicError(f"topic {topic}: {exc}", retryable=exc.retryable) from exc

    def _envelope(
        self,
        topic: str,
        message: str,
        message_id: str,
        attributes: dict[str, str],
        subject: str | None,
    ) -> bytes:
        """SNS's notification document, in SNS's key order, without the signature fields."""
        document: dict[str, Any] = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": self.arn(topic),
        }
        if subject is not None:
            document["Subject"] = subject
        document["Message"] = message
        document["Timestamp"] = _timestamp(self._clock())
        if attributes:
            document["MessageAttributes"] = {
                name: {"Type": "String", "Value": value} for name, value in attributes.items()
            }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    # -- internals -------------------------------------------------------------------------------

    def _subscriptions(self, db: sqlite3.Connection, topic: str) -> list[TopicSubscription]:
        return [
            TopicSubscription(topic, queue, bool(raw))
            for queue, raw in db.execute(
                "SELECT queue, raw FROM subscriptions WHERE topic = ? ORDER BY queue", (topic,)
            )
        ]

    def _require(self, db: sqlite3.Connection, topic: str) -> None:
        """``TopicError`` naming the topics there are when ``topic`` does not exist."""
        if db.execute("SELECT 1 FROM topics WHERE name = ?", (topic,)).fetchone():
            return
        shown = 20
        names = [
            n for (n,) in db.execute("SELECT name FROM topics ORDER BY name LIMIT ?", (shown + 1,))
        ]
        hint = f"create it with `thingcore topics create {topic}`"
        if not names:
            raise TopicError(f"no topic named {topic}; there are no topics yet: {hint}")
        listed = ", ".join(names[:shown])
        if len(names) > shown:
            (total,) = db.execute("SELECT COUNT(*) FROM topics").fetchone()
            listed += f" and {total - shown} more"
        raise TopicError(f"no topic named {topic}; topics: {listed} ({hint})")
