"""The ``sqs`` action: the rule's output as a message on an SQS queue (AWS IoT's ``SqsAction``).

Parameters are AWS's: ``queueUrl`` (a template), ``useBase64`` (send the output
base64-encoded, which a binary output needs: an SQS message body is text) and ``roleArn``
(accepted, unused: the credentials are boto3's standard chain). Each message carries the rule
and the topic as the String attributes ``rule`` and ``topic``, as the local queue's do.

Where it goes follows ``rules.aws_targets``: to SQS with boto3, or to the local queue named
by the URL's last path segment (``rules.actions.queue``; a ``.fifo`` suffix is dropped, local
queues keep their order anyway), so a rule copied from AWS works offline.

On a FIFO queue (its URL ends in ``.fifo``) the rule's name is the ``MessageGroupId`` (one
rule's messages in order) and the delivery's stable id the ``MessageDeduplicationId``: a
redelivery after a crash within SQS's five-minute deduplication interval is not queued twice.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from rules.actions.base import (
    ParamsModel,
    Resolved,
    Target,
    TargetEnv,
    last_segment,
    output_payload,
)
from rules.actions.queue import QueueTarget
from rules.aws import missing_extra, target_error
from rules.errors import TargetError
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    from rules.aws import AwsClients
    from rules.config import RulesSettings
    from rules.delivery import Delivery

KIND = "sqs"
FAILED_ACTION = "SqsAction"

MAX_BATCH_ENTRIES = 10
"""Entries per ``SendMessageBatch`` (SQS's limit)."""
MAX_BATCH_BYTES = 256 * 1024
"""Bodies and attributes per ``SendMessageBatch``: SQS's long-standing limit (a larger message
goes alone, so only it fails if SQS refuses its size)."""

_EXAMPLE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


class SqsAction(ParamsModel):
    queue_url: str = Field(alias="queueUrl", min_length=1)
    use_base64: bool = Field(default=False, alias="useBase64")
    role_arn: str | None = Field(default=None, alias="roleArn")
    """Accepted so AWS rule JSON reads unchanged; boto3's credential chain is used."""

    @field_validator("queue_url")
    @classmethod
    def _url(cls, value: str) -> str:
        # A literal URL is checked now; a template's value is checked by SQS when delivered.
        if "${" not in value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{value!r} is not a queue URL; it looks like {_EXAMPLE_URL}")
            if not last_segment(parts.path, "/"):
                raise ValueError(
                    f"{value!r} has no queue name at the end of its path; it looks like "
                    f"{_EXAMPLE_URL}"
                )
        return value


Params = SqsAction


def templates(params: SqsAction) -> list[str]:
    return [params.queue_url]


def local_queue(url: str) -> str:
    """The local queue a queue URL stands for: its last path segment, without ``.fifo``
    (which a local queue name cannot contain)."""
    name = last_segment(urlsplit(url).path or url, "/")
    return name.removesuffix(".fifo") or name


def resolve(params: SqsAction, output: Any, ctx: EvalContext, version: str) -> Resolved:
    url = substitute(params.queue_url, ctx, version)
    body = output_payload(output)
    if params.use_base64:
        body = base64.b64encode(body)
    # "queue" and "priority" are what the local queue target reads; "url" is SQS's.
    resolved = {"url": url, "queue": local_queue(url), "priority": 0}
    return Resolved(f"sqs:{url}", resolved, body)


def _entry(index: int, delivery: Delivery, fifo: bool) -> tuple[dict[str, Any], int]:
    """The ``SendMessageBatch`` entry of ``delivery`` and its size as SQS counts it."""
    try:
        text = delivery.body.decode("utf-8")
    except UnicodeDecodeError:
        raise TargetError(
            "the rule's output is binary, and an SQS message body is text: set useBase64 to "
            "true in the sqs action to send it base64-encoded"
        ) from None
    attributes = {"rule": delivery.rule, "topic": delivery.origin.topic}
    entry: dict[str, Any] = {
        "Id": str(index),
        "MessageBody": text,
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    }
    if fifo:
        entry["MessageGroupId"] = delivery.rule
        entry["MessageDeduplicationId"] = delivery.message_id
    size = len(delivery.body) + sum(len(n) + len(v.encode()) + 6 for n, v in attributes.items())
    return entry, size


def _chunks(entries: list[tuple[dict[str, Any], int]]) -> list[list[dict[str, Any]]]:
    """Entries in order, in batches within SQS's count and size limits."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for entry, entry_size in entries:
        if current and (len(current) == MAX_BATCH_ENTRIES or size + entry_size > MAX_BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


class SqsTarget:
    """``SendMessageBatch`` to one queue, in batches of ten in order, one call at a time (on a
    thread of its own: a slow SQS must not take the default executor the outbox commits on)."""

    batch_limit = 4 * MAX_BATCH_ENTRIES

    def __init__(self, aws: AwsClients, url: str) -> None:
        self._aws = aws
        self._url = url
        self._fifo = url.endswith(".fifo")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rules-sqs")

    def _send_all(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        results: list[TargetError | None] = [None] * len(batch)
        entries: list[tuple[dict[str, Any], int]] = []
        for index, delivery in enumerate(batch):
            try:
                entries.append(_entry(index, delivery, self._fifo))
            except TargetError as exc:
                results[index] = exc
        stop: TargetError | None = None
        for chunk in _chunks(entries):
            if stop is not None:  # the queue cannot be reached: the rest waits for the retry
                for entry in chunk:
                    results[int(entry["Id"])] = stop
                continue
            outcome: dict[int, TargetError | None]
            try:
                outcome = self._send(chunk)
            except TargetError as exc:
                outcome = {int(e["Id"]): exc for e in chunk}
                if exc.retryable:
                    stop = exc
            for index, error in outcome.items():
                results[index] = error
        return results

    def _send(self, chunk: list[dict[str, Any]]) -> dict[int, TargetError | None]:
        """Each entry's outcome; ``TargetError`` when the whole request failed."""
        what = f"sqs {self._url}"
        try:
            client = self._aws.client("sqs")  # TargetError when boto3 is not installed
            response = client.send_message_batch(QueueUrl=self._url, Entries=chunk)
        except TargetError:
            raise
        except Exception as exc:  # noqa: BLE001 - botocore's errors, classified by target_error
            raise target_error(exc, what) from exc
        unanswered = TargetError(f"{what}: SQS did not answer for this message", retryable=True)
        outcome: dict[int, TargetError | None] = {int(e["Id"]): unanswered for e in chunk}
        for done in response.get("Successful", []):
            outcome[int(done["Id"])] = None
        for failed in response.get("Failed", []):
            # SenderFault: the message itself was refused (too big, invalid characters);
            # otherwise SQS failed to take it and it may be sent again.
            outcome[int(failed["Id"])] = TargetError(
                f"{what}: {failed.get('Code', 'Failed')}: {failed.get('Message', '')}",
                retryable=not failed.get("SenderFault", False),
            )
        return outcome

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._send_all, batch)

    async def aclose(self) -> None:
        # A send still running finishes on its own; its deliveries are still owed.
        self._pool.shutdown(wait=False, cancel_futures=True)


def open_target(key: str, env: TargetEnv) -> Target:
    if env.settings.aws_mode("sqs") == "local":
        return QueueTarget(env.queues())
    return SqsTarget(env.aws, key.partition(":")[2])


def resource(params: dict[str, Any]) -> str:
    return str(params.get("url", ""))


def needs(params: SqsAction, settings: RulesSettings) -> str | None:
    if settings.aws_mode("sqs") == "local":
        return None
    return missing_extra("boto3", "the sqs action (to AWS)")
