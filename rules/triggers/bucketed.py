"""Functions invoked by objects created in a local bucket, as S3 event notifications invoke
Lambda functions.

A function whose sidecar says::

    [[events]]
    bucket = "uploads"
    prefix = "images/"
    suffix = ".jpg"

is invoked once per object written to ``uploads`` whose key begins with ``prefix`` and ends
with ``suffix``, with S3's event document (one record per invocation, as S3 sends them)::

    {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                  "eventTime": "2024-05-01T12:00:00.123Z", "eventName": "ObjectCreated:Put",
                  "s3": {"s3SchemaVersion": "1.0", "configurationId": "<subscriber id>",
                         "bucket": {"name": "uploads", "arn": "arn:aws:s3:::uploads"},
                         "object": {"key": "images/a+b.jpg", "size": 3, "eTag": "<md5>",
                                    "sequencer": "0000000000000007"}}, ...}]}

The key is URL-encoded as S3 encodes it (``red flower.jpg`` is ``red+flower.jpg``; a handler
written for S3 calls ``urllib.parse.unquote_plus`` on it); the ETag has no quotes.

``BucketSource`` tails the bucket event log (``rules.triggers.bucket_log``) from its cursor and
delivers the events one at a time, in the log's order (which keeps each key's events in the
order of its writes). Delivery is at least once: the cursor moves past an event only after the
function handled it, or failed on it ``max_attempts`` times (Lambda's asynchronous invocation:
the first try and two retries, ``ctx.backoff`` apart) and it went to the local queue
``<function>-dlq``. Every try has the same ``context.message_id`` (``<log id>-<seq>``), so
``context.once`` and ``@idempotent`` handlers can skip an event they already finished. Every
failure is tried again, as Lambda retries an asynchronous invocation whatever the error (a
handler that does not load may be mid-edit). A source cancelled mid-invocation leaves its
cursor before that event: the next source delivers it again.

The cursor is named by the function and the subscription (bucket, prefix, suffix), so a
restarted server resumes where it stopped, events written while it was down included; a new
subscription (or a changed prefix or suffix) starts at the end of the log, as S3 notifications
see only objects created after they were configured.

As with S3, a function that writes into the bucket (and under the prefix) that invokes it
invokes itself again: write to another bucket or prefix. Only puts are events; deletes are not
logged (no ``ObjectRemoved`` yet).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from typing import Any
from urllib.parse import quote_plus

from rules.errors import TargetError
from rules.local.buckets import iso8601
from rules.local.functions import FunctionError
from rules.triggers.bucket_log import BucketEventLog, ObjectCreated
from rules.triggers.config import BucketEvent
from rules.triggers.context import TriggerContext

log = logging.getLogger("thingcore.triggers")

READ_BATCH = 100
"""Events read from the log at once."""
PRUNE_EVERY = 60.0
"""Seconds between prunes of the log at most (less for a short retention)."""
MAX_ERROR_WAIT = 10
"""Failed tries after which waits between tries of a failing log or queue stop growing."""
_REQUEST_IDS = uuid.UUID("6f1a2c3e-5b7d-4e8f-9a0b-1c2d3e4f5a6b")
"""The namespace of the request ids, which are stable per subscriber and event."""


def subscriber_id(function: str, event: BucketEvent) -> str:
    """The name of the cursor of ``function``'s subscription ``event``: stable across restarts,
    and another one when the bucket, prefix or suffix changes."""
    filters = json.dumps([event.prefix, event.suffix]).encode("utf-8")
    return f"{function}:{event.bucket}:{hashlib.sha256(filters).hexdigest()[:16]}"


def matches(event: BucketEvent, key: str) -> bool:
    """Whether S3 would notify ``event``'s subscriber of ``key`` (its prefix and suffix)."""
    return key.startswith(event.prefix) and key.endswith(event.suffix)


