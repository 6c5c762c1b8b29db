"""Queue batches: a function invoked with batches of a local queue's messages, as AWS Lambda's
SQS event source mapping invokes one.

Why: this is how two patterns are built from a queue and a function.

- **Fan-in.** Many producers (rules, devices, other functions) send small messages to one
  queue; the function gets up to ``batch_size`` of them per invocation, gathered for up to
  ``batch_window`` seconds, and can aggregate them (one database write for a hundred readings,
  one report for a minute of alarms).
- **Queue-based load leveling.** The function's ``concurrency`` caps the invocations in flight,
  so a slow downstream (an API with a rate limit, a small database) sees at most that much
  load; a burst waits in the queue, durably, instead of failing or piling up in memory.

How (AWS's behaviour, see "Using Lambda with Amazon SQS" in the Lambda developer guide):

- One gatherer receives a batch: up to ``batch_size`` messages; when fewer are there and
  ``batch_window`` > 0, it keeps receiving until the window since the first message ends
  (``MaximumBatchingWindowInSeconds``), the batch is full, or its event would exceed Lambda's
  6 MiB payload. Then the batch is invoked as ``{"Records": [...]}`` in AWS's record shape, and
  the gatherer goes on with the next batch while at most ``concurrency`` (the function's, read
  again before each batch) invocations run. Gathering one batch at a time keeps batches full:
  parallel pollers would split a trickle of messages into many small batches.
- Received messages are hidden for at least the function's timeout plus the batch window plus
  ``VISIBILITY_MARGIN`` (AWS requires the queue's visibility timeout to be at least the
  function's timeout), or the queue's own visibility timeout if longer, so a batch in flight is
  not received twice. Waiting for a worker (rules invoking the same function share its
  concurrency) and a cold start are not bounded by the function's timeout, so while a batch is
  held its visibility is extended shortly before it ends.
- Success deletes every message of the batch. A response ``{"batchItemFailures":
  [{"itemIdentifier": <messageId>}, ...]}`` deletes all others and leaves those to reappear
  after their visibility timeout (with ``ApproximateReceiveCount`` one higher). An error or a
  timeout deletes nothing: the whole batch reappears, and the queue's ``max_receives`` moves a
  message that keeps failing to ``<queue>-dlq`` (``QueueStore``), as an SQS redrive policy
  does. A malformed partial response (an item without a known ``itemIdentifier``) counts as a
  failure of the whole batch, as on AWS.
- Cancelled (the function's event changed or was removed, or the server stops), the source
  makes the messages it holds visible again at once; a batch whose invocation had finished is
  settled first. Delivery is at least once: a handler cancelled halfway may see its messages
  again, and ``context.message_id`` (the message's id for a batch of one, else an id derived
  from the batch's message ids) lets ``@idempotent`` skip an exact repeat.

A queue that does not exist yet is treated as empty: a source may start before the queue's
first message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from rules.local.functions import MAX_EVENT, FunctionError, FunctionInfo
from rules.local.queues import MAX_BATCH, QueueError, QueueMessage, dead_letter_name
from rules.triggers.config import QueueEvent
from rules.triggers.context import TriggerContext

log = logging.getLogger(__name__)

T = TypeVar("T")

VISIBILITY_MARGIN = 1.0
"""Seconds of visibility beyond the function's timeout and the batch window: the time to
receive, start the invocation and delete the messages after it."""
EVENT_BUDGET = MAX_EVENT - 64 * 1024
"""Bytes of JSON the records of one batch may take: Lambda's 6 MiB payload less room for the
request's other fields."""
FIRST_RECEIVES = 10_000
"""Message ids whose first receive time is remembered (for ``ApproximateFirstReceiveTimestamp``;
the queue store does not keep it)."""


# -- the pure parts ------------------------------------------------------------------------------


def queue_arn(region: str, account_id: str, queue: str) -> str:
    """The ``eventSourceARN`` of a local queue: ``arn:aws:sqs:<region>:<account>:<queue>``."""
    return f"arn:aws:sqs:{region}:{account_id}:{queue}"


