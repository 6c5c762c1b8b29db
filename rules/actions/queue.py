"""The ``queue`` action: the rule's output as a message on a local durable queue.

Parameters read like AWS's ``sqs`` action: ``queueName`` (or ``queueUrl``, whose last path
segment names the queue; both are templates), ``useBase64``; thingcore adds ``priority``
(0-9, higher first). The delivery's stable id becomes the message id, so a redelivery after a
crash is not queued twice while the first copy is still there.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from rules.actions.base import (
    ParamsModel,
    Resolved,
    TargetEnv,
    exactly_one,
    last_segment,
    output_payload,
)
from rules.errors import TargetError
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    from rules.delivery import Delivery
    from rules.local.queues import QueueStore

KIND = "queue"
FAILED_ACTION = "QueueAction"


class QueueAction(ParamsModel):
    queue_name: str | None = Field(default=None, alias="queueName", min_length=1)
    queue_url: str | None = Field(default=None, alias="queueUrl", min_length=1)
    use_base64: bool = Field(default=False, alias="useBase64")
    priority: int = Field(default=0, ge=0, le=9)
    role_arn: str | None = Field(default=None, alias="roleArn")

    @model_validator(mode="after")
    def _one_name(self) -> QueueAction:
        exactly_one(self.queue_name, self.queue_url, "queueName and queueUrl")
        return self


Params = QueueAction


def templates(params: QueueAction) -> list[str]:
    return [params.queue_name or params.queue_url or ""]


def resolve(params: QueueAction, output: Any, ctx: EvalContext, version: str) -> Resolved:
    if params.queue_name is not None:
        name = substitute(params.queue_name, ctx, version)
    else:
        name = last_segment(substitute(params.queue_url or "", ctx, version), "/")
    body = output_payload(output)
    if params.use_base64:
        body = base64.b64encode(body)
    return Resolved(f"queue:{name}", {"queue": name, "priority": params.priority}, body)


class QueueTarget:
    batch_limit = 1024

    def __init__(self, store: QueueStore) -> None:
        self._store = store

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        from rules.local.queues import SendItem

        results: list[TargetError | None] = [None] * len(batch)
        items: list[SendItem] = []
        sent: list[int] = []
        for i, d in enumerate(batch):
            try:
                items.append(
                    SendItem(
                        queue=d.params["queue"],
                        body=d.body,
                        message_id=d.message_id,
                        priority=d.params.get("priority", 0),
                        attributes={"rule": d.rule, "topic": d.origin.topic},
                    )
                )
            except TargetError as exc:  # an invalid queue name from a template, say
                results[i] = exc
            else:
                sent.append(i)
        if not items:
            return results
        try:
            # One transaction for the batch: all of it is queued, or none of it.
            await asyncio.to_thread(self._store.send_batch, items)
        except TargetError as exc:
            error: TargetError = exc
        except Exception as exc:  # noqa: BLE001 - a disk error, say: try again later
            error = TargetError(f"queue {items[0].queue}: {exc}", retryable=True)
        else:
            return results
        for i in sent:
            results[i] = error
        return results

    async def aclose(self) -> None:
        return None


def open_target(key: str, env: TargetEnv) -> QueueTarget:
    return QueueTarget(env.queues())


def resource(params: dict[str, Any]) -> str:
    return str(params.get("queue", ""))