def notification(
    created: ObjectCreated, *, region: str, configuration_id: str, principal: str = "thingcore"
) -> dict[str, Any]:
    """S3's event notification document for one created object (one record)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": iso8601(created.time),
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": principal},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": created.sequencer,
                    "x-amz-id-2": created.message_id,
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": configuration_id,
                    "bucket": {
                        "name": created.bucket,
                        "ownerIdentity": {"principalId": principal},
                        "arn": f"arn:aws:s3:::{created.bucket}",
                    },
                    "object": {
                        # S3 URL-encodes the key in its notifications, spaces as "+".
                        "key": quote_plus(created.key, safe="/"),
                        "size": created.size,
                        "eTag": created.etag.strip('"'),
                        "sequencer": created.sequencer,
                    },
                },
            }
        ]
    }


class BucketSource:
    """Invokes ``function`` for each object created in ``event.bucket`` that its filters let
    through; see the module docstring. Run ``run()`` as a task; cancel it to stop."""

    def __init__(self, function: str, event: BucketEvent, ctx: TriggerContext) -> None:
        self.function = function
        self.event = event
        self.ctx = ctx
        self.subscriber = subscriber_id(function, event)
        self.position = 0
        """The seq of the last event handled (or skipped by the filters), once running."""
        self.delivered = 0
        """Events the function handled."""
        self.dead_lettered = 0
        """Events that went to ``<function>-dlq``."""
        self.errors = 0
        """Failures of the log or the dead-letter queue (each logged, then tried again)."""
        self._failures = 0

    async def run(self) -> None:
        """Deliver events until cancelled; never raises."""
        while True:
            try:
                await self._tail()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the source must outlive any failure: logged, retried
                self._failures += 1
                self.errors += 1
                log.exception(
                    "bucket source of function %s (bucket %s) failed; starting again from its "
                    "cursor",
                    self.function,
                    self.event.bucket,
                )
                await asyncio.sleep(self.ctx.backoff(min(self._failures, MAX_ERROR_WAIT)))

    async def _tail(self) -> None:
        events = await asyncio.to_thread(self._open)
        self.position = await asyncio.to_thread(
            events.subscribe, self.subscriber, self.event.bucket
        )
        self._failures = 0
        loop = asyncio.get_running_loop()
        retention = self.ctx.settings.bucket_events_retention
        prune_every = min(PRUNE_EVERY, retention / 4)
        next_prune = loop.time()
        while True:
            if loop.time() >= next_prune:
                await asyncio.to_thread(self._prune, events, self.position, retention)
                next_prune = loop.time() + prune_every
            batch = await asyncio.to_thread(
                events.read, self.position, self.event.bucket, READ_BATCH
            )
            if not batch:
                await asyncio.sleep(self.ctx.settings.poll_interval)
                continue
            saved = self.position
            for created in batch:
                if matches(self.event, created.key):
                    await self._deliver(created)
                    self.position = saved = created.seq
                    await asyncio.to_thread(self._save, events, saved)
                else:
                    self.position = created.seq
            if self.position > saved:
                await asyncio.to_thread(self._save, events, self.position)

    # -- one event -----------------------------------------------------------------------------

    async def _deliver(self, created: ObjectCreated) -> None:
        """Invoke the function on ``created`` until it succeeds, or dead-letter the event."""
        document = notification(created, region=self.ctx.region, configuration_id=self.subscriber)
        message_id = created.message_id
        request_id = str(uuid.uuid5(_REQUEST_IDS, f"{self.subscriber}/{message_id}"))
        attempt = 0
        while True:
            try:
                await self.ctx.functions.invoke(
                    self.function, document, request_id=request_id, message_id=message_id
                )
            except FunctionError as exc:
                if exc.error_type == "Closed":
                    # The server is stopping (this task is cancelled next): not a try.
                    await asyncio.sleep(self.ctx.settings.poll_interval)
                    continue
                attempt += 1
                if attempt < self.ctx.settings.max_attempts:
                    log.info(
                        "function %s failed on %s/%s (try %d), trying again: %s",
                        self.function,
                        created.bucket,
                        created.key,
                        attempt,
                        exc,
                    )
                    await asyncio.sleep(self.ctx.backoff(attempt))
                    continue
                await self._dead_letter(document, f"{exc} (after {attempt} tries)", message_id)
                return
            self.delivered += 1
            return

    async def _dead_letter(self, document: dict[str, Any], error: str, message_id: str) -> None:
        """Keep the event in ``<function>-dlq``, trying until the queue takes it (the cursor
        must not pass an event that is neither handled nor kept)."""
        failures = 0
        while True:
            try:
                await asyncio.to_thread(
                    self.ctx.dead_letter, self.function, document, error, message_id=message_id
                )
            except TargetError as exc:
                failures += 1
                self.errors += 1
                log.warning(
                    "cannot dead-letter an event of function %s, trying again: %s",
                    self.function,
                    exc,
                )
                await asyncio.sleep(self.ctx.backoff(min(failures, MAX_ERROR_WAIT)))
                continue
            self.dead_lettered += 1
            return

    # -- the log (in worker threads) -----------------------------------------------------------

    def _open(self) -> BucketEventLog:
        return self.ctx.buckets().events()

    def _save(self, events: BucketEventLog, seq: int) -> None:
        if not events.advance(self.subscriber, seq):
            # The cursor was forgotten meanwhile: put it back where this source is.
            events.subscribe(self.subscriber, self.event.bucket, at=seq)
            events.advance(self.subscriber, seq)

    def _prune(self, events: BucketEventLog, position: int, retention: float) -> None:
        # Subscribing again marks this subscriber as seen, so prune keeps its cursor.
        events.subscribe(self.subscriber, self.event.bucket, at=position)
        pruned = events.prune(retention)
        if pruned:
            log.debug("pruned %d bucket events", pruned)