def sqs_record(
    message: QueueMessage, *, arn: str, region: str, account_id: str, first_received_ms: int
) -> dict[str, Any]:
    """One record of an SQS event, as Lambda passes a received message to a handler.

    SQS bodies are text: a body that is not UTF-8 is decoded with replacement characters.
    ``md5OfBody`` is of the stored bytes; the message's attributes become ``String``
    message attributes.
    """
    return {
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": message.body.decode("utf-8", "replace"),
        "attributes": {
            "ApproximateReceiveCount": str(message.receive_count),
            "SentTimestamp": str(int(message.sent_at * 1000)),
            "SenderId": account_id,
            "ApproximateFirstReceiveTimestamp": str(first_received_ms),
        },
        "messageAttributes": {
            name: {
                "stringValue": value,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
            for name, value in message.attributes.items()
        },
        "md5OfBody": hashlib.md5(message.body, usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": region,
    }


def batch_message_id(message_ids: Sequence[str]) -> str:
    """The ``context.message_id`` of an invocation: the message's id for a batch of one, else
    ``batch-<hash of the ids in order>``, so ``@idempotent`` skips only an exact repeat (a
    repeat with other messages in it must run, or those would be deleted unhandled)."""
    if len(message_ids) == 1:
        return message_ids[0]
    digest = hashlib.sha256("\n".join(message_ids).encode("utf-8")).hexdigest()
    return f"batch-{digest[:40]}"


def failed_items(response: Any, message_ids: Sequence[str]) -> set[str] | None:
    """The message ids a handler's response reports as failed (a partial batch response);
    None when the whole batch failed.

    As Lambda does with ``ReportBatchItemFailures``: no response, a response without
    ``batchItemFailures``, or an empty or null list is complete success; an item without an
    ``itemIdentifier`` naming a message of the batch (missing, null, empty, unknown) makes the
    response invalid, which is a complete failure.
    """
    if not isinstance(response, dict):
        return set()
    items = response.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    known = set(message_ids)
    failed: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            return None
        identifier = item.get("itemIdentifier")
        if not isinstance(identifier, str) or identifier not in known:
            return None
        failed.add(identifier)
    return failed


# -- the source ----------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Batch:
    """Messages received for one invocation, and how long they stay hidden."""

    visibility: float
    """Seconds each receive (and each extension) hides the messages for."""
    expires: float
    """Event-loop time when the earliest-received message becomes visible again."""
    messages: list[QueueMessage] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    """Bytes of JSON the records take."""

    @property
    def message_ids(self) -> list[str]:
        return [m.message_id for m in self.messages]


class QueueSource:
    """Invokes ``function`` with batches of the local queue ``event.queue`` (see the module
    docstring); run ``run()`` as a task and cancel it to stop.

    Args:
        function: The function's name.
        event: The queue, ``batch_size`` and ``batch_window`` (from the function's sidecar).
        ctx: The function runner, the queue store, ``settings.poll_interval`` (the wait when
            the queue is empty), region and account (for ``eventSourceARN``).
    """

    def __init__(self, function: str, event: QueueEvent, ctx: TriggerContext) -> None:
        self.function = function
        self.event = event
        self.ctx = ctx
        self.arn = queue_arn(ctx.region, ctx.account_id, event.queue)
        self.invocations = 0
        """Batches invoked."""
        self.failures = 0
        """Batches that failed whole (an error, a timeout, an invalid partial response)."""
        self._running = 0
        self._slot = asyncio.Event()
        self._first_receives: OrderedDict[str, int] = OrderedDict()
        self._problem: str | None = None

    async def run(self) -> None:
        """Invoke the function with batches until cancelled; never raises otherwise (a
        problem with the queue file or the function's files is logged and retried after
        ``poll_interval``). Cancelled, it returns held messages to the queue before ending."""
        async with asyncio.TaskGroup() as deliveries:
            while True:
                try:
                    await self._step(deliveries)
                    self._problem = None
                except (QueueError, FunctionError) as exc:
                    self._report(str(exc))
                    await asyncio.sleep(self.ctx.settings.poll_interval)
                except Exception:  # noqa: BLE001 - the source outlives a bug in one step
                    log.exception(
                        "queue source %s -> function %s failed; trying again",
                        self.event.queue,
                        self.function,
                    )
                    await asyncio.sleep(self.ctx.settings.poll_interval)

    async def _step(self, deliveries: asyncio.TaskGroup) -> None:
        """Wait for a free invocation slot, gather a batch and start its invocation."""
        info = self.ctx.functions.info(self.function)
        if self._running >= info.concurrency:
            self._slot.clear()
            await self._slot.wait()
            return  # the function's settings may have changed meanwhile: read them again
        batch = await self._gather(info)
        if batch is None:
            await asyncio.sleep(self.ctx.settings.poll_interval)
            return
        self._running += 1
        self.invocations += 1
        deliveries.create_task(
            self._deliver(batch), name=f"queue {self.event.queue} -> function {self.function}"
        )

    # -- gathering -----------------------------------------------------------------------------

    async def _gather(self, info: FunctionInfo) -> _Batch | None:
        """A batch of received messages; None when the queue is empty (or does not exist)."""
        loop = asyncio.get_running_loop()
        size, window = self.event.batch_size, self.event.batch_window
        floor = info.timeout + window + VISIBILITY_MARGIN
        started = loop.time()
        wanted = min(size, MAX_BATCH)
        messages, visibility = await self._receive(wanted, floor)
        if not messages:
            return None
        batch = _Batch(visibility, started + visibility)
        deadline = loop.time() + window
        try:
            while True:
                rest = self._add(batch, messages)
                if rest:  # the event is full: the rest waits for the next batch
                    await _complete(partial(self._release, rest))
                    break
                if len(batch.messages) >= size:
                    break
                if len(messages) < wanted:  # nothing more just now: wait within the window
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    await asyncio.sleep(min(self.ctx.settings.poll_interval, remaining))
                # The store gives at most MAX_BATCH per receive: a large batch takes several.
                wanted = min(size - len(batch.messages), MAX_BATCH)
                messages, _ = await self._receive(wanted, floor)
        except BaseException:
            await _complete(lambda: self._release(batch.messages))
            raise
        return batch

    def _add(self, batch: _Batch, messages: list[QueueMessage]) -> list[QueueMessage]:
        """Add received messages to ``batch``; those that would take its event over
        ``EVENT_BUDGET`` are returned instead (a batch always takes its first message)."""
        now_ms = int(time.time() * 1000)
        for index, message in enumerate(messages):
            record = sqs_record(
                message,
                arn=self.arn,
                region=self.ctx.region,
                account_id=self.ctx.account_id,
                first_received_ms=self._first_receive(message, now_ms),
            )
            size = len(json.dumps(record, separators=(",", ":"))) + 1
            if batch.messages and batch.size + size > EVENT_BUDGET:
                return messages[index:]
            batch.messages.append(message)
            batch.records.append(record)
            batch.size += size
        return []

    def _first_receive(self, message: QueueMessage, now_ms: int) -> int:
        first = self._first_receives.get(message.message_id)
        if first is None or message.receive_count == 1:
            first = now_ms
            self._first_receives[message.message_id] = first
            if len(self._first_receives) > FIRST_RECEIVES:
                self._first_receives.popitem(last=False)
        return first

    async def _receive(self, count: int, floor: float) -> tuple[list[QueueMessage], float]:
        """Up to ``count`` messages hidden for ``max(queue's visibility timeout, floor)``, and
        that visibility; cancelled mid-receive, what was received is made visible again."""

        def receive() -> tuple[list[QueueMessage], float]:
            store = self.ctx.queues()
            visibility = max(store.visibility_timeout, floor)
            try:
                got = store.receive(
                    self.event.queue, max_messages=count, visibility_timeout=visibility
                )
            except QueueError:
                if store.depth(self.event.queue) == 0:
                    return [], visibility  # no such queue yet: nothing to take
                raise
            return got, visibility

        return await _complete(receive, undo=lambda got: self._release(got[0]))

    # -- delivering ----------------------------------------------------------------------------

    async def _deliver(self, batch: _Batch) -> None:
        """Invoke the function with ``batch`` and settle it; never raises but cancellation."""
        keeper = asyncio.create_task(self._keep(batch), name=f"keep {self.event.queue} batch")
        ids = batch.message_ids
        settled = False
        try:
            failed: set[str] | None
            try:
                invocation = await self.ctx.functions.invoke(
                    self.function,
                    {"Records": batch.records},
                    request_id=str(uuid.uuid4()),
                    message_id=batch_message_id(ids),
                )
            except FunctionError as exc:
                failed, error = None, str(exc)
            else:
                failed = failed_items(invocation.value, ids)
                error = "an invalid batchItemFailures response: " + _clip(invocation.value)
            await _stop(keeper)
            settled = True
            if failed is None:
                self.failures += 1
                log.warning(
                    "function %s failed on a batch of %d messages of queue %s (they reappear "
                    "after %.3g s; a message received too often goes to %s): %s",
                    self.function,
                    len(ids),
                    self.event.queue,
                    batch.visibility,
                    dead_letter_name(self.event.queue),
                    error,
                )
                return
            if failed:
                log.info(
                    "function %s reported %d of %d messages of queue %s as failed",
                    self.function,
                    len(failed),
                    len(ids),
                    self.event.queue,
                )
            done = [m for m in batch.messages if m.message_id not in failed]
            for message in done:
                self._first_receives.pop(message.message_id, None)
            await _complete(lambda: self._delete(done))
        except asyncio.CancelledError:
            await _stop(keeper)
            if not settled:
                await _complete(lambda: self._release(batch.messages))
            raise
        except QueueError as exc:
            # The deletes failed: the messages reappear and are handled again (at least once).
            self._report(str(exc))
        except Exception:  # noqa: BLE001 - one batch's bug must not end the source
            log.exception("queue source %s -> function %s failed", self.event.queue, self.function)
        finally:
            await _stop(keeper)
            self._running -= 1
            self._slot.set()

    async def _keep(self, batch: _Batch) -> None:
        """Extend the batch's visibility shortly before it ends, until cancelled."""
        loop = asyncio.get_running_loop()
        ahead = min(VISIBILITY_MARGIN, batch.visibility) / 2
        while True:
            await asyncio.sleep(max(0.0, batch.expires - ahead - loop.time()))
            started = loop.time()
            try:
                await _complete(lambda: self._extend(batch.messages, batch.visibility))
            except QueueError as exc:
                self._report(str(exc))
            batch.expires = started + batch.visibility

    # -- the store, from worker threads --------------------------------------------------------

    def _delete(self, messages: list[QueueMessage]) -> None:
        store = self.ctx.queues()
        stale = 0
        for message in messages:
            if message.receipt_handle is not None and not store.delete(
                message.queue, message.receipt_handle
            ):
                stale += 1
        if stale:
            log.warning(
                "%d messages of queue %s could not be deleted: their visibility timeout had "
                "ended (they were received again or dead-lettered); function %s may get them "
                "again",
                stale,
                self.event.queue,
                self.function,
            )

    def _release(self, messages: list[QueueMessage]) -> None:
        """Make received messages visible again at once (they were not handled)."""
        if messages:
            store = self.ctx.queues()
            for message in messages:
                if message.receipt_handle is not None:
                    store.change_visibility(message.queue, message.receipt_handle, 0)

    def _extend(self, messages: list[QueueMessage], visibility: float) -> None:
        store = self.ctx.queues()
        for message in messages:
            if message.receipt_handle is not None:
                store.change_visibility(message.queue, message.receipt_handle, visibility)

    def _report(self, problem: str) -> None:
        """Log a problem once, not at every poll while it lasts."""
        if problem != self._problem:
            log.warning(
                "queue source %s -> function %s: %s", self.event.queue, self.function, problem
            )
        self._problem = problem


async def _complete(call: Callable[[], T], undo: Callable[[T], None] | None = None) -> T:
    """``call()`` in a worker thread, waited for even when the caller is cancelled (a thread
    cannot be stopped, and what it did must be known); then, cancelled, ``undo(result)`` runs
    too and the cancellation goes on."""
    task = asyncio.ensure_future(asyncio.to_thread(call))
    task.add_done_callback(_retrieve)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        if undo is not None and not task.cancelled() and task.exception() is None:
            undoing = asyncio.ensure_future(asyncio.to_thread(undo, task.result()))
            undoing.add_done_callback(_retrieve)
            await asyncio.wait({undoing})
        raise


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a thread's error as seen: its caller, cancelled, may never look at it."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("queue operation failed: %s", exc)


def _clip(value: Any, most: int = 200) -> str:
    """The start of a (JSON) value, for a log line."""
    text = json.dumps(value)
    return text if len(text) <= most else text[:most] + "..."


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end (its own cancellation is not raised here)."""
    if not task.done():
        task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("%s failed", task.get_name(), exc_info=exc)
